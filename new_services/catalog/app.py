"""The catalog service's composition root.

    app = create_app(database="var/bookstore.sqlite3")

The lifespan opens the database and hands a :class:`BookStore` to the endpoints through the
lifespan state. Behind the gateway, the gateway runs this lifespan at its own start-up.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from gateway.parity import LegacyJSONResponse, install_legacy_error_handlers
from legacy_flask.db import init_db, resolve_database_path
from new_services.catalog import routes
from new_services.catalog.routes import CatalogState
from new_services.catalog.store import BookStore
from new_services.standalone import legacy_error_app

log = structlog.get_logger(__name__)

_Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[CatalogState]]


def create_app(database: str | os.PathLike[str] | None = None) -> FastAPI:
    """Build the catalog. ``database`` defaults as the legacy app's does (``$BOOKSTORE_DATABASE``,
    then ``var/bookstore.sqlite3``), so the two meet on one file with no configuration."""
    path = resolve_database_path(database)
    app = FastAPI(
        default_response_class=LegacyJSONResponse,
        title="catalog",
        summary="The bookstore's books, migrated from the legacy Flask app.",
        lifespan=_lifespan_for(path),
    )
    install_legacy_error_handlers(app, standalone=legacy_error_app)
    app.include_router(routes.router)
    return app


def _lifespan_for(path: Path) -> _Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[CatalogState]:
        # The catalog shares the legacy schema on purpose, and creates it when it starts first,
        # so it also runs on its own. init_db is safe against the legacy app doing the same.
        await run_in_threadpool(init_db, path)
        store = BookStore(path)
        await run_in_threadpool(store.check)
        log.info("catalog.started", database=str(path))
        yield {"catalog_store": store}
        log.info("catalog.stopped")

    return lifespan
