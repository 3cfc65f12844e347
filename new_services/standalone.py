"""What the demo services imitate when they run on their own (their tests, ``uvicorn``).

Behind the gateway, ``gateway.parity`` renders a service's errors with the legacy app the
gateway serves. On its own, a service has no legacy app to ask; building the whole bookstore
would open its database, so this is a bare Flask app with the bookstore's own error handlers
(``legacy_flask.errors``): the same bodies, from the same code::

    install_legacy_error_handlers(app, standalone=legacy_error_app)
"""

from __future__ import annotations

from flask import Flask

from legacy_flask import errors


def legacy_error_app() -> Flask:
    app = Flask("legacy_flask")
    errors.init_app(app)
    return app
