"""The demo FastAPI services (catalog, accounts), on their own and with gateway facts in scope."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import ASGIApp
from structlog.testing import capture_logs
from support import through_gateway

from gateway.context import Identity
from new_services import accounts, catalog
from new_services.catalog.models import NewBook
from new_services.catalog.store import BookStore

BOB = Identity("bob", frozenset({"user"}), method="session")
NOT_AN_OBJECT = "request body must be a JSON object"


def error_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}, "request_id": request_id}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "bookstore.sqlite3"


@pytest.fixture
def catalog_app(database: Path) -> FastAPI:
    return catalog.create_app(database=database)


@pytest.fixture
def catalog_client(catalog_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(catalog_app) as client:
        yield client


@pytest.fixture
def client_factory() -> Iterator[Callable[[ASGIApp], TestClient]]:
    """Entered test clients (so lifespans run), closed at the end of the test."""
    clients: list[TestClient] = []

    def factory(app: ASGIApp) -> TestClient:
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


# --- catalog: lifespan -------------------------------------------------------------------------


def test_catalog_lifespan_creates_the_database_and_fills_the_state(
    catalog_app: FastAPI, database: Path
) -> None:
    # Building the app does no work; starting it does.
    assert not database.exists()

    with capture_logs() as logs, TestClient(catalog_app) as client:
        assert database.is_file()
        store = client.app_state["catalog_store"]
        assert isinstance(store, BookStore)
        assert store.path == database
        assert client.get("/api/books").status_code == 200

    events = [entry["event"] for entry in logs]
    assert events[0] == "catalog.started"
    assert events[-1] == "catalog.stopped"


def test_catalog_endpoints_read_the_store_from_the_lifespan_state(
    catalog_client: TestClient, tmp_path: Path
) -> None:
    # Swap the store the lifespan yielded for one over an empty file: if the endpoints used
    # anything but the request's state (a global, a closure), this would still answer 200.
    catalog_client.app_state["catalog_store"] = BookStore(tmp_path / "empty.sqlite3")

    with capture_logs() as logs:
        response = catalog_client.get("/api/books")

    # Answered as the legacy app answers an unexpected error (gateway.parity), and logged.
    assert response.status_code == 500
    assert response.json()["error"] == {"status": 500, "message": "internal server error"}
    [error] = [log for log in logs if log["event"] == "request.unhandled_error"]
    assert isinstance(error["exc_info"], sqlite3.OperationalError)
    assert "no such table" in str(error["exc_info"])


def test_catalog_without_its_lifespan_fails_loudly(catalog_app: FastAPI) -> None:
    client = TestClient(catalog_app)  # not entered: the lifespan does not run

    with capture_logs() as logs:
        assert client.get("/api/books").status_code == 500
    [error] = [log for log in logs if log["event"] == "request.unhandled_error"]
    assert "catalog lifespan has not run" in str(error["exc_info"])


# --- catalog: reading --------------------------------------------------------------------------


def test_catalog_lists_books_in_id_order(catalog_client: TestClient) -> None:
    with capture_logs() as logs:
        response = catalog_client.get("/api/books")

    assert response.status_code == 200
    books = response.json()["books"]
    assert [book["id"] for book in books] == [1, 2, 3, 4, 5, 6]
    assert books[0] == {"id": 1, "title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937}
    assert {"event": "catalog.books.listed", "count": 6, "log_level": "info"} in logs


def test_catalog_gets_one_book(catalog_client: TestClient) -> None:
    response = catalog_client.get("/api/books/3")

    assert response.json() == {
        "id": 3,
        "title": "Alice's Adventures in Wonderland",
        "author": "Lewis Carroll",
        "year": 1865,
    }


@pytest.mark.parametrize("book_id", [9999, 2**64])
def test_catalog_unknown_book_is_404(catalog_client: TestClient, book_id: int) -> None:
    response = catalog_client.get(f"/api/books/{book_id}")

    assert response.status_code == 404
    assert response.json() == error_body(404, f"book {book_id} not found")


def test_catalog_book_id_must_be_an_int_like_in_flask(catalog_client: TestClient) -> None:
    assert catalog_client.get("/api/books/abc").status_code == 404


@pytest.mark.parametrize(
    ("q", "ids"),
    [
        ("hobbit", [1]),
        ("THE", [1, 5]),
        ("austen", [2]),
        ("le guin", [5]),
        ("  carroll ", [3]),
        ("%", []),
        ("nothing like it", []),
    ],
)
def test_catalog_search_is_a_case_insensitive_substring_match(
    catalog_client: TestClient, q: str, ids: list[int]
) -> None:
    response = catalog_client.get("/api/books/search", params={"q": q})

    assert response.status_code == 200
    assert [book["id"] for book in response.json()["books"]] == ids


def test_catalog_search_folds_case_beyond_ascii(catalog_client: TestClient) -> None:
    catalog_client.app_state["catalog_store"].add_book(NewBook("ÉTUDES", "Émile Zola", 1880))

    response = catalog_client.get("/api/books/search", params={"q": "études"})

    assert [book["title"] for book in response.json()["books"]] == ["ÉTUDES"]


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20"])
def test_catalog_search_needs_q(catalog_client: TestClient, query: str) -> None:
    response = catalog_client.get(f"/api/books/search{query}")

    assert response.status_code == 400
    assert response.json() == error_body(400, "query parameter 'q' is required")


# --- catalog: writing --------------------------------------------------------------------------


def test_catalog_create_requires_an_identity(catalog_client: TestClient) -> None:
    response = catalog_client.post("/api/books", json={"title": "T", "author": "A", "year": 1})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == error_body(401, "authentication required")


def test_catalog_create_with_a_gateway_identity(
    catalog_app: FastAPI, client_factory: Callable[[ASGIApp], TestClient]
) -> None:
    client = client_factory(through_gateway(catalog_app, BOB))

    response = client.post(
        "/api/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965}
    )

    assert response.status_code == 201
    assert response.json() == {"id": 7, "title": "Dune", "author": "Frank Herbert", "year": 1965}
    assert response.headers["Location"] == "/api/books/7"
    assert client.get("/api/books/7").json() == response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"json": [1]}, NOT_AN_OBJECT),
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, NOT_AN_OBJECT),
        ({"content": b'{"title": "T"}', "headers": {"Content-Type": "text/plain"}}, NOT_AN_OBJECT),
        ({"json": {"author": "A", "year": 1}}, "title must be a non-empty string"),
        ({"json": {"title": "T", "author": "", "year": 1}}, "author must be a non-empty string"),
        ({"json": {"title": "T", "author": "A", "year": 1.5}}, "year must be an integer between"),
        ({"json": {"title": "T", "author": "A", "year": False}}, "year must be an integer between"),
    ],
)
def test_catalog_create_validates_like_the_legacy_app(
    catalog_app: FastAPI,
    client_factory: Callable[[ASGIApp], TestClient],
    body: dict[str, Any],
    message: str,
) -> None:
    client = client_factory(through_gateway(catalog_app, BOB, request_id="req-9"))

    response = client.post("/api/books", **body)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
    assert response.json()["request_id"] == "req-9"


def test_catalog_store_is_correct_under_concurrent_writes(catalog_client: TestClient) -> None:
    store: BookStore = catalog_client.app_state["catalog_store"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        books = list(pool.map(lambda n: store.add_book(NewBook(f"B{n}", "A", n)), range(40)))

    assert len({book.id for book in books}) == 40
    assert len(catalog_client.get("/api/books").json()["books"]) == 46


def test_catalog_unexpected_error_keeps_the_shape(catalog_app: FastAPI) -> None:
    @catalog_app.get("/explode")
    def explode() -> None:
        raise RuntimeError("secret internals")

    with TestClient(catalog_app, raise_server_exceptions=False) as client:
        response = client.get("/explode")

    assert response.status_code == 500
    assert response.json() == error_body(500, "internal server error")


# --- accounts ----------------------------------------------------------------------------------


def test_accounts_me_is_401_when_anonymous() -> None:
    with TestClient(accounts.create_app()) as client:
        response = client.get("/api/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == error_body(401, "authentication required")


def test_accounts_me_answers_the_gateway_identity(
    client_factory: Callable[[ASGIApp], TestClient],
) -> None:
    identity = Identity("alice", frozenset({"user", "admin"}), method="jwt")
    client = client_factory(through_gateway(accounts.create_app(), identity))

    response = client.get("/api/me")

    assert response.status_code == 200
    assert response.json() == {
        "username": "alice",
        "roles": ["admin", "user"],
        "auth_method": "jwt",
        "display_name": "Alice",
    }


def test_accounts_lifespan_logs_start_and_stop() -> None:
    with capture_logs() as logs, TestClient(accounts.create_app()):
        pass

    assert [entry["event"] for entry in logs] == ["accounts.started", "accounts.stopped"]
