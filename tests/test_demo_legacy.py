"""The demo legacy Flask bookstore, on its own and with gateway facts in the WSGI environ."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from threading import Barrier
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from structlog.testing import capture_logs
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

import legacy_flask
from gateway.context import ENVIRON_SCOPE_KEY, FACTS_KEY, Identity, RequestFacts
from legacy_flask import create_app
from legacy_flask.db import DEMO_SALES_COUNT, init_db
from legacy_flask.tokens import TOKEN_LIFETIME, issue_token

SECRET_KEY = "test-secret-key"
# 32+ bytes: PyJWT warns about shorter HMAC keys, and warnings are errors here.
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123"


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., Flask]:
    def factory(**overrides: Any) -> Flask:
        options: dict[str, Any] = {
            "database": tmp_path / "bookstore.sqlite3",
            "secret_key": SECRET_KEY,
            "jwt_secret": JWT_SECRET,
        }
        options.update(overrides)
        return create_app(**options)

    return factory


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def login(client: FlaskClient, username: str, password: str) -> None:
    response = client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.json


def bearer(client: FlaskClient, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['access_token']}"}


def through_gateway(identity: Identity, request_id: str = "req-123") -> dict[str, Any]:
    """WSGI environ entries as the gateway's legacy adapter (a2wsgi) sets them."""
    facts = RequestFacts(request_id=request_id, path="/", method="GET", identity=identity)
    return {ENVIRON_SCOPE_KEY: {"type": "http", FACTS_KEY: facts}}


def error_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}, "request_id": request_id}


# --- configuration and database ---------------------------------------------------------------


def test_defaults_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOOKSTORE_DATABASE", raising=False)
    monkeypatch.delenv("BOOKSTORE_SECRET_KEY", raising=False)
    monkeypatch.delenv("BOOKSTORE_JWT_SECRET", raising=False)

    app = create_app()

    assert app.config["DATABASE"] == str(tmp_path / "var" / "bookstore.sqlite3")
    assert (tmp_path / "var" / "bookstore.sqlite3").is_file()
    assert app.config["SECRET_KEY"] == legacy_flask.DEMO_SECRET_KEY
    assert app.config["JWT_SECRET"] == legacy_flask.DEMO_JWT_SECRET

    monkeypatch.setenv("BOOKSTORE_DATABASE", str(tmp_path / "other.sqlite3"))
    monkeypatch.setenv("BOOKSTORE_SECRET_KEY", "from-env")
    monkeypatch.setenv("BOOKSTORE_JWT_SECRET", "from-env-jwt-secret-0123456789abcdef")
    app = create_app()

    assert app.config["DATABASE"] == str(tmp_path / "other.sqlite3")
    assert app.config["SECRET_KEY"] == "from-env"
    assert app.config["JWT_SECRET"] == "from-env-jwt-secret-0123456789abcdef"


def count_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("users", "books", "sales")
        }


def test_init_db_is_idempotent_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bookstore.sqlite3"
    init_db(path)
    init_db(path)

    assert count_rows(path) == {"users": 2, "books": 6, "sales": DEMO_SALES_COUNT}
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


#: Fresh databases that ``_init_together`` initialises, each from every process at once.
CONCURRENT_DATABASES = 25


def _init_together(paths: list[Path], start: Barrier) -> None:
    """In a child process: initialise each database in ``paths`` as the other processes do,
    all starting at the same moment (the barrier), as two gateway workers that start together
    do. A failure raises out of the child: the pool's result re-raises it in the test."""
    for path in paths:
        start.wait(timeout=30)
        init_db(path)


def test_init_db_is_safe_from_concurrent_processes(tmp_path: Path) -> None:
    """Processes that initialise a new database at the same moment all succeed, and it is
    seeded once. Switching a new file to WAL used to answer one of two racing processes
    "database is locked" at once (a gateway with --workers 2 then stopped at start-up)."""
    paths = [tmp_path / f"bookstore-{n}.sqlite3" for n in range(CONCURRENT_DATABASES)]
    processes = 3
    # spawn, not fork: the child must not inherit this process's threads and open files.
    context = get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(processes)
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            done = [pool.submit(_init_together, paths, start) for _ in range(processes)]
            for future in done:
                future.result(timeout=120)

    for path in paths:
        assert count_rows(path) == {"users": 2, "books": 6, "sales": DEMO_SALES_COUNT}


