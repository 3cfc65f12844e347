"""``GET /reports/sales.csv``: every sale as CSV, streamed while it is read from the database.

The response body is a generator, so the first rows leave before the last are read; a client
that disconnects closes the generator and stops the query.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from flask import Blueprint, Response, stream_with_context

from legacy_flask.auth import login_required
from legacy_flask.db import get_db

bp = Blueprint("reports", __name__, url_prefix="/reports")
log = structlog.get_logger(__name__)

ROWS_PER_CHUNK = 20
HEADER = ("sale_id", "sold_at", "book_id", "title", "quantity")


def _csv_chunk(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@bp.get("/sales.csv")
@login_required
def sales_csv() -> Response:
    def generate() -> Iterator[str]:
        yield _csv_chunk([HEADER])
        cursor = get_db().execute(
            "SELECT sales.id, sales.sold_at, books.id, books.title, sales.quantity"
            " FROM sales JOIN books ON books.id = sales.book_id"
            " ORDER BY sales.id"
        )
        count = 0
        while rows := cursor.fetchmany(ROWS_PER_CHUNK):
            count += len(rows)
            yield _csv_chunk(tuple(row) for row in rows)
        log.info("reports.sales_streamed", rows=count)

    # stream_with_context keeps the request context (and so get_db() and the request id) alive
    # while the server iterates the body, after this view has returned.
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="sales.csv"'},
    )
