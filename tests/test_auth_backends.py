"""The credential backends, unit level: bearer JWTs, the legacy Flask session cookie, API keys.

Each backend answers ``None`` (no credential of its kind), an ``Identity``, or raises
``InvalidCredentials`` with a reason; the tables below pin which answer every case gets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast
from unittest import mock

import jwt
import pytest
from flask import Flask
from flask.sessions import SessionInterface
from itsdangerous import TimestampSigner
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send
from support import call, http_scope

import legacy_flask
from gateway.adapters.legacy import LegacyApp
from gateway.auth.api_keys import APIKeyBackend, hash_api_key
from gateway.auth.flask_session import (
    FlaskSessionBackend,
    FlaskSessionCodec,
    SessionCodecError,
    with_app_context,
)
from gateway.auth.jwt import JWTBackend
from gateway.auth.shared_session import SessionBridge, session_from_scope
from gateway.build import build_api_key_backend, build_jwt_backend
from gateway.context import Identity
from gateway.errors import ConfigError, InvalidCredentials
from gateway.settings import APIKeysSettings, JWTSettings, SessionSettings
from legacy_flask import create_app
from legacy_flask.auth import roles_for
from legacy_flask.tokens import issue_token

SOURCE = "gateway.toml"
# 32+ bytes each: the minimum for HS256.
SECRET = "unit-test-current-jwt-secret-0123456789"
OLD_SECRET = "unit-test-previous-jwt-secret-987654321"
OTHER_SECRET = "unit-test-attacker-jwt-secret-000000000"
DROP = object()  # a claim value meaning "leave this claim out"


async def authenticate_with(backend: Any, header: str, value: str | bytes) -> Identity | None:
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    identity: Identity | None = await backend.authenticate(Headers(raw=[(header.encode(), raw)]))
    return identity


# --- JWT --------------------------------------------------------------------------------------


def jwt_settings(**overrides: Any) -> JWTSettings:
    data: dict[str, Any] = {
        "keys": [
            {"kid": "current", "algorithm": "HS256", "secret": SECRET},
            {"kid": "previous", "algorithm": "HS256", "secret": OLD_SECRET},
        ],
        **overrides,
    }
    return JWTSettings.model_validate(data)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": "bob", "roles": ["user"], "iat": now, "exp": now + 300}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


def token(
    *, secret: str = SECRET, algorithm: str = "HS256", kid: str | None = None, **claim: Any
) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**claim), secret, algorithm=algorithm, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to build: ``alg: none``, or HMAC keyed with a public key."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims()).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def bob(roles: Iterable[str] = ("user",), **kept: Any) -> Identity:
    return Identity(subject="bob", roles=frozenset(roles), method="jwt", claims=kept)


VALID_TOKENS = [
    pytest.param({}, lambda: f"Bearer {token()}", bob(), id="HS256, no kid: current key"),
    pytest.param({}, lambda: f"bearer {token()}", bob(), id="scheme is case-insensitive"),
    pytest.param({}, lambda: f"BEARER  {token()} ", bob(), id="extra spaces"),
    pytest.param({}, lambda: f"Bearer {token(kid='current')}", bob(), id="kid of current key"),
    pytest.param(
        {}, lambda: f"Bearer {token(kid='previous', secret=OLD_SECRET)}", bob(), id="rotated key"
    ),
    pytest.param(
        {},
        lambda: f"Bearer {token(exp=int(time.time()) - 10)}",
        bob(),
        id="expired 10s ago, within 30s leeway",
    ),
    pytest.param({}, lambda: f"Bearer {token(roles='admin')}", bob({"admin"}), id="role string"),
    pytest.param({}, lambda: f"Bearer {token(roles=DROP)}", bob(()), id="no roles claim"),
    pytest.param(
        {"audience": "bookstore", "issuer": "https://id.example"},
        lambda: f"Bearer {token(aud='bookstore', iss='https://id.example')}",
        bob(),
        id="right audience and issuer",
    ),
    pytest.param(
        {"keep_claims": ["email", "tenant"]},
        lambda: f"Bearer {token(email='bob@example.com', secret_note='x')}",
        bob(email="bob@example.com"),
        id="keep_claims copies only those present and listed",
    ),
    pytest.param(
        {"subject_claim": "uid", "roles_claim": "groups"},
        lambda: f"Bearer {token(sub=DROP, uid='bob', groups=['ops'])}",
        bob({"ops"}),
        id="custom subject and roles claims",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("overrides", "authorization", "expected"), VALID_TOKENS)
async def test_valid_tokens(
    overrides: dict[str, Any], authorization: Callable[[], str], expected: Identity
) -> None:
    backend = build_jwt_backend(jwt_settings(**overrides), source=SOURCE)
    assert await authenticate_with(backend, "authorization", authorization()) == expected


INVALID_TOKENS = [
    pytest.param({}, lambda: token(exp=int(time.time()) - 60), "token expired", id="expired"),
    pytest.param({}, lambda: token(secret=OTHER_SECRET), "bad signature", id="wrong secret"),
    pytest.param(
        {}, lambda: token(kid="previous"), "bad signature", id="kid of another key than signed"
    ),
    pytest.param(
        {},
        lambda: token(algorithm="HS512", secret=SECRET * 2),
        "token algorithm does not match the key's",
        id="HS512 token, HS256 key",
    ),
    pytest.param(
        {},
        lambda: hand_made_token({"alg": "none", "typ": "JWT"}, None),
        "token algorithm does not match the key's",
        id="alg none",
    ),
    pytest.param(
        {},
        lambda: hand_made_token({"alg": "HS256"}, None),
        "bad signature",
        id="empty signature",
    ),
    pytest.param({}, lambda: token(kid="nope"), "unknown kid", id="unknown kid"),
    pytest.param({}, lambda: token(exp=DROP), "missing claim 'exp'", id="missing exp"),
    pytest.param({}, lambda: token(sub=DROP), "missing claim 'sub'", id="missing sub"),
    pytest.param({}, lambda: token(sub=42), "invalid token (InvalidSubjectError)", id="sub int"),
    pytest.param(
        {},
        lambda: token(sub=""),
        "claim 'sub' is not a non-empty string",
        id="sub empty",
    ),
    pytest.param(
        {"subject_claim": "uid"},
        lambda: token(uid=["bob"]),
        "claim 'uid' is not a non-empty string",
        id="custom subject claim not a string",
    ),
    pytest.param(
        {}, lambda: token(roles=7), "claim 'roles' is not a list of strings", id="roles number"
    ),
    pytest.param(
        {},
        lambda: token(roles=["user", 7]),
        "claim 'roles' is not a list of strings",
        id="roles list with a number",
    ),
    pytest.param(
        {"audience": "bookstore"}, lambda: token(aud="other"), "wrong audience", id="wrong aud"
    ),
    pytest.param(
        {"audience": "bookstore"}, lambda: token(), "missing claim 'aud'", id="aud required"
    ),
    pytest.param(
        {},
        lambda: token(aud="other"),
        "token names an audience; none is configured",
        id="aud present, none configured",
    ),
    pytest.param(
        {"issuer": "https://id.example"},
        lambda: token(iss="https://evil.example"),
        "wrong issuer",
        id="wrong issuer",
    ),
    pytest.param(
        {"issuer": "https://id.example"}, lambda: token(), "missing claim 'iss'", id="iss required"
    ),
    pytest.param(
        {}, lambda: token(nbf=int(time.time()) + 600), "token not yet valid", id="nbf in future"
    ),
    pytest.param({}, lambda: "abc", "malformed token", id="one segment"),
    pytest.param({}, lambda: "a.b", "malformed token", id="two segments"),
    pytest.param({}, lambda: "a.b.c", "malformed token", id="three junk segments"),
    pytest.param({}, lambda: token() + "x", "bad signature", id="signature one char longer"),
    pytest.param({}, lambda: token() + ".x", "malformed token", id="four segments"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("overrides", "make_token", "reason"), INVALID_TOKENS)
async def test_invalid_tokens(
    overrides: dict[str, Any], make_token: Callable[[], str], reason: str
) -> None:
    backend = build_jwt_backend(jwt_settings(**overrides), source=SOURCE)
    value = make_token()

    with pytest.raises(InvalidCredentials) as caught:
        await authenticate_with(backend, "authorization", f"Bearer {value}")

    assert caught.value.reason == reason
    assert value not in caught.value.reason  # the reason is logged: never the token


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(b"Bearer", "empty bearer token", id="scheme only"),
        pytest.param(b"Bearer    ", "empty bearer token", id="scheme and spaces"),
        pytest.param("Bearer é.é.é".encode("latin-1"), "malformed token", id="latin-1 bytes"),
        pytest.param(b"Bearer \xff\xfe.x.y", "malformed token", id="non-text bytes"),
        pytest.param(b"Bearer a b", "malformed token", id="space inside"),
    ],
)
async def test_malformed_authorization_values(value: bytes, reason: str) -> None:
    backend = build_jwt_backend(jwt_settings(), source=SOURCE)
    with pytest.raises(InvalidCredentials, match=f"^{reason}$"):
        await authenticate_with(backend, "authorization", value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([], id="no header"),
        pytest.param([(b"authorization", b"Basic Ym9iOmJ1aWxkZXI=")], id="Basic"),
        pytest.param([(b"authorization", b"Token abc")], id="other scheme"),
        pytest.param([(b"x-api-key", b"Bearer abc")], id="bearer in another header"),
    ],
)
async def test_no_bearer_token_is_not_this_backends_business(
    raw: list[tuple[bytes, bytes]],
) -> None:
    backend = build_jwt_backend(jwt_settings(), source=SOURCE)
    assert await backend.authenticate(Headers(raw=raw)) is None


@pytest.mark.anyio
async def test_two_authorization_headers_are_refused() -> None:
    backend = build_jwt_backend(jwt_settings(), source=SOURCE)
    headers = Headers(raw=[(b"authorization", f"Bearer {token()}".encode())] * 2)
    with pytest.raises(InvalidCredentials, match="more than one Authorization header"):
        await backend.authenticate(headers)


@pytest.mark.anyio
async def test_tokens_from_the_demo_legacy_app_verify(tmp_path: Path) -> None:
    secret = legacy_flask.DEMO_JWT_SECRET
    settings = jwt_settings(keys=[{"kid": "legacy", "algorithm": "HS256", "secret": secret}])
    backend = build_jwt_backend(settings, source=SOURCE)
    app = create_app(database=tmp_path / "bookstore.sqlite3", jwt_secret=secret)
    response = app.test_client().post(
        "/api/token", json={"username": "alice", "password": "wonderland"}
    )
    assert response.status_code == 200, response.json

    from_endpoint = response.json["access_token"]  # type: ignore[index]
    from_function = issue_token("bob", {"user"}, secret)

    assert await authenticate_with(backend, "authorization", f"Bearer {from_endpoint}") == (
        Identity(subject="alice", roles=frozenset({"admin"}), method="jwt")
    )
    assert await authenticate_with(backend, "authorization", f"Bearer {from_function}") == bob()


# --- JWT with RSA keys, and key configuration -----------------------------------------------


@dataclass(frozen=True)
class RSAKeys:
    private: Any
    private_pem: bytes
    public_pem: bytes
    public_file: Path


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> RSAKeys:
    pytest.importorskip("cryptography", reason="RS256 needs the 'cryptography' package")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_file = tmp_path_factory.mktemp("keys") / "issuer.pub.pem"
    public_file.write_bytes(public_pem)
    return RSAKeys(private, private_pem, public_pem, public_file)


def rsa_backend(keys: RSAKeys) -> JWTBackend:
    settings = jwt_settings(
        keys=[{"kid": "rsa", "algorithm": "RS256", "key_file": str(keys.public_file)}]
    )
    return build_jwt_backend(settings, source=SOURCE)


@pytest.mark.anyio
async def test_rs256_token_verifies_with_the_public_key(rsa_keys: RSAKeys) -> None:
    signed = jwt.encode(claims(), rsa_keys.private, algorithm="RS256")
    assert await authenticate_with(rsa_backend(rsa_keys), "authorization", f"Bearer {signed}") == (
        bob()
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"alg": "HS256", "typ": "JWT"}, id="no kid"),
        pytest.param({"alg": "HS256", "typ": "JWT", "kid": "rsa"}, id="kid of the RSA key"),
    ],
)
async def test_hmac_token_keyed_with_the_rsa_public_key_is_refused(
    rsa_keys: RSAKeys, header: dict[str, str]
) -> None:
    # The classic confusion attack: the public key is public, so if a verifier let the token
    # pick HS256, this "signature" would check out against the configured key's PEM bytes.
    forged = hand_made_token(header, rsa_keys.public_pem)
    with pytest.raises(InvalidCredentials, match="token algorithm does not match the key's"):
        await authenticate_with(rsa_backend(rsa_keys), "authorization", f"Bearer {forged}")


@pytest.mark.anyio
async def test_alg_none_is_refused_by_an_rsa_key(rsa_keys: RSAKeys) -> None:
    forged = hand_made_token({"alg": "none"}, None)
    with pytest.raises(InvalidCredentials, match="token algorithm does not match the key's"):
        await authenticate_with(rsa_backend(rsa_keys), "authorization", f"Bearer {forged}")


def test_missing_key_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    settings = jwt_settings(
        keys=[
            {"kid": "a", "algorithm": "HS256", "secret": SECRET},
            {"kid": "b", "algorithm": "RS256", "key_file": str(missing)},
        ]
    )
    with pytest.raises(ConfigError) as caught:
        build_jwt_backend(settings, source=SOURCE)
    assert caught.value.problems == [
        f"gateway.toml: auth.jwt.keys[1].key_file: file not found: {missing}"
    ]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        pytest.param(
            {"algorithm": "HS256", "secret": "short-secret"},
            "auth.jwt.keys[0].secret: The HMAC key is 12 bytes long, which is below the minimum "
            "recommended length of 32 bytes",
            id="HS256 secret under 32 bytes",
        ),
        pytest.param(
            {"algorithm": "HS512", "secret": SECRET},
            "auth.jwt.keys[0].secret: The HMAC key is 39 bytes long, which is below the minimum "
            "recommended length of 64 bytes",
            id="HS512 secret under 64 bytes",
        ),
        pytest.param(
            {"algorithm": "HS256", "secret_env": "JWT_SECRET", "secret": ""},
            "auth.jwt.keys[0].secret_env: not usable as an HMAC secret: HMAC key must not be empty",
            id="empty secret from the environment",
        ),
    ],
)
def test_weak_hmac_secrets_stop_start_up(key: dict[str, Any], problem: str) -> None:
    settings = jwt_settings(keys=[{"kid": "k", **key}])
    with pytest.raises(ConfigError) as caught:
        build_jwt_backend(settings, source=SOURCE)
    [message] = caught.value.problems
    assert message.startswith(f"gateway.toml: {problem}")


@pytest.mark.parametrize(
    ("algorithm", "content", "problem"),
    [
        pytest.param("RS256", b"not a key\n", "not a PEM public key usable with RS256", id="junk"),
        pytest.param(
            "RS256", "private", "is a private key; give the gateway the public key", id="private"
        ),
        pytest.param(
            "ES256", "public", "not a PEM public key usable with ES256", id="RSA key for ES256"
        ),
        pytest.param(
            "HS256",
            "public",
            "not usable as an HMAC secret: The specified key is an asymmetric key or x509 "
            "certificate and should not be used as an HMAC secret.",
            id="PEM as HMAC",
        ),
    ],
)
def test_unusable_key_files_stop_start_up(
    rsa_keys: RSAKeys, tmp_path: Path, algorithm: str, content: bytes | str, problem: str
) -> None:
    path = tmp_path / "key.pem"
    if content == "private":
        path.write_bytes(rsa_keys.private_pem)
    elif content == "public":
        path.write_bytes(rsa_keys.public_pem)
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    settings = jwt_settings(keys=[{"kid": "k", "algorithm": algorithm, "key_file": str(path)}])
    with pytest.raises(ConfigError) as caught:
        build_jwt_backend(settings, source=SOURCE)
    assert caught.value.problems == [f"gateway.toml: auth.jwt.keys[0].key_file: {problem}"]


@pytest.mark.anyio
async def test_hmac_secret_file_ignores_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "jwt-secret"
    path.write_text(SECRET + "\n")
    settings = jwt_settings(keys=[{"kid": "k", "algorithm": "HS256", "key_file": str(path)}])
    backend = build_jwt_backend(settings, source=SOURCE)
    assert await authenticate_with(backend, "authorization", f"Bearer {token()}") == bob()


# --- Flask session ----------------------------------------------------------------------------

SECRET_KEY = "unit-test-session-secret"
FALLBACK_SECRET_KEY = "unit-test-session-secret-before-rotation"
LIFETIME = timedelta(seconds=60)
# What the gateway says about a bad cookie. Flask says only "invalid": it starts an empty session.
BAD_SIGNATURE = "invalid: bad session signature"
EXPIRED = "invalid: expired session"


@pytest.fixture
def demo_app(tmp_path: Path) -> Flask:
    app = create_app(database=tmp_path / "bookstore.sqlite3", secret_key=SECRET_KEY)
    app.config["SECRET_KEY_FALLBACKS"] = [FALLBACK_SECRET_KEY]
    app.config["PERMANENT_SESSION_LIFETIME"] = LIFETIME
    return app


@pytest.fixture
def codec(demo_app: Flask) -> FlaskSessionCodec:
    return FlaskSessionCodec(demo_app)


def session_backend(
    codec: FlaskSessionCodec,
    loader: Callable[[str], Iterable[str] | None] | None,
    clock: Callable[[], float] = time.monotonic,
    **settings: Any,
) -> FlaskSessionBackend:
    session = SessionSettings.model_validate(settings)
    return FlaskSessionBackend(
        codec,
        loader,
        subject_key=session.subject_key,
        roles_cache_seconds=session.roles_cache_seconds,
        clock=clock,
    )


def login_cookie(app: Flask, username: str = "alice", password: str = "wonderland") -> str:
    client = app.test_client()
    response = client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def signed_with(secret_key: str, data: dict[str, Any]) -> str:
    other = Flask("other")
    other.secret_key = secret_key
    return FlaskSessionCodec(other).dump(data)


def signed_ago(codec: FlaskSessionCodec, seconds: int, data: dict[str, Any]) -> str:
    then = int(time.time()) - seconds
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=then):
        return codec.dump(data)


def flip(value: str, index: int) -> str:
    """Change one base64url character. Not the last one: its low bits can be padding."""
    replacement = "A" if value[index] != "A" else "B"
    return value[:index] + replacement + value[index + 1 :]


def signature_start(value: str) -> int:
    return value.rindex(".") + 1


COOKIES = [
    pytest.param(lambda app, codec: f"session={login_cookie(app)}", "alice", id="from /login"),
    pytest.param(
        lambda app, codec: f"theme=dark; session={login_cookie(app)}; lang=en",
        "alice",
        id="among other cookies",
    ),
    pytest.param(
        lambda app, codec: f"session={flip(login_cookie(app), 3)}",
        BAD_SIGNATURE,
        id="payload flipped",
    ),
    pytest.param(
        lambda app, codec: (lambda v: f"session={flip(v, signature_start(v) + 5)}")(
            login_cookie(app)
        ),
        BAD_SIGNATURE,
        id="signature flipped",
    ),
    pytest.param(
        lambda app, codec: f"session={signed_with('someone-elses-key', {'user': 'alice'})}",
        BAD_SIGNATURE,
        id="unknown secret key",
    ),
    pytest.param(
        lambda app, codec: f"session={signed_with(FALLBACK_SECRET_KEY, {'user': 'alice'})}",
        "alice",
        id="SECRET_KEY_FALLBACKS key",
    ),
    pytest.param(
        lambda app, codec: f"session={signed_ago(codec, 120, {'user': 'alice'})}",
        EXPIRED,
        id="older than PERMANENT_SESSION_LIFETIME",
    ),
    pytest.param(
        lambda app, codec: f"session={signed_ago(codec, 30, {'user': 'alice'})}",
        "alice",
        id="younger than PERMANENT_SESSION_LIFETIME",
    ),
    pytest.param(lambda app, codec: "session=not-a-session", BAD_SIGNATURE, id="garbage"),
    pytest.param(
        lambda app, codec: f"session={flip(login_cookie(app), 3)}; session={login_cookie(app)}",
        BAD_SIGNATURE,
        id="two session cookies: the first counts",
    ),
    pytest.param(
        lambda app, codec: f"session={login_cookie(app)}; session=forged",
        "alice",
        id="two session cookies: a forged second is ignored",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("make_cookie", "expected"), COOKIES)
async def test_session_cookie_verdict_matches_flask(
    demo_app: Flask,
    codec: FlaskSessionCodec,
    make_cookie: Callable[[Flask, FlaskSessionCodec], str],
    expected: str,
) -> None:
    cookie = make_cookie(demo_app, codec)
    backend = session_backend(codec, with_app_context(demo_app, roles_for))

    identity = reason = None
    try:
        identity = await backend.authenticate(Headers({"cookie": cookie}))
    except InvalidCredentials as exc:
        reason = exc.reason
    gateway_says = identity.subject if identity is not None else f"invalid: {reason}"

    # Flask itself, given the same Cookie header, must reach the same verdict.
    response = demo_app.test_client(use_cookies=False).get("/api/me", headers={"Cookie": cookie})
    flask_says = response.json["username"] if response.status_code == 200 else "invalid"  # type: ignore[index]

    assert gateway_says == expected
    assert flask_says == expected.partition(":")[0]
    if identity is not None:
        assert identity.method == "session"


@pytest.mark.anyio
async def test_session_identity_has_roles_from_the_loader(
    demo_app: Flask, codec: FlaskSessionCodec
) -> None:
    backend = session_backend(codec, with_app_context(demo_app, roles_for))
    headers = Headers({"cookie": f"session={login_cookie(demo_app, 'bob', 'builder')}"})
    assert await backend.authenticate(headers) == Identity(
        subject="bob", roles=frozenset({"user"}), method="session", claims={}
    )


@pytest.mark.anyio
async def test_session_without_a_loader_has_no_roles(codec: FlaskSessionCodec) -> None:
    backend = session_backend(codec, None)
    identity = await backend.authenticate(
        Headers({"cookie": f"session={codec.dump({'user': 'x'})}"})
    )
    assert identity == Identity(subject="x", roles=frozenset(), method="session")


TWO_SESSION_COOKIES = [
    pytest.param([b"session=FIRST; session=SECOND"], id="in one Cookie header"),
    pytest.param([b"session=FIRST", b"session=SECOND"], id="in two Cookie headers (HTTP/2)"),
    pytest.param([b"theme=dark; session=FIRST", b"session=SECOND; lang=en"], id="among others"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("cookie_headers", TWO_SESSION_COOKIES)
async def test_two_session_cookies_are_read_as_the_first_everywhere(
    demo_app: Flask, codec: FlaskSessionCodec, cookie_headers: list[bytes]
) -> None:
    # A client (or a sibling subdomain planting a cookie) sends the session cookie twice. The
    # identity the gateway verifies, the session a service sees and the one Flask sees must be
    # the same user's: the first cookie, as Werkzeug reads it.
    bob, alice = codec.dump({"user": "bob"}), codec.dump({"user": "alice"})
    headers = [
        (b"cookie", value.replace(b"FIRST", bob.encode()).replace(b"SECOND", alice.encode()))
        for value in cookie_headers
    ]

    identity = await session_backend(codec, None).authenticate(Headers(raw=headers))

    seen: dict[str, Any] = {}

    async def service(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(session_from_scope(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await call(SessionBridge(service, codec=codec), http_scope("/", headers=headers))

    legacy = LegacyApp(cast(Any, demo_app), threads=1)
    try:
        flask_says = await call(legacy, http_scope("/api/me", headers=headers))
    finally:
        legacy.close()

    assert identity is not None
    assert identity.subject == "bob"
    assert seen["user"] == "bob"
    assert json.loads(flask_says.body)["username"] == "bob"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(None, id="no Cookie header"),
        pytest.param("theme=dark", id="other cookies only"),
        pytest.param("session=", id="empty session cookie"),
        pytest.param({"_flashes": [["message", "Saved"]]}, id="valid session, no user"),
        pytest.param({"theme": "dark"}, id="valid session after logout"),
    ],
)
async def test_no_session_user_is_anonymous_not_invalid(
    codec: FlaskSessionCodec, cookie: str | dict[str, Any] | None
) -> None:
    calls: list[str] = []
    backend = session_backend(codec, lambda subject: calls.append(subject) or ["x"])
    if isinstance(cookie, dict):
        cookie = f"session={codec.dump(cookie)}"
    headers = Headers({"cookie": cookie} if cookie is not None else {})

    assert await backend.authenticate(headers) is None
    assert calls == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(
            {"user": True}, "session subject is not a non-empty string or an integer", id="bool"
        ),
        pytest.param(
            {"user": ""}, "session subject is not a non-empty string or an integer", id="empty"
        ),
        # An integer id is a subject (Flask's tutorial keeps one); this one is nobody's.
        pytest.param({"user": 42}, "unknown session user", id="int user no longer exists"),
        pytest.param({"user": "ghost"}, "unknown session user", id="user no longer exists"),
    ],
)
async def test_session_user_the_gateway_refuses(
    demo_app: Flask, codec: FlaskSessionCodec, data: dict[str, Any], reason: str
) -> None:
    backend = session_backend(codec, with_app_context(demo_app, roles_for))
    with pytest.raises(InvalidCredentials, match=f"^{reason}$"):
        await backend.authenticate(Headers({"cookie": f"session={codec.dump(data)}"}))


@pytest.mark.anyio
async def test_roles_are_loaded_on_a_worker_thread_and_cached(codec: FlaskSessionCodec) -> None:
    calls: list[tuple[str, int]] = []
    now = [1000.0]

    def loader(subject: str) -> list[str]:
        calls.append((subject, threading.get_ident()))
        return ["admin"]

    backend = session_backend(codec, loader, clock=lambda: now[0], roles_cache_seconds=30)
    headers = Headers({"cookie": f"session={codec.dump({'user': 'alice'})}"})

    first = await backend.authenticate(headers)
    now[0] += 29
    second = await backend.authenticate(headers)
    assert [subject for subject, _ in calls] == ["alice"]
    assert first == second == Identity("alice", frozenset({"admin"}), "session")
    assert calls[0][1] != threading.get_ident()  # not the event loop's thread

    now[0] += 2  # 31 s after the load: stale
    await backend.authenticate(headers)
    assert [subject for subject, _ in calls] == ["alice", "alice"]


@pytest.mark.anyio
async def test_roles_cache_is_bounded_and_can_be_off(codec: FlaskSessionCodec) -> None:
    calls: list[str] = []

    def loader(subject: str) -> list[str]:
        calls.append(subject)
        return []

    def headers(user: str) -> Headers:
        return Headers({"cookie": f"session={codec.dump({'user': user})}"})

    backend = session_backend(codec, loader)
    backend.max_cached = 2
    for user in ("a", "b", "c", "c", "b", "a"):
        await backend.authenticate(headers(user))
    assert calls == ["a", "b", "c", "a"]  # "a" was the oldest when "c" arrived

    # A refreshed entry counts as new: after "a" is reloaded, "b" is the oldest.
    calls.clear()
    now = [0.0]
    backend = session_backend(codec, loader, clock=lambda: now[0], roles_cache_seconds=30)
    backend.max_cached = 2
    for at, user in ((0, "a"), (10, "b"), (31, "a"), (32, "c"), (33, "a"), (34, "b")):
        now[0] = at
        await backend.authenticate(headers(user))
    assert calls == ["a", "b", "a", "c", "b"]

    calls.clear()
    uncached = session_backend(codec, loader, roles_cache_seconds=0)
    for user in ("a", "a"):
        await uncached.authenticate(headers(user))
    assert calls == ["a", "a"]


@pytest.mark.anyio
async def test_unknown_user_is_cached_too(codec: FlaskSessionCodec) -> None:
    calls: list[str] = []
    backend = session_backend(codec, lambda subject: calls.append(subject))
    headers = Headers({"cookie": f"session={codec.dump({'user': 'ghost'})}"})
    for _ in range(2):
        with pytest.raises(InvalidCredentials, match="unknown session user"):
            await backend.authenticate(headers)
    assert calls == ["ghost"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("returned", "message"),
    [
        pytest.param("admin", "returned a str", id="a string"),
        pytest.param(["admin", 1], "not a str", id="a non-string role"),
    ],
)
async def test_a_broken_roles_loader_fails_closed(
    codec: FlaskSessionCodec, returned: Any, message: str
) -> None:
    backend = session_backend(codec, lambda subject: returned)
    headers = Headers({"cookie": f"session={codec.dump({'user': 'alice'})}"})
    # Not InvalidCredentials: the middleware answers a backend failure with 503, never forwards.
    with pytest.raises(TypeError, match=message):
        await backend.authenticate(headers)


def test_dump_load_round_trip_and_flask_reads_what_the_codec_wrote(
    demo_app: Flask, codec: FlaskSessionCodec
) -> None:
    data = {"user": "bob", "theme": "dark", "seen": (1, 2), "at": datetime(2024, 5, 1, tzinfo=UTC)}
    value = codec.dump(data)
    assert codec.load(value) == data

    client = demo_app.test_client()
    client.set_cookie("session", value)
    response = client.get("/api/preferences")
    assert response.status_code == 200, response.json
    assert response.json == {"theme": "dark"}


def test_set_cookie_header_is_what_flask_sends(demo_app: Flask, codec: FlaskSessionCodec) -> None:
    response = demo_app.test_client().post(
        "/login", json={"username": "alice", "password": "wonderland"}
    )
    flask_header = response.headers["Set-Cookie"]
    value = flask_header.partition(";")[0].partition("=")[2]

    header = codec.set_cookie_header(value, permanent=False, https=False)

    assert header.decode() == flask_header
    assert header.decode() == f"session={value}; HttpOnly; Path=/; SameSite=Lax"


@pytest.mark.parametrize(
    ("config", "https", "secure"),
    [
        pytest.param({}, False, False, id="http"),
        pytest.param({}, True, True, id="https request"),
        pytest.param({"SESSION_COOKIE_SECURE": True}, False, True, id="app says secure"),
    ],
)
def test_set_cookie_header_secure_flag(
    demo_app: Flask, config: dict[str, Any], https: bool, secure: bool
) -> None:
    demo_app.config.update(config)
    header = FlaskSessionCodec(demo_app).set_cookie_header("v", permanent=False, https=https)
    attributes = header.decode().split("; ")
    assert ("Secure" in attributes) is secure
    assert {"HttpOnly", "Path=/", "SameSite=Lax"} <= set(attributes)


def test_permanent_cookie_expires_after_the_session_lifetime(codec: FlaskSessionCodec) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    header = codec.set_cookie_header("v", permanent=True, https=False).decode()
    [expires] = [a for a in header.split("; ") if a.startswith("Expires=")]
    when = parsedate_to_datetime(expires.removeprefix("Expires="))
    assert before + LIFETIME <= when <= datetime.now(UTC) + LIFETIME


def test_delete_cookie_header_is_what_flask_sends_on_logout(
    demo_app: Flask, codec: FlaskSessionCodec
) -> None:
    client = demo_app.test_client()
    client.post("/login", json={"username": "alice", "password": "wonderland"})
    response = client.post("/logout")
    assert codec.delete_cookie_header(https=False).decode() == response.headers["Set-Cookie"]
    assert "Max-Age=0" in response.headers["Set-Cookie"]


class ServerSideSessions(SessionInterface):
    """Stands in for Flask-Session and friends: the cookie holds only an id."""


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        pytest.param(
            lambda app: setattr(app, "session_interface", ServerSideSessions()),
            "ServerSideSessions; the gateway's session backend supports only Flask's "
            "signed-cookie sessions",
            id="server-side sessions",
        ),
        pytest.param(
            lambda app: app.config.update(SECRET_KEY=None),
            "the legacy app has no SECRET_KEY",
            id="no secret key",
        ),
    ],
)
def test_codec_refuses_apps_it_cannot_mirror(
    configure: Callable[[Flask], Any], message: str
) -> None:
    app = Flask("legacy")
    app.secret_key = SECRET_KEY
    configure(app)
    with pytest.raises(SessionCodecError, match=message):
        FlaskSessionCodec(app)


# --- API keys ---------------------------------------------------------------------------------

REPORTING_KEY = "rk_6bc1f0e8b3a54d7f9c2a1e0d8b7c6a5f"
NON_ASCII_KEY = "clé-secrète-ünïcode-0123456789abcdef"


@pytest.fixture
def api_keys() -> APIKeyBackend:
    settings = APIKeysSettings.model_validate(
        {
            "keys": [
                {"name": "reporting-job", "sha256": hash_api_key(REPORTING_KEY), "roles": ["ops"]},
                {"name": "unicode-client", "sha256": hash_api_key(NON_ASCII_KEY)},
            ]
        }
    )
    return build_api_key_backend(settings, source=SOURCE)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            [(b"x-api-key", REPORTING_KEY.encode())],
            Identity("reporting-job", frozenset({"ops"}), "api-key"),
            id="valid",
        ),
        pytest.param(
            [(b"x-api-key", NON_ASCII_KEY.encode())],
            Identity("unicode-client", frozenset(), "api-key"),
            id="valid, non-ASCII, sent as UTF-8",
        ),
        pytest.param([], None, id="absent"),
        pytest.param([(b"authorization", REPORTING_KEY.encode())], None, id="in another header"),
    ],
)
async def test_api_keys(
    api_keys: APIKeyBackend, raw: list[tuple[bytes, bytes]], expected: Identity | None
) -> None:
    assert await api_keys.authenticate(Headers(raw=raw)) == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param([(b"x-api-key", b"rk_guess")], "unknown API key", id="unknown"),
        pytest.param(
            [(b"x-api-key", REPORTING_KEY.upper().encode())], "unknown API key", id="wrong case"
        ),
        pytest.param([(b"x-api-key", b"")], "empty API key", id="empty"),
        pytest.param(
            [(b"x-api-key", REPORTING_KEY.encode()), (b"x-api-key", b"rk_other")],
            "more than one X-API-Key header",
            id="duplicate header",
        ),
    ],
)
async def test_invalid_api_keys(
    api_keys: APIKeyBackend, raw: list[tuple[bytes, bytes]], reason: str
) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await api_keys.authenticate(Headers(raw=raw))
    assert caught.value.reason == reason


@pytest.mark.anyio
async def test_api_key_header_name_comes_from_settings() -> None:
    settings = APIKeysSettings.model_validate(
        {"header": "X-Service-Key", "keys": [{"name": "svc", "sha256": hash_api_key("k" * 40)}]}
    )
    backend = build_api_key_backend(settings, source=SOURCE)
    assert await authenticate_with(backend, "x-api-key", "k" * 40) is None
    assert await authenticate_with(backend, "x-service-key", "k" * 40) == Identity(
        "svc", frozenset(), "api-key"
    )


def test_hash_api_key_is_hex_sha256() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_two_names_for_one_api_key_stop_start_up() -> None:
    digest = hash_api_key(REPORTING_KEY)
    settings = APIKeysSettings.model_validate(
        {"keys": [{"name": "a", "sha256": digest}, {"name": "b", "sha256": digest}]}
    )
    with pytest.raises(ConfigError) as caught:
        build_api_key_backend(settings, source=SOURCE)
    assert caught.value.problems == ["gateway.toml: auth.api_keys.keys[1].sha256: same key as 'a'"]


# --- removing a refused credential ----------------------------------------------------------


def test_jwt_backend_removes_the_authorization_header() -> None:
    backend = build_jwt_backend(jwt_settings(), source=SOURCE)
    headers = [(b"authorization", b"Bearer x.y.z"), (b"cookie", b"a=1"), (b"x-other", b"2")]
    assert backend.without_credential(headers) == [(b"cookie", b"a=1"), (b"x-other", b"2")]


def test_api_key_backend_removes_its_header(api_keys: APIKeyBackend) -> None:
    headers = [(b"x-api-key", b"rk_guess"), (b"authorization", b"Basic Zm9v")]
    assert api_keys.without_credential(headers) == [(b"authorization", b"Basic Zm9v")]


@pytest.mark.parametrize(
    ("cookies", "kept"),
    [
        ([b"session=forged; theme=dark"], [b"theme=dark"]),
        ([b"theme=dark; session=a; session=b; lang=fr"], [b"theme=dark; lang=fr"]),
        ([b"session=forged"], []),
        # HTTP/2 may split cookies over several headers: each is filtered.
        ([b"session=forged", b"theme=dark"], [b"theme=dark"]),
        # Only the exact name: a cookie whose name merely contains it stays.
        ([b"my_session=1; session_id=2"], [b"my_session=1; session_id=2"]),
    ],
)
def test_session_backend_removes_only_the_session_cookie(
    codec: FlaskSessionCodec, cookies: list[bytes], kept: list[bytes]
) -> None:
    backend = session_backend(codec, None)
    headers = [(b"cookie", value) for value in cookies] + [(b"x-other", b"1")]
    assert backend.without_credential(headers) == [
        *((b"cookie", value) for value in kept),
        (b"x-other", b"1"),
    ]


# --- JWT: verified tokens remembered -----------------------------------------------------------


class _CountingDecode:
    """``jwt.decode``, counting full verifications."""

    def __init__(self) -> None:
        self.calls = 0
        self._decode = jwt.decode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._decode(*args, **kwargs)


@pytest.mark.anyio
async def test_a_verified_token_is_remembered_until_it_expires() -> None:
    backend = build_jwt_backend(jwt_settings(leeway=0, keep_claims=["tenant"]), source=SOURCE)
    expires = int(time.time()) + 2
    bearer = f"Bearer {token(exp=expires, tenant='acme')}"
    decode = _CountingDecode()
    with mock.patch("gateway.auth.jwt.jwt.decode", decode):
        first = await authenticate_with(backend, "authorization", bearer)
        second = await authenticate_with(backend, "authorization", bearer)
        assert first == second == bob(tenant="acme")
        assert decode.calls == 1  # the second request paid for no verification
        # Each request gets its own claims: one request's code cannot change the next one's.
        assert first is not None
        assert second is not None
        assert first.claims is not second.claims
        time.sleep(max(0.0, expires - time.time()) + 0.05)
        with pytest.raises(InvalidCredentials, match="expired"):
            await authenticate_with(backend, "authorization", bearer)
        assert decode.calls == 2  # expired: checked in full again, and refused as such


@pytest.mark.anyio
async def test_a_refused_token_is_checked_again_every_time() -> None:
    backend = build_jwt_backend(jwt_settings(), source=SOURCE)
    forged = f"Bearer {token(secret=OTHER_SECRET)}"
    decode = _CountingDecode()
    with mock.patch("gateway.auth.jwt.jwt.decode", decode):
        for _ in range(3):
            with pytest.raises(InvalidCredentials, match="signature"):
                await authenticate_with(backend, "authorization", forged)
    assert decode.calls == 3


@pytest.mark.anyio
async def test_the_remembered_tokens_are_bounded_oldest_forgotten_first() -> None:
    tokens = [f"Bearer {token(sub=f'user{n}')}" for n in range(3)]
    decode = _CountingDecode()
    with (
        mock.patch("gateway.auth.jwt._VERIFIED_LIMIT", 2),
        mock.patch("gateway.auth.jwt.jwt.decode", decode),
    ):
        backend = build_jwt_backend(jwt_settings(), source=SOURCE)
        for bearer in tokens:
            await authenticate_with(backend, "authorization", bearer)
        await authenticate_with(backend, "authorization", tokens[2])  # remembered
        await authenticate_with(backend, "authorization", tokens[1])  # remembered
        assert decode.calls == 3
        identity = await authenticate_with(backend, "authorization", tokens[0])  # forgotten
        assert decode.calls == 4
    assert identity is not None
    assert identity.subject == "user0"


# --- Flask session: verified cookies remembered ------------------------------------------------


@pytest.mark.anyio
async def test_a_verified_session_cookie_is_remembered_until_it_grows_too_old(
    codec: FlaskSessionCodec,
) -> None:
    backend = session_backend(codec, None)
    cookie = f"session={codec.dump({'user': 'alice'})}"
    with mock.patch.object(codec, "load_until", wraps=codec.load_until) as load:
        first = await authenticate_with(backend, "cookie", cookie)
        second = await authenticate_with(backend, "cookie", cookie)
        assert first == second == Identity("alice", frozenset(), "session")
        assert load.call_count == 1  # the second request checked no signature
        # Past PERMANENT_SESSION_LIFETIME, for the gateway and for itsdangerous alike.
        later = time.time() + LIFETIME.total_seconds() + 5
        with (
            mock.patch("gateway.auth.verified.time.time", return_value=later),
            mock.patch.object(TimestampSigner, "get_timestamp", return_value=int(later)),
            pytest.raises(InvalidCredentials, match="expired session"),
        ):
            await authenticate_with(backend, "cookie", cookie)
        assert load.call_count == 2  # checked in full again, and refused as Flask would


@pytest.mark.anyio
async def test_a_refused_session_cookie_is_checked_every_time_and_no_user_is_remembered(
    demo_app: Flask, codec: FlaskSessionCodec
) -> None:
    backend = session_backend(codec, None)
    forged = f"session={flip(login_cookie(demo_app), 3)}"
    anonymous = f"session={codec.dump({'theme': 'dark'})}"  # a session without a user
    with mock.patch.object(codec, "load_until", wraps=codec.load_until) as load:
        for _ in range(2):
            with pytest.raises(InvalidCredentials, match="bad session signature"):
                await authenticate_with(backend, "cookie", forged)
            assert await authenticate_with(backend, "cookie", anonymous) is None
    assert load.call_count == 3  # the forged cookie twice, the anonymous session once
