"""Authentication on the request path, in microseconds: ``AuthMiddleware`` with the demo's three
backends (JWT, the Flask session, API keys), for a request without credentials, with an unrelated
cookie, with a bearer JWT, with a Flask session cookie (the same one each time, as a client
sends it), and with the five cookies a browser sends a typical site, with and without the session.

    python bench/auth_micro.py
    PYTHONPATH=/path/to/other/checkout python bench/auth_micro.py   # that checkout's gateway

The middleware wraps an ASGI app that does nothing; the request facts are made as the request
context makes them. Median of 7 repeats of 20,000 calls each, per case.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if "PYTHONPATH" not in os.environ:  # set, it names the checkout to measure
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.build import build_auth
from gateway.context import FACTS_KEY, RequestFacts
from gateway.middleware.auth import AuthMiddleware
from gateway.settings import load_settings
from legacy_flask import create_app
from legacy_flask.tokens import issue_token

CALLS = 20_000
REPEATS = 7
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "gateway.toml"
#: What a browser sends a site with analytics and a CSRF cookie (values made up).
BROWSER_COOKIES = (
    "_ga=GA1.1.1873304515.1764950400; _ga_X1Y2Z3=GS1.1.1764950400.1.1.1764950466.0.0.0; "
    "theme=dark; csrftoken=5kq0Zt1nH7pWm3R8vY2xB6cL9dF4gJ0a; consent=analytics%3Dno"
)
#: What a client sends anyway.
PLAIN = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")]


async def nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


async def per_call_us(middleware: AuthMiddleware, headers: list[tuple[bytes, bytes]]) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        for _ in range(CALLS):
            scope = {"type": "http", "method": "GET", "path": "/api/books", "headers": headers}
            scope[FACTS_KEY] = RequestFacts(request_id="bench", path="/api/books", method="GET")
            await middleware(scope, nothing, nothing)
        samples.append((time.perf_counter_ns() - started) / CALLS / 1000)
    return statistics.median(samples)


async def main() -> None:
    flask_app = create_app()
    auth = build_auth(load_settings(DEMO_CONFIG, {}), flask_app)
    middleware = AuthMiddleware(nothing, backends=auth.backends, policies=auth.policies)
    token = issue_token("alice", {"admin"}, flask_app.config["JWT_SECRET"])
    assert auth.codec is not None  # the demo's legacy app keeps Flask cookie sessions
    name, session = auth.codec.cookie_name, auth.codec.dump({"user": "alice"})
    browser = f"{BROWSER_COOKIES}; {name}={session}".encode()
    cases = {
        "no credentials": PLAIN,
        "a cookie, not the session's": [*PLAIN, (b"cookie", b"theme=dark")],
        "a bearer JWT": [*PLAIN, (b"authorization", f"Bearer {token}".encode())],
        "a Flask session cookie": [*PLAIN, (b"cookie", f"{name}={session}".encode())],
        "browser cookies, no session": [*PLAIN, (b"cookie", BROWSER_COOKIES.encode())],
        "browser cookies and a session": [*PLAIN, (b"cookie", browser)],
    }
    print(f"GET /api/books through AuthMiddleware, demo backends {[b.name for b in auth.backends]}")
    for name, headers in cases.items():
        print(f"  {name:<31} {await per_call_us(middleware, headers):6.2f} µs per request")


if __name__ == "__main__":
    asyncio.run(main())
