"""SQLite access for the bookstore, in the style of the Flask tutorial.

A request opens one connection lazily and the app closes it on teardown::

    db = get_db()
    books = db.execute("SELECT id, title, author, year FROM books ORDER BY id").fetchall()

:func:`init_db` creates and seeds a new database. The catalog service opens the same file and
calls it on its own start-up, so it is safe to run from several processes at the same time.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app, g
from werkzeug.security import generate_password_hash

DATABASE_ENV = "BOOKSTORE_DATABASE"
#: Relative to the working directory of the process, like ``flask run``'s instance files.
DEFAULT_DATABASE = Path("var") / "bookstore.sqlite3"

#: How long a connection waits for another process's write lock before it gives up with
#: "database is locked". The legacy app and the catalog service write to the same file.
BUSY_TIMEOUT_SECONDS = 10.0

#: The largest value an SQLite INTEGER holds. Binding a bigger Python int raises OverflowError,
#: so a larger id is answered as "not found" before it reaches a query.
MAX_ROW_ID = 2**63 - 1

#: Stored in ``PRAGMA user_version``. 0 means a database nobody has initialised yet.
SCHEMA_VERSION = 1

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        -- comma-separated, e.g. "admin,user"
        roles TEXT NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS books (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        author TEXT NOT NULL,
        year INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sales (
        id INTEGER PRIMARY KEY,
        book_id INTEGER NOT NULL REFERENCES books (id) ON DELETE CASCADE,
        quantity INTEGER NOT NULL,
        sold_at TEXT NOT NULL
    )
    """,
)

# Demo credentials only. They are published in the README; never use them anywhere real.
DEMO_USERS = (
    ("alice", "wonderland", "admin"),
    ("bob", "builder", "user"),
)

DEMO_BOOKS = (
    (1, "The Hobbit", "J. R. R. Tolkien", 1937),
    (2, "Pride and Prejudice", "Jane Austen", 1813),
    (3, "Alice's Adventures in Wonderland", "Lewis Carroll", 1865),
    (4, "Nineteen Eighty-Four", "George Orwell", 1949),
    (5, "The Left Hand of Darkness", "Ursula K. Le Guin", 1969),
    (6, "Things Fall Apart", "Chinua Achebe", 1958),
)

DEMO_SALES_COUNT = 200


def resolve_database_path(
    database: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """The database file to use: the argument, else ``$BOOKSTORE_DATABASE``, else the default.

    The result is absolute, so a later change of working directory cannot move the database.
    """
    if database is None:
        database = environ.get(DATABASE_ENV) or DEFAULT_DATABASE
    return Path(database).absolute()


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a connection configured the way every part of the bookstore expects."""
    connection = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        # A WSGI server may iterate a streamed body (the CSV report) on another thread than the
        # one that ran the view. A connection still belongs to one request (or one call in the
        # catalog service) and is never used by two threads at once.
        check_same_thread=False,
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def init_db(path: str | os.PathLike[str]) -> None:
    """Create the schema and seed the demo data, once. Calling it again changes nothing.

    Two processes may call this at the same moment (the gateway starting the legacy app and the
    catalog service together): the check and the seeding run inside one ``BEGIN IMMEDIATE``
    transaction, so the second caller waits for the first and then finds the work done.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = connect(path)
    # Autocommit mode: we issue BEGIN IMMEDIATE and COMMIT ourselves, and the sqlite3 module's
    # implicit transaction handling must not interleave its own BEGIN or COMMIT with ours.
    connection.isolation_level = None
    try:
        # WAL lets the catalog service read while the legacy app writes. The mode is stored in
        # the file, so after the first run this is a no-op. It cannot change inside a transaction.
        _use_wal(connection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            # user_version, rather than "is the books table empty", marks a seeded database, so
            # deleting every book through the API does not bring the demo data back on restart.
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version == 0:
                for statement in SCHEMA:
                    connection.execute(statement)
                _seed(connection)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()


def _use_wal(connection: sqlite3.Connection) -> None:
    """Switch a new database to WAL, waiting up to ``BUSY_TIMEOUT_SECONDS`` for the others.

    The switch needs the file's exclusive lock. When two connections that both hold its shared
    lock reach for it at once, SQLite answers one of them "database is locked" at once, without
    the busy timeout (waiting could deadlock), so processes starting together (two gateway
    workers, the catalog service beside the legacy app) must try again themselves.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _seed(connection: sqlite3.Connection) -> None:
    connection.executemany(
        "INSERT INTO users (username, password_hash, roles) VALUES (?, ?, ?)", _demo_user_rows()
    )
    connection.executemany(
        "INSERT INTO books (id, title, author, year) VALUES (?, ?, ?, ?)", DEMO_BOOKS
    )
    connection.executemany(
        "INSERT INTO sales (book_id, quantity, sold_at) VALUES (?, ?, ?)", _demo_sales()
    )


@functools.cache
def _demo_user_rows() -> tuple[tuple[str, str, str], ...]:
    # Hashed once per process: a password hash is slow on purpose (about 0.1 s), and the tests
    # and the gateway build many demo databases in one process. Sharing a salt between demo
    # databases costs nothing, since the passwords themselves are published.
    return tuple(
        (name, generate_password_hash(password), roles) for name, password, roles in DEMO_USERS
    )


def _demo_sales() -> Iterator[tuple[int, int, str]]:
    """Deterministic sales rows, so the CSV report is the same on every machine."""
    start = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    for n in range(DEMO_SALES_COUNT):
        book_id = n % len(DEMO_BOOKS) + 1
        quantity = n * 7 % 5 + 1
        sold_at = start + timedelta(hours=5 * n)
        yield book_id, quantity, sold_at.isoformat()


def get_db() -> sqlite3.Connection:
    """The current request's connection, opened on first use."""
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db  # type: ignore[no-any-return]


def close_db(error: BaseException | None = None) -> None:
    db: sqlite3.Connection | None = g.pop("db", None)
    if db is not None:
        db.close()


@click.command("init-db")
def init_db_command() -> None:
    """Create and seed the database if it is new."""
    init_db(current_app.config["DATABASE"])
    click.echo("Initialized the database.")


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
