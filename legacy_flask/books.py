"""The book catalogue API: list, read, create, replace and delete books.

The ``catalog`` FastAPI service takes over the read routes and ``POST /api/books`` with the same
contract; ``tests/test_contract.py`` holds the two to it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import structlog
from flask import Blueprint, abort, current_app, request, url_for

from legacy_flask.auth import login_required, roles_required
from legacy_flask.db import MAX_ROW_ID, get_db

bp = Blueprint("books", __name__)
log = structlog.get_logger(__name__)

#: Four digits either way of year zero. The bound also keeps ints too big for SQLite out.
MAX_ABS_YEAR = 9999


def book_to_json(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "author": row["author"], "year": row["year"]}


def get_book_or_404(book_id: int) -> sqlite3.Row:
    row: sqlite3.Row | None = None
    if book_id <= MAX_ROW_ID:
        row = (
            get_db()
            .execute("SELECT id, title, author, year FROM books WHERE id = ?", (book_id,))
            .fetchone()
        )
    if row is None:
        abort(404, f"book {book_id} not found")
    return row


def read_book_payload() -> tuple[str, str, int]:
    """The title, author and year from the JSON body; aborts 400 with the first problem."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400, "request body must be a JSON object")
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        abort(400, "title must be a non-empty string")
    author = payload.get("author")
    if not isinstance(author, str) or not author.strip():
        abort(400, "author must be a non-empty string")
    year = payload.get("year")
    # bool is an int subclass in Python; JSON true is not a year.
    if isinstance(year, bool) or not isinstance(year, int) or abs(year) > MAX_ABS_YEAR:
        abort(400, f"year must be an integer between -{MAX_ABS_YEAR} and {MAX_ABS_YEAR}")
    return title.strip(), author.strip(), year


@bp.get("/api/books")
def list_books() -> dict[str, Any]:
    rows = get_db().execute("SELECT id, title, author, year FROM books ORDER BY id").fetchall()
    books = [book_to_json(row) for row in rows]
    log.info("books.listed", count=len(books))
    current_app.logger.info("listed %d books", len(books))
    return {"books": books}


@bp.get("/api/books/<int:book_id>")
def get_book(book_id: int) -> dict[str, Any]:
    return book_to_json(get_book_or_404(book_id))


@bp.post("/api/books")
@login_required
def create_book() -> tuple[dict[str, Any], int, dict[str, str]]:
    title, author, year = read_book_payload()
    db = get_db()
    cursor = db.execute(
        "INSERT INTO books (title, author, year) VALUES (?, ?, ?)", (title, author, year)
    )
    db.commit()
    book_id = cursor.lastrowid
    log.info("books.created", book_id=book_id)
    book = {"id": book_id, "title": title, "author": author, "year": year}
    return book, 201, {"Location": url_for("books.get_book", book_id=book_id)}


@bp.put("/api/books/<int:book_id>")
@roles_required("admin")
def update_book(book_id: int) -> dict[str, Any]:
    get_book_or_404(book_id)
    title, author, year = read_book_payload()
    db = get_db()
    db.execute(
        "UPDATE books SET title = ?, author = ?, year = ? WHERE id = ?",
        (title, author, year, book_id),
    )
    db.commit()
    log.info("books.updated", book_id=book_id)
    return {"id": book_id, "title": title, "author": author, "year": year}


@bp.delete("/api/books/<int:book_id>")
@roles_required("admin")
def delete_book(book_id: int) -> tuple[str, int]:
    get_book_or_404(book_id)
    db = get_db()
    db.execute("DELETE FROM books WHERE id = ?", (book_id,))
    db.commit()
    log.info("books.deleted", book_id=book_id)
    return "", 204
