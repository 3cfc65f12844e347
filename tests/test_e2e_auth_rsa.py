"""End to end: RS256 keys from a file, audience and issuer, and the algorithm-confusion attack.

The demo signs HS256; this runs the demo with an RS256 public key file, ``aud`` and ``iss``
required, against a legacy-served and a new-served protected route.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from support import GatewayProcess, demo_config

cryptography = pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

pytestmark = pytest.mark.e2e

PROTECTED = [
    pytest.param("GET", "/reports/sales.csv", "legacy", id="legacy"),
    pytest.param("GET", "/api/me", "accounts", id="new"),
]
AUDIENCE, ISSUER = "bookstore", "https://id.example"


@pytest.fixture(scope="module")
def keys() -> tuple[Any, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, keys: tuple[Any, bytes]
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("rsa")
    (folder / "jwt-public.pem").write_bytes(keys[1])
    config = demo_config(folder)
    text = config.read_text()
    start = text.index("[auth.jwt]")
    end = text.index("\n", text.index('secret = "demo-only-jwt-secret')) + 1
    config.write_text(
        text[:start]
        + f'[auth.jwt]\nleeway = 30\naudience = "{AUDIENCE}"\nissuer = "{ISSUER}"\n'
        + '[[auth.jwt.keys]]\nkid = "rsa-2026"\nalgorithm = "RS256"\nkey_file = "jwt-public.pem"\n'
        + text[end:]
    )
    with GatewayProcess(config) as running:
        yield running


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "bob",
        "roles": ["user"],
        "iat": now,
        "exp": now + 600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def signed(keys: tuple[Any, bytes], **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), keys[0], algorithm="RS256", headers={"kid": "rsa-2026"})


def hmac_with_public_key(public_pem: bytes) -> str:
    """The classic confusion attack: HS256, with the server's public key as the HMAC secret."""

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    header = part({"alg": "HS256", "typ": "JWT", "kid": "rsa-2026"})
    body = part(claims())
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def call(gateway: GatewayProcess, method: str, path: str, token: str) -> httpx.Response:
    return httpx.request(
        method,
        f"{gateway.base_url}{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_valid_rs256_token(
    gateway: GatewayProcess, keys: tuple[Any, bytes], method: str, path: str, side: str
) -> None:
    response = call(gateway, method, path, signed(keys))
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == side


BAD = {
    "hmac signed with the public key": lambda keys: hmac_with_public_key(keys[1]),
    "wrong audience": lambda keys: signed(keys, aud="another-app"),
    "no audience": lambda keys: signed(keys, aud=None),
    "wrong issuer": lambda keys: signed(keys, iss="https://evil.example"),
    "signed by another key": lambda _: jwt.encode(
        claims(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "rsa-2026"},
    ),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize(("method", "path", "side"), PROTECTED)
def test_rejected(
    gateway: GatewayProcess, keys: tuple[Any, bytes], method: str, path: str, side: str, case: str
) -> None:
    response = call(gateway, method, path, BAD[case](keys))
    assert response.status_code == 401, response.text
    assert response.headers["x-gateway-backend"] == "gateway"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_legacy_apps_own_hs256_tokens_no_longer_verify(gateway: GatewayProcess) -> None:
    # The gateway trusts exactly its configured keys: the demo's HS256 tokens are refused.
    token = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": "bob", "password": "builder"}
    ).json()["access_token"]
    assert call(gateway, "GET", "/api/me", token).status_code == 401
