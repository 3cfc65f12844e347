"""The accounts service's composition root.

    app = create_app()

It holds no resources; its lifespan only marks start and stop in the log, so a reader of the
gateway's start-up log sees every service come up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from gateway.parity import LegacyJSONResponse, install_legacy_error_handlers
from new_services.accounts import routes
from new_services.standalone import legacy_error_app

log = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    log.info("accounts.started")
    yield
    log.info("accounts.stopped")


def create_app() -> FastAPI:
    app = FastAPI(
        default_response_class=LegacyJSONResponse,
        title="accounts",
        summary="Who the caller is, migrated from the legacy Flask app.",
        lifespan=lifespan,
    )
    install_legacy_error_handlers(app, standalone=legacy_error_app)
    app.include_router(routes.router)
    return app
