"""Parity helpers for new services: answer exactly as the legacy Flask app answers.

A route that moves to a FastAPI service keeps its contract byte for byte, so nothing that
compares, caches or parses responses (clients, ETags, shadow diffs) sees the move::

    from fastapi import FastAPI
    from gateway.parity import LegacyJSONResponse, install_legacy_error_handlers, legacy_json

    app = FastAPI(default_response_class=LegacyJSONResponse)   # jsonify's bytes
    install_legacy_error_handlers(app)                          # the legacy app's error bodies

- ``gateway.parity.json``: ``LegacyJSONResponse`` and ``legacy_json(...)`` render JSON with the
  legacy app's own JSON provider (``app.json``): its ``sort_keys``, ``compact``,
  ``ensure_ascii`` and ``mimetype``, and the trailing newline ``jsonify`` writes.
- ``gateway.parity.errors``: 400, 404, 405, request validation errors and unexpected
  exceptions rendered by the legacy app's registered Flask error handlers.
- ``gateway.parity.body``: ``legacy_json_body``, a dependency that reads the body as Flask's
  ``request.get_json(silent=True)`` does (``None`` for a body that is not JSON).
- ``gateway.parity.reference``: which Flask app that is. Behind the gateway, the configured
  legacy app (the services adapter binds it for each request); a service run on its own (its
  tests) gets Flask's defaults, or the app given as ``standalone``.
"""

from __future__ import annotations

from gateway.parity.body import legacy_json_body
from gateway.parity.errors import install_legacy_error_handlers
from gateway.parity.json import LegacyJSONResponse, legacy_json
from gateway.parity.reference import legacy_app

__all__ = [
    "LegacyJSONResponse",
    "install_legacy_error_handlers",
    "legacy_app",
    "legacy_json",
    "legacy_json_body",
]
