"""The rollout endpoints of the admin API (``/_gateway/api/rollouts``), admin-only like the
rest of it:

- ``GET  /_gateway/api/rollouts``: every rollout: step, leader, last verdict;
- ``POST /_gateway/api/rollouts`` ``{"route": "GET /api/books"}``: start one;
- ``POST /_gateway/api/rollouts/{flag}/pause|resume|abort``.

The same operations as ``gateway rollout`` (``gateway.rollout.commands``), audited the same way.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from gateway.admin import AdminProblem
from gateway.admin_models import ErrorBody
from gateway.context import request_facts
from gateway.errors import StoreUnavailable
from gateway.flags.model import FLAG_NAME
from gateway.flags.runtime import FlagRuntime
from gateway.rollout.changes import RolloutError
from gateway.rollout.commands import RolloutCommands, describe
from gateway.route_lookup import RouteNotFound


class RolloutStart(BaseModel):
    #: ``GET /api/books``, ``/api/me``: any spelling ``gateway rollout start`` takes.
    route: str


class Rollouts(BaseModel):
    rollouts: list[dict[str, Any]]


async def _actor(request: Request) -> str:
    identity = request_facts(request.scope).identity
    return f"{identity.subject} ({identity.method})"


#: Documented, not enforced: a name no flag can have is unknown, hence 404.
_FLAG_NAME = Path(json_schema_extra={"pattern": FLAG_NAME.pattern})

#: Who asked, as the audit line names them.
Actor = Annotated[str, Depends(_actor)]


def rollout_router(commands: RolloutCommands, flags: FlagRuntime) -> APIRouter:
    router = APIRouter(
        prefix="/rollouts",
        responses={
            404: {"model": ErrorBody, "description": "no such route or flag"},
            409: {"model": ErrorBody, "description": "the rollout's state does not allow it"},
            503: {"model": ErrorBody, "description": "the flag store is unavailable"},
        },
    )

    async def run(operation: Any, *args: Any, who: str) -> dict[str, Any]:
        try:
            flag, rollout = await operation(*args, actor=who)
        except RouteNotFound as exc:
            raise AdminProblem(404, str(exc)) from None
        except RolloutError as exc:
            raise AdminProblem(409, str(exc)) from None
        except StoreUnavailable as exc:
            raise AdminProblem(503, f"the flag store is unavailable: {exc}") from None
        return describe(flag, rollout, time.time())

    @router.get("", summary="Every rollout: its step, its leader and the last verdict")
    async def rollouts() -> Rollouts:
        now = time.time()
        state = flags.state.rollouts
        return Rollouts(rollouts=[describe(f, r, now) for f, r in sorted(state.items())])

    @router.post("", summary="Start a route's rollout", status_code=201)
    async def start(body: RolloutStart, who: Actor) -> dict[str, Any]:
        return await run(commands.start, body.route, who=who)

    @router.post("/{flag}/{action}", summary="Pause, resume or abort a rollout")
    async def act(
        flag: Annotated[str, _FLAG_NAME], action: Literal["pause", "resume", "abort"], who: Actor
    ) -> dict[str, Any]:
        return await run(getattr(commands, action), flag, who=who)

    return router
