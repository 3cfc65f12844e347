"""A FastAPI service that takes over one of flaskr's routes, on the same URL.

flaskr's ``GET /auth/logout`` clears the Flask session and redirects to the index; this does the
same through the gateway's shared session, so flaskr's own logout test passes whichever side
serves the route.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from gateway.fastapi_support import flask_session


def create_auth_service() -> FastAPI:
    app = FastAPI()

    @app.get("/auth/logout")
    def logout(request: Request) -> RedirectResponse:
        flask_session(request).clear()
        return RedirectResponse("/", status_code=302)

    return app
