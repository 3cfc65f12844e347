"""The catalog's access to the bookstore database.

The catalog reads and writes the legacy app's tables on purpose: during the migration both sides
serve ``/api/books`` over one database, so a book created on one side is there on the other.

    store = BookStore(path)
    store.get_book(1)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from legacy_flask.db import MAX_ROW_ID, connect
from new_services.catalog.models import Book, NewBook


class BookStore:
    """Book queries. Every call opens its own connection.

    Endpoints run in FastAPI's thread pool, and one sqlite3 connection must not serve two
    threads at once; a connection per call is correct under any concurrency and costs far less
    than the request around it. The busy timeout in :func:`connect` makes writers queue up.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(connect(self.path)) as connection, connection:
            # Python's str.casefold, so search is case-insensitive beyond ASCII (SQLite's own
            # LIKE and lower() only fold A-Z).
            connection.create_function("casefold", 1, str.casefold, deterministic=True)
            yield connection

    def check(self) -> None:
        """Fail now, at start-up, if the file is not a bookstore database."""
        with self._connection() as connection:
            connection.execute("SELECT id, title, author, year FROM books LIMIT 1").fetchall()

    def list_books(self) -> list[Book]:
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, title, author, year FROM books ORDER BY id"
            ).fetchall()
        return [_book(row) for row in rows]

    def get_book(self, book_id: int) -> Book | None:
        if book_id > MAX_ROW_ID:
            return None
        with self._connection() as connection:
            row = connection.execute(
                "SELECT id, title, author, year FROM books WHERE id = ?", (book_id,)
            ).fetchone()
        return _book(row) if row is not None else None

    def search(self, text: str) -> list[Book]:
        """Books whose title or author contains ``text``, ignoring case, ordered by id."""
        needle = text.casefold()
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, title, author, year FROM books"
                " WHERE instr(casefold(title), ?) > 0 OR instr(casefold(author), ?) > 0"
                " ORDER BY id",
                (needle, needle),
            ).fetchall()
        return [_book(row) for row in rows]

    def add_book(self, new: NewBook) -> Book:
        with self._connection() as connection:
            cursor = connection.execute(
                "INSERT INTO books (title, author, year) VALUES (?, ?, ?)",
                (new.title, new.author, new.year),
            )
        assert cursor.lastrowid is not None  # always set after a one-row INSERT
        return Book(id=cursor.lastrowid, title=new.title, author=new.author, year=new.year)


def _book(row: sqlite3.Row) -> Book:
    return Book(id=row["id"], title=row["title"], author=row["author"], year=row["year"])
