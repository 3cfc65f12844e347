"""The demo legacy app: a small bookstore, written the way Flask apps are written.

Run it on its own with ``flask --app legacy_flask run --debug``, or let the gateway serve it::

    app = create_app(database="var/bookstore.sqlite3")

The app does not configure logging: behind the gateway, structlog and the stdlib loggers are
configured once, before this factory runs, and the app's log lines go through them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from legacy_flask import account, admin, auth, books, db, errors, pages, reports, uploads

# DEMO-ONLY secrets, so the demo runs with no setup. Anyone can read them here and forge a
# session cookie or a token with them: set BOOKSTORE_SECRET_KEY and BOOKSTORE_JWT_SECRET anywhere
# real. (The JWT secret is 32+ bytes, the minimum PyJWT accepts for HS256 without a warning.)
DEMO_SECRET_KEY = "demo-only-secret-do-not-use-in-production"
DEMO_JWT_SECRET = "demo-only-jwt-secret-do-not-use-in-production"


def create_app(
    database: str | os.PathLike[str] | None = None,
    secret_key: str | None = None,
    jwt_secret: str | None = None,
) -> Flask:
    """Build the bookstore. Arguments left ``None`` come from the environment, then defaults."""
    app = Flask(__name__)
    app.config.from_mapping(
        _settings(os.environ, database=database, secret_key=secret_key, jwt_secret=jwt_secret),
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: the cookie is not sent on cross-site POSTs, which is this app's only CSRF defence.
        SESSION_COOKIE_SAMESITE="Lax",
    )

    db.init_db(app.config["DATABASE"])
    db.init_app(app)
    errors.init_app(app)

    for blueprint_module in (pages, auth, books, account, admin, reports, uploads):
        app.register_blueprint(blueprint_module.bp)

    return app


def _settings(
    environ: Mapping[str, str],
    *,
    database: str | os.PathLike[str] | None,
    secret_key: str | None,
    jwt_secret: str | None,
) -> dict[str, object]:
    """The only place the app reads environment variables."""
    fallbacks = environ.get("BOOKSTORE_SECRET_KEY_FALLBACKS", "")
    return {
        "DATABASE": str(db.resolve_database_path(database, environ)),
        "SECRET_KEY": secret_key or environ.get("BOOKSTORE_SECRET_KEY") or DEMO_SECRET_KEY,
        # Retired keys, comma-separated: sessions signed with them still verify while users
        # pick up cookies signed with the new key (Flask 3.1's key rotation).
        "SECRET_KEY_FALLBACKS": [key for key in fallbacks.split(",") if key],
        "JWT_SECRET": jwt_secret or environ.get("BOOKSTORE_JWT_SECRET") or DEMO_JWT_SECRET,
    }
