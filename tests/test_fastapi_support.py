"""The FastAPI helpers: identity and role dependencies, the shared session outside the gateway."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from starlette.testclient import TestClient

from gateway.context import ANONYMOUS, FACTS_KEY, Identity, RequestFacts
from gateway.fastapi_support import current_identity, flask_session, require_roles


def app_as(identity: Identity | None) -> TestClient:
    app = FastAPI()

    @app.get("/admin", dependencies=[Depends(require_roles("admin", "ops"))])
    def admin(who: Annotated[Identity, Depends(current_identity)]) -> dict[str, Any]:
        return {"subject": who.subject}

    @app.get("/session")
    def session(request: Request) -> dict[str, Any]:
        return dict(flask_session(request))

    async def with_facts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if identity is not None and scope["type"] == "http":
            facts = RequestFacts(request_id="r1", path=scope["path"], method=scope["method"])
            facts.identity = identity
            scope[FACTS_KEY] = facts
        await app(scope, receive, send)

    return TestClient(with_facts, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("identity", "status"),
    [
        (None, 401),  # outside the gateway: anonymous
        (ANONYMOUS, 401),
        (Identity("bob", frozenset({"user"}), "jwt"), 403),
        (Identity("carol", frozenset({"ops"}), "api-key"), 200),
        (Identity("alice", frozenset({"admin"}), "session"), 200),
    ],
)
def test_require_roles(identity: Identity | None, status: int) -> None:
    response = app_as(identity).get("/admin")
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if status == 403:
        assert response.json()["detail"] == "missing required role: admin, ops"
    if status == 200:
        assert response.json() == {"subject": identity.subject if identity else None}


def test_flask_session_without_the_gateway_says_why() -> None:
    with pytest.raises(LookupError, match=r"\[auth\.session\] is not configured"):
        TestClient(app_as(None).app).get("/session")
