"""End to end: one identity, enforced once, seen the same on both sides (real ``gateway serve``).

Every credential case runs against a protected route the legacy app serves
(``GET /reports/sales.csv``, ``GET /admin/users``) and one a new service serves
(``GET /api/me`` on accounts, ``POST /api/books`` on catalog).
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import jwt
import jwt.warnings
import pytest
from itsdangerous import URLSafeTimedSerializer
from support import GatewayProcess, demo_config

from legacy_flask import DEMO_JWT_SECRET, DEMO_SECRET_KEY

pytestmark = pytest.mark.e2e

PROTECTED = [
    pytest.param("GET", "/reports/sales.csv", "legacy", id="legacy"),
    pytest.param("GET", "/api/me", "accounts", id="new"),
]
API_KEY = "demo-reporting-key-not-a-secret"


RETIRED_SECRET_KEY = "retired-demo-secret-key"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # The legacy app rotated its session key: cookies signed with the old one still verify.
    env = {"BOOKSTORE_SECRET_KEY_FALLBACKS": RETIRED_SECRET_KEY}
    with GatewayProcess(demo_config(tmp_path_factory.mktemp("auth")), env=env) as gateway:
        yield gateway


@pytest.fixture
def client(demo: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.base_url, timeout=10) as http:
        yield http


def token_for(client: httpx.Client, username: str, password: str) -> str:
    response = client.post("/api/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def forge(claims: dict[str, Any], *, key: str = DEMO_JWT_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        # Forging on purpose: the demo secret is short for HS512, which is the attack's point.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "roles": ["admin"], "iat": now, "exp": now + 600}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def session_cookie(data: dict[str, Any], secret: str = DEMO_SECRET_KEY, *, age: float = 0) -> str:
    """Exactly Flask's SecureCookieSessionInterface signing, with a chosen secret and age."""
    from flask.json.tag import TaggedJSONSerializer

    serializer = URLSafeTimedSerializer(
        secret,
        salt="cookie-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": "sha1"},
    )
    signed_at = int(time.time() - age)
    with mock.patch("itsdangerous.timed.time.time", return_value=signed_at):
        return serializer.dumps(data)


