"""Helpers for legacy Flask code that runs behind the gateway.

The legacy app keeps working on its own (under ``flask run`` these helpers return ``None``), and
behind the gateway it sees the facts the gateway decided::

    from gateway.flask_support import current_request_id

    @bp.get("/api/books")
    def list_books():
        log.info("listing books", request_id=current_request_id())
"""

from __future__ import annotations

from flask import has_request_context, request

from gateway.context import ANONYMOUS, Identity, RequestFacts, facts_from_environ


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
