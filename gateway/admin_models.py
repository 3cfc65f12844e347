"""The bodies of the gateway's own endpoints (``gateway.admin``), as pydantic models.

FastAPI validates requests and responses with them and generates ``/_gateway/openapi.json``
from them. Each response model lists its fields in the order the endpoints wrote them before
the models existed, so clients read the same JSON::

    FlagChange.model_validate({"percentage": 25}).model_dump(exclude_unset=True)
    # {'percentage': 25}: the fields to change; the others keep their value
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from gateway.flags.model import FlagSpec, Mode

Percentage = Annotated[int, Field(ge=0, le=100)]


class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorBody(BaseModel):
    """Every error: its status, what went wrong, and the request id (as in ``X-Request-ID``)."""

    # The shape gateway.errors.error_body builds.
    error: ErrorDetail
    request_id: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "starting", "waiting for the flag store", "shutting down"]


class RouteRow(BaseModel):
    """One route: who serves it today, under which flag (``gateway.inventory.InventoryRow``)."""

    path: str
    methods: list[str]
    served_by: str | None
    flag: str | None
    status: Literal["migrated", "retired", "legacy", "new-only", "unrouted"]
    legacy_endpoint: str | None
    services: list[str]


class RouteInventory(BaseModel):
    routes: list[RouteRow]


class FlagView(BaseModel):
    """A flag's effective state, from the flag store or the configuration's defaults."""

    # FlagRuntime.view: a FlagSpec and its source. Lists, not sets, so the client reads the
    # subjects and roles in the order the runtime wrote them.
    mode: Mode
    percentage: Percentage
    allow_subjects: list[str]
    deny_subjects: list[str]
    allow_roles: list[str]
    deny_roles: list[str]
    source: Literal["store", "default"]


class NamedFlag(BaseModel):
    name: str
    mode: Mode
    percentage: Percentage
    allow_subjects: list[str]
    deny_subjects: list[str]
    allow_roles: list[str]
    deny_roles: list[str]
    source: Literal["store", "default"]


class FlagsView(BaseModel):
    version: int
    kill_switch: bool
    store: str
    store_loaded: bool
    flags: dict[str, FlagView]


def _without_defaults(schema: dict[str, Any]) -> None:
    # A field left out keeps the flag's current value, not FlagSpec's default: say nothing.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class FlagChange(FlagSpec):
    """Any of a flag's fields; those left out keep their value."""

    # FlagSpec's fields and validation (the store's own); the handler applies the fields that
    # were sent (model_dump(exclude_unset=True)).
    model_config = ConfigDict(json_schema_extra=_without_defaults)

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_flag_fields(cls, data: Any) -> Any:
        # Said before pydantic says it field by field, in the words the API has always used.
        if not isinstance(data, dict):
            raise PydanticCustomError(
                "flag_change", "the body must be a JSON object of flag fields"
            )
        unknown = sorted(set(data) - set(FlagSpec.model_fields))
        if unknown:
            raise PydanticCustomError(
                "flag_change", "unknown flag fields: {fields}", {"fields": ", ".join(unknown)}
            )
        return data


class KillSwitch(BaseModel):
    """``{"enabled": true}`` sends every flagged route to legacy; ``false`` lifts it."""

    enabled: StrictBool

    @model_validator(mode="before")
    @classmethod
    def _enabled_or_not(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
            raise PydanticCustomError(
                "kill_switch", 'the body must be {"enabled": true} or {"enabled": false}'
            )
        return data


class ShadowReport(BaseModel):
    """Shadow results of every live worker, added up: per route the counts and the noise
    learned, and the recent mismatches (``gateway.shadow.results``)."""

    workers: list[str]
    routes: dict[str, dict[str, Any]]
    recent: list[dict[str, Any]]


class RouteBreaker(BaseModel):
    #: The worst state any worker reports.
    state: str
    workers: dict[str, dict[str, Any]]


class BreakerReport(BaseModel):
    workers: list[str]
    breakers: dict[str, RouteBreaker]