def assert_refused(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-gateway-backend"] == "gateway"
    body = response.json()
    assert body["error"]["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith('Bearer realm="gateway"')


BAD_TOKENS = {
    "expired": lambda: forge(claims(exp=int(time.time()) - 120, iat=int(time.time()) - 700)),
    "wrong signature": lambda: forge(claims(), key="another-secret-that-is-32-bytes-long!"),
    "wrong algorithm": lambda: forge(claims(), algorithm="HS512"),
    "alg none": lambda: unsigned(claims()),
    "missing exp": lambda: forge(claims(exp=None)),
    "missing sub": lambda: forge(claims(sub=None)),
    "unknown kid": lambda: jwt.encode(claims(), DEMO_JWT_SECRET, headers={"kid": "other"}),
    "garbage": lambda: "not.a.token",
}


@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_no_credentials(client: httpx.Client, method: str, path: str, side: str) -> None:
    assert_refused(client.request(method, path))


@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_valid_jwt(client: httpx.Client, method: str, path: str, side: str) -> None:
    token = token_for(client, "bob", "builder")
    response = client.request(method, path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == side


@pytest.mark.parametrize("case", list(BAD_TOKENS))
@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_bad_tokens(client: httpx.Client, method: str, path: str, side: str, case: str) -> None:
    response = client.request(
        method, path, headers={"Authorization": f"Bearer {BAD_TOKENS[case]()}"}
    )
    assert_refused(response)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_valid_session(client: httpx.Client, method: str, path: str, side: str) -> None:
    client.post("/login", data={"username": "bob", "password": "builder"})
    response = client.request(method, path)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == side


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


BAD_SESSIONS = {
    "tampered signature": lambda cookie: _flip(cookie, len(cookie) - 2),
    "tampered payload": lambda cookie: _flip(cookie, 5),
    "other secret": lambda _: session_cookie({"user": "alice"}, "not-the-app-secret"),
    # Flask's default PERMANENT_SESSION_LIFETIME is 31 days.
    "expired": lambda _: session_cookie({"user": "alice"}, age=32 * 24 * 3600),
}


@pytest.mark.parametrize("case", list(BAD_SESSIONS))
@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_bad_sessions(client: httpx.Client, method: str, path: str, side: str, case: str) -> None:
    client.post("/login", data={"username": "alice", "password": "wonderland"})
    good = client.cookies["session"]
    client.cookies.clear()
    bad = BAD_SESSIONS[case](good)
    response = client.request(method, path, headers={"Cookie": f"session={bad}"})
    assert_refused(response)


@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_session_signed_with_a_fallback_key(
    client: httpx.Client, method: str, path: str, side: str
) -> None:
    cookie = session_cookie({"user": "bob"}, RETIRED_SECRET_KEY, age=3600)
    response = client.request(method, path, headers={"Cookie": f"session={cookie}"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == side


def test_forged_session_with_the_real_secret_is_accepted(client: httpx.Client) -> None:
    # The control for the cases above: a cookie built the way Flask builds it verifies.
    cookie = session_cookie({"user": "alice"})
    response = client.get("/api/me", headers={"Cookie": f"session={cookie}"})
    assert response.json()["username"] == "alice"


def test_session_for_a_deleted_user_is_refused(client: httpx.Client) -> None:
    cookie = session_cookie({"user": "mallory"})
    response = client.get("/api/me", headers={"Cookie": f"session={cookie}"})
    assert_refused(response)


@pytest.mark.parametrize("header", ["X-User-Id", "X-User_Id", "X-Remote-User", "Remote-User"])
@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_spoofed_identity_headers(
    client: httpx.Client, method: str, path: str, side: str, header: str
) -> None:
    assert_refused(client.request(method, path, headers={header: "alice", "X-User-Roles": "admin"}))


@pytest.mark.parametrize(
    ("username", "password", "status"), [("bob", "builder", 403), ("alice", "wonderland", 200)]
)
def test_roles_on_both_sides(
    client: httpx.Client, username: str, password: str, status: int
) -> None:
    token = token_for(client, username, password)
    auth = {"Authorization": f"Bearer {token}"}
    legacy = client.get("/admin/users", headers=auth)
    assert legacy.status_code == status
    book = {"title": "Solaris", "author": "Stanislaw Lem", "year": 1961}
    new_delete = client.delete("/api/books/2", headers=auth)
    assert new_delete.status_code == (204 if status == 200 else 403)
    if status == 403:
        assert legacy.json()["error"]["message"] == "missing required role: admin"
    created = client.post("/api/books", json=book, headers=auth)  # any signed-in user
    assert created.status_code == 201
    assert created.headers["x-gateway-backend"] == "catalog"


def test_login_on_flask_then_the_migrated_route_knows_you(client: httpx.Client) -> None:
    assert (
        client.post("/login", data={"username": "alice", "password": "wonderland"}).status_code
        == 200
    )
    me = client.get("/api/me")
    assert me.headers["x-gateway-backend"] == "accounts"
    assert me.json() == {
        "username": "alice",
        "roles": ["admin"],
        "auth_method": "session",
        "display_name": "Alice",
    }
    # Logging out on Flask logs you out of the new side too.
    client.post("/logout")
    assert_refused(client.get("/api/me"))


def test_a_session_write_on_fastapi_is_seen_by_flask(client: httpx.Client) -> None:
    client.post("/login", data={"username": "bob", "password": "builder"})
    before = client.cookies["session"]
    saved = client.put("/api/preferences", json={"theme": "dark"})
    assert saved.status_code == 200, saved.text
    assert saved.headers["x-gateway-backend"] == "accounts"
    set_cookie = saved.headers["set-cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http here
    assert client.cookies["session"] != before
    read = client.get("/api/preferences")
    assert read.headers["x-gateway-backend"] == "legacy"
    assert read.json() == {"theme": "dark"}
    # Still logged in as bob on both sides after the new side rewrote the cookie.
    assert client.get("/api/me").json()["username"] == "bob"


def test_login_rotates_the_session(client: httpx.Client) -> None:
    client.post("/login", data={"username": "bob", "password": "builder"})
    client.put("/api/preferences", json={"theme": "light"})
    first = client.cookies["session"]
    client.post("/login", data={"username": "alice", "password": "wonderland"})
    assert client.cookies["session"] != first
    # Login starts a fresh session: bob's data does not follow alice.
    assert client.get("/api/preferences").json() == {"theme": None}


def test_token_beats_session_and_both_sides_see_one_user(client: httpx.Client) -> None:
    client.post("/login", data={"username": "alice", "password": "wonderland"})
    token = token_for(client, "bob", "builder")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/me", headers=auth).json()["username"] == "bob"
    # The legacy side sees bob too: the admin page refuses him despite alice's cookie.
    assert client.get("/admin/users", headers=auth).status_code == 403


def test_api_key(client: httpx.Client) -> None:
    me = client.get("/api/me", headers={"X-API-Key": API_KEY})
    assert me.json() == {
        "username": "reporting-bot",
        "roles": ["user"],
        "auth_method": "api-key",
        "display_name": "Reporting-bot",
    }
    assert_refused(client.get("/api/me", headers={"X-API-Key": "wrong"}))


def test_duplicate_authorization_headers_are_refused(client: httpx.Client) -> None:
    token = token_for(client, "bob", "builder")
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")]
    response = client.get("/api/me", headers=headers)
    assert_refused(response, 400)


def test_public_routes_need_nothing(client: httpx.Client) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/api/books").status_code == 200
    assert client.get("/api/books/1").status_code == 200
    # A stale cookie does not lock anyone out of a public page.
    assert client.get("/", headers={"Cookie": "session=garbage"}).status_code == 200


def test_logs_name_the_user_and_never_a_secret(demo: GatewayProcess, client: httpx.Client) -> None:
    client.post(
        "/login",
        data={"username": "alice", "password": "wonderland"},
        headers={"X-Request-ID": "auth-log-login"},
    )
    cookie = client.cookies["session"]
    token = token_for(client, "bob", "builder")
    client.get(
        "/api/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "auth-log-me"}
    )
    [line] = [e for e in demo.events_for("auth-log-me") if e["event"] == "request"]
    assert (line["user"], line["auth"]) == ("bob", "jwt")
    text = demo.log_text()
    for secret in (token, cookie, "wonderland", "builder", API_KEY, DEMO_JWT_SECRET):
        assert secret not in text