def test_deleting_every_book_does_not_reseed(app_factory: Callable[..., Flask]) -> None:
    app = app_factory()
    with sqlite3.connect(app.config["DATABASE"]) as connection:
        connection.execute("DELETE FROM books")

    app = app_factory()

    assert app.test_client().get("/api/books").json == {"books": []}


# --- pages and errors --------------------------------------------------------------------------


def test_index_links_to_the_api_with_url_for(client: FlaskClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for href in ("/api/books", "/api/books/1", "/api/me", "/admin/users", "/reports/sales.csv"):
        assert f'href="{href}"' in page
    assert 'action="/login"' in page


def test_unknown_book_is_404_json(client: FlaskClient) -> None:
    response = client.get("/api/books/9999")

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json == error_body(404, "book 9999 not found")


def test_book_id_too_big_for_sqlite_is_404(client: FlaskClient) -> None:
    response = client.get(f"/api/books/{2**64}")

    assert response.status_code == 404
    assert response.json == error_body(404, f"book {2**64} not found")


def test_errors_from_werkzeug_keep_shape_and_headers(client: FlaskClient) -> None:
    response = client.patch("/api/books/1")

    assert response.status_code == 405
    assert response.json["error"]["status"] == 405
    assert set(response.json) == {"error", "request_id"}
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_generic_500_and_logged(app: Flask) -> None:
    def explode() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode", view_func=explode)

    with capture_logs() as logs:
        response = app.test_client().get("/explode")

    assert response.status_code == 500
    assert response.json == error_body(500, "internal server error")
    assert b"secret internals" not in response.data
    [entry] = [entry for entry in logs if entry["event"] == "request.unhandled_error"]
    assert isinstance(entry["exc_info"], RuntimeError)


def test_errors_carry_the_gateway_request_id(client: FlaskClient) -> None:
    response = client.get(
        "/api/books/9999", environ_base=through_gateway(Identity(None), request_id="req-abc")
    )

    assert response.json == error_body(404, "book 9999 not found", request_id="req-abc")


# --- login, logout, tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_login_starts_a_session(client: FlaskClient, as_json: bool) -> None:
    credentials = {"username": "alice", "password": "wonderland"}
    if as_json:
        response = client.post("/login", json=credentials)
    else:
        response = client.post("/login", data=credentials)

    assert response.status_code == 200
    assert response.json == {"username": "alice", "roles": ["admin"]}
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert client.get("/api/me").json == {
        "username": "alice",
        "roles": ["admin"],
        "auth_method": "session",
    }


@pytest.mark.parametrize(("username", "password"), [("alice", "builder"), ("nobody", "wonderland")])
def test_login_rejects_bad_credentials(client: FlaskClient, username: str, password: str) -> None:
    response = client.post("/login", json={"username": username, "password": password})

    assert response.status_code == 401
    assert response.json == error_body(401, "invalid username or password")
    assert client.get("/api/me").status_code == 401


def test_login_requires_both_fields(client: FlaskClient) -> None:
    response = client.post("/login", json={"username": "alice"})

    assert response.status_code == 400
    assert response.json == error_body(400, "username and password are required")


def test_login_replaces_the_previous_session(client: FlaskClient) -> None:
    login(client, "alice", "wonderland")
    with client.session_transaction() as session:
        session["leftover"] = "from alice"

    login(client, "bob", "builder")

    with client.session_transaction() as session:
        assert dict(session) == {"user": "bob"}


def test_logout_ends_the_session(client: FlaskClient) -> None:
    login(client, "bob", "builder")

    response = client.post("/logout")

    assert response.status_code == 204
    assert client.get("/api/me").status_code == 401


def test_token_is_an_hs256_jwt_for_an_hour(client: FlaskClient) -> None:
    response = client.post("/api/token", json={"username": "bob", "password": "builder"})

    assert response.status_code == 200
    assert response.json["token_type"] == "bearer"
    token = response.json["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["roles"] == ["user"]
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME.total_seconds()


def test_token_authenticates_api_calls(client: FlaskClient) -> None:
    headers = bearer(client, "alice", "wonderland")

    response = client.get("/api/me", headers=headers)

    assert response.json == {"username": "alice", "roles": ["admin"], "auth_method": "jwt"}


def test_token_rejects_bad_credentials(client: FlaskClient) -> None:
    response = client.post("/api/token", json={"username": "bob", "password": "wonderland"})

    assert response.status_code == 401
    assert response.json == error_body(401, "invalid username or password")


def _forged_tokens() -> dict[str, str]:
    now = datetime.now(UTC)
    claims = {"sub": "alice", "roles": ["admin"], "iat": now, "exp": now + timedelta(hours=1)}
    return {
        "expired": issue_token("alice", ["admin"], JWT_SECRET, now=now - timedelta(hours=2)),
        "wrong-secret": issue_token("alice", ["admin"], "another-secret-0123456789abcdef0123"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "no-exp": jwt.encode({"sub": "alice", "iat": now}, JWT_SECRET, algorithm="HS256"),
        "roles-not-a-list": jwt.encode({**claims, "roles": "admin"}, JWT_SECRET, algorithm="HS256"),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("kind", sorted(_forged_tokens()))
def test_untrusted_tokens_are_anonymous(client: FlaskClient, kind: str) -> None:
    token = _forged_tokens()[kind]

    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- who the handler thinks you are ------------------------------------------------------------


def test_me_requires_authentication(client: FlaskClient) -> None:
    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json == error_body(401, "authentication required")


def test_gateway_identity_comes_first(client: FlaskClient) -> None:
    login(client, "bob", "builder")
    identity = Identity("carol", frozenset({"user", "auditor"}), method="api-key")

    response = client.get("/api/me", environ_base=through_gateway(identity))

    assert response.json == {
        "username": "carol",
        "roles": ["auditor", "user"],
        "auth_method": "api-key",
    }


def test_anonymous_gateway_identity_falls_back_to_the_session(client: FlaskClient) -> None:
    login(client, "bob", "builder")

    response = client.get("/api/me", environ_base=through_gateway(Identity(None)))

    assert response.json == {"username": "bob", "roles": ["user"], "auth_method": "session"}


def test_admin_users_needs_the_admin_role(client: FlaskClient) -> None:
    assert client.get("/admin/users").status_code == 401

    login(client, "bob", "builder")
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert response.json == error_body(403, "missing required role: admin")

    login(client, "alice", "wonderland")
    response = client.get("/admin/users")
    assert response.status_code == 200
    assert response.json == {
        "users": [
            {"username": "alice", "roles": ["admin"]},
            {"username": "bob", "roles": ["user"]},
        ]
    }


# --- books -------------------------------------------------------------------------------------


def test_list_books_logs_through_structlog(client: FlaskClient) -> None:
    with capture_logs() as logs:
        response = client.get("/api/books")

    books = response.json["books"]
    assert len(books) == 6
    assert [book["id"] for book in books] == sorted(book["id"] for book in books)
    assert books[0] == {"id": 1, "title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}
    assert {"event": "books.listed", "count": 6, "log_level": "info"} in logs


def test_create_book_requires_authentication(client: FlaskClient) -> None:
    response = client.post("/api/books", json={"title": "T", "author": "A", "year": 2000})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_create_book(client: FlaskClient) -> None:
    headers = bearer(client, "bob", "builder")

    response = client.post(
        "/api/books",
        json={"title": " Dune ", "author": "Frank Herbert", "year": 1965},
        headers=headers,
    )

    assert response.status_code == 201
    assert response.json == {"id": 7, "title": "Dune", "author": "Frank Herbert", "year": 1965}
    assert response.headers["Location"] == "/api/books/7"
    assert client.get(response.headers["Location"]).json == response.json


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "request body must be a JSON object"),
        ({"author": "A", "year": 1}, "title must be a non-empty string"),
        ({"title": "  ", "author": "A", "year": 1}, "title must be a non-empty string"),
        ({"title": "T", "author": 5, "year": 1}, "author must be a non-empty string"),
        ({"title": "T", "author": "A", "year": "1999"}, "year must be an integer between"),
        ({"title": "T", "author": "A", "year": True}, "year must be an integer between"),
        ({"title": "T", "author": "A", "year": 2**70}, "year must be an integer between"),
    ],
)
def test_create_book_validates_the_body(client: FlaskClient, payload: Any, message: str) -> None:
    login(client, "bob", "builder")

    response = client.post("/api/books", json=payload)

    assert response.status_code == 400
    assert response.json["error"]["message"].startswith(message)


def test_create_book_rejects_a_body_that_is_not_json(client: FlaskClient) -> None:
    login(client, "bob", "builder")

    response = client.post("/api/books", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json == error_body(400, "request body must be a JSON object")


def test_update_and_delete_need_admin(client: FlaskClient) -> None:
    book = {"title": "The Hobbit, or There and Back Again", "author": "Tolkien", "year": 1937}
    login(client, "bob", "builder")
    assert client.put("/api/books/1", json=book).status_code == 403
    assert client.delete("/api/books/1").status_code == 403

    login(client, "alice", "wonderland")
    response = client.put("/api/books/1", json=book)
    assert response.status_code == 200
    assert response.json == {"id": 1, **book}
    assert client.get("/api/books/1").json == {"id": 1, **book}

    assert client.delete("/api/books/1").status_code == 204
    assert client.get("/api/books/1").status_code == 404
    assert client.delete("/api/books/1").status_code == 404
    assert client.put("/api/books/1", json=book).status_code == 404


# --- the streamed report -----------------------------------------------------------------------


def test_sales_report_requires_authentication(client: FlaskClient) -> None:
    assert client.get("/reports/sales.csv").status_code == 401


def test_sales_report_streams_in_chunks(client: FlaskClient) -> None:
    login(client, "bob", "builder")

    with client.get("/reports/sales.csv", buffered=False) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"] == 'attachment; filename="sales.csv"'
        chunks: list[bytes] = list(response.response)  # type: ignore[arg-type]

    assert len(chunks) > 2
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0] == ["sale_id", "sold_at", "book_id", "title", "quantity"]
    assert len(rows) == 1 + DEMO_SALES_COUNT
    assert rows[1] == ["1", "2024-01-01T09:00:00+00:00", "1", "The Hobbit", "1"]
    assert [int(row[0]) for row in rows[1:]] == list(range(1, DEMO_SALES_COUNT + 1))


# --- uploads -----------------------------------------------------------------------------------


def test_upload_answers_size_and_sha256(client: FlaskClient) -> None:
    login(client, "bob", "builder")
    # Bigger than werkzeug's in-memory limit (500 kB), so the server spools it to a file and the
    # view reads it back in several chunks.
    content = bytes(range(256)) * 4096
    # Encoded here, in memory: the test client would spool a body this big to a temporary file
    # that it never closes, and the ResourceWarning would fail the test.
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(content), filename="data.bin")}
    )

    response = client.post(
        "/api/uploads", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )

    assert response.status_code == 200
    assert response.json == {
        "filename": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_upload_without_a_file_is_400(client: FlaskClient) -> None:
    login(client, "bob", "builder")

    response = client.post("/api/uploads", data={"other": "x"}, content_type="multipart/form-data")

    assert response.status_code == 400
    assert response.json == error_body(400, "a file is required in the multipart field 'file'")


def test_upload_requires_authentication(client: FlaskClient) -> None:
    response = client.post(
        "/api/uploads",
        data={"file": (io.BytesIO(b"x"), "x.txt")},
        content_type="multipart/form-data",
    )

    assert response.status_code == 401
