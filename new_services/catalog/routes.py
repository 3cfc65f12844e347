"""The catalog's routes: the same paths, status codes and JSON as the legacy ``books`` blueprint,
plus the new-only search.

Endpoints are plain ``def`` functions: sqlite3 blocks, and FastAPI runs sync endpoints in its
thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from gateway.parity import legacy_json_body
from new_services.catalog.models import Book, BookList, parse_new_book
from new_services.catalog.store import BookStore
from new_services.security import AuthenticatedIdentity

router = APIRouter()
log = structlog.get_logger(__name__)


class CatalogState(TypedDict):
    """What the lifespan yields. Starlette copies it into every request's ``request.state``."""

    # Prefixed with the service name, because the gateway merges every service's state into one.
    catalog_store: BookStore


async def get_store(request: Request) -> BookStore:
    store = getattr(request.state, "catalog_store", None)
    if not isinstance(store, BookStore):
        raise RuntimeError("request.state has no 'catalog_store': the catalog lifespan has not run")
    return store


Store = Annotated[BookStore, Depends(get_store)]
JsonBody = Annotated[Any, Depends(legacy_json_body)]


@router.get("/api/books")
def list_books(store: Store) -> BookList:
    books = store.list_books()
    log.info("catalog.books.listed", count=len(books))
    return BookList(books=books)


# Declared before /api/books/{book_id:int}, so the route table reads in matching order (the int
# convertor would reject "search" anyway).
@router.get("/api/books/search")
def search_books(store: Store, q: str | None = None) -> BookList:
    text = (q or "").strip()
    if not text:
        raise HTTPException(400, "query parameter 'q' is required")
    books = store.search(text)
    log.info("catalog.books.searched", q=text, count=len(books))
    return BookList(books=books)


# {book_id:int}, like Flask's <int:book_id>: "/api/books/abc" is a 404 on both sides, not a 422.
@router.get("/api/books/{book_id:int}")
def get_book(book_id: int, store: Store) -> Book:
    book = store.get_book(book_id)
    if book is None:
        raise HTTPException(404, f"book {book_id} not found")
    return book


@router.post("/api/books", status_code=201)
def create_book(
    # Declared first: dependencies resolve in order, so an anonymous caller gets 401 before the
    # body is read, as with the legacy @login_required.
    identity: AuthenticatedIdentity,
    payload: JsonBody,
    store: Store,
    request: Request,
    response: Response,
) -> Book:
    book = store.add_book(parse_new_book(payload))
    # A path, not an absolute URL, as Flask's url_for answers it.
    response.headers["Location"] = request.app.url_path_for("get_book", book_id=book.id)
    log.info("catalog.books.created", book_id=book.id, by=identity.subject)
    return book
