"""A migration gateway: one ASGI process that serves a legacy Flask app and new FastAPI services
on the same URLs, choosing per route (and, with flags, per request) which side answers.

Start with ``gateway.app.create_app`` (the composition root) or the ``gateway`` command.
"""

__version__ = "0.1.0"
