"""Helpers for legacy Flask code that runs behind the gateway.

The legacy app keeps working on its own (under ``flask run`` these helpers return ``None``), and
behind the gateway it sees the facts the gateway decided::

    from gateway.flask_support import current_request_id

    @bp.get("/api/books")
    def list_books():
        log.info("listing books", request_id=current_request_id())
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, has_request_context, request

from gateway.context import ANONYMOUS, Identity, RequestFacts, facts_from_environ

if TYPE_CHECKING:
    from gateway.settings import Settings


def current_facts() -> RequestFacts | None:
    """The gateway's facts for the current Flask request, or ``None`` outside the gateway."""
    if not has_request_context():
        return None
    try:
        return facts_from_environ(request.environ)
    except LookupError:
        return None


def current_request_id() -> str | None:
    """The gateway's request id for the current Flask request, or ``None`` outside the gateway."""
    facts = current_facts()
    return facts.request_id if facts is not None else None


def current_identity() -> Identity:
    """The identity the gateway verified for this request; anonymous outside the gateway."""
    facts = current_facts()
    return facts.identity if facts is not None else ANONYMOUS


def add_retired_rules(app: Flask, config: Settings | str | Path) -> list[str]:
    """Keep ``url_for`` working for the endpoints of retired routes; returns those added.

    ``gateway retire`` records each retired route's Flask endpoint and rule in the config
    (``[routes.retired]``); once its view is deleted, ``url_for("admin.list_users")`` in a
    template or a view would raise ``BuildError``. This registers a build-only rule for each
    (Werkzeug's ``Rule(build_only=True)``: it builds URLs and never matches a request), unless
    the app still has a rule for the endpoint. The gateway calls it when it builds the legacy
    app; an app run on its own (``flask run``, tests) calls it in its factory::

        add_retired_rules(app, os.environ.get("GATEWAY_CONFIG", "gateway.toml"))
    """
    from werkzeug.routing import Rule

    from gateway.settings import Settings, load_settings

    settings = config if isinstance(config, Settings) else load_settings(config, os.environ)
    buildable = {rule.endpoint for rule in app.url_map.iter_rules()}
    added = []
    for route in settings.routes:
        retired = route.retired
        if retired is None or retired.endpoint in buildable:
            continue
        app.url_map.add(
            Rule(retired.rule, endpoint=retired.endpoint, methods=route.methods, build_only=True)
        )
        buildable.add(retired.endpoint)
        added.append(retired.endpoint)
    return added
