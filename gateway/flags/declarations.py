"""Flags are declared once, on a route: ``[routes.flag]``.

The first route a flag decides declares it with a table (the ``FlagSpec`` keys plus ``name``);
the others name it with a string, or repeat an identical table::

    [[routes]]
    path = "/api/books"
    methods = ["GET"]
    backend = "catalog"
    [routes.flag]
    name = "catalog-books"
    mode = "canary"
    percentage = 50

    [[routes]]
    path = "/api/books/{book_id:int}"
    methods = ["GET"]
    backend = "catalog"
    flag = "catalog-books"

A route's ``flag`` is then a ``FlagName``: a ``str`` (the name every consumer reads, as before)
that also carries the table when this route declared it. ``flag_defaults`` collects the
declarations into the name → spec mapping the flag runtime starts from; two tables that
disagree, and a name no table declares, are configuration problems naming the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import field_validator

from gateway.flags.model import FLAG_NAME, FlagSpec


class RouteFlag(FlagSpec):
    """A ``[routes.flag]`` table: a flag's name and its state until the store says otherwise."""

    name: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not FLAG_NAME.match(value):
            raise ValueError(f"flag name {value!r} must match {FLAG_NAME.pattern}")
        return value

    def spec(self) -> FlagSpec:
        return FlagSpec.model_validate(self.model_dump(exclude={"name"}))


class FlagName(str):
    """A route's flag name; ``declared`` is the flag's spec when the route declared it with a
    table, ``None`` when the route only names a flag declared elsewhere.

    A ``str`` subclass, so every reader of ``route.flag`` keeps getting the name."""

    declared: FlagSpec | None

    def __new__(cls, name: str, declared: FlagSpec | None = None) -> FlagName:
        value = super().__new__(cls, name)
        value.declared = declared
        return value


def route_flag(value: Any, handler: Callable[[Any], Any]) -> Any:
    """The ``flag`` key's validator (``mode="wrap"``): a name, or a ``[routes.flag]`` table.

    A table's errors keep their location (``routes[0].flag.percentage``): pydantic prefixes
    the location of a ``ValidationError`` raised inside a field validator."""
    if isinstance(value, dict):
        table = RouteFlag.model_validate(value)
        return FlagName(handler(table.name), table.spec())
    if isinstance(value, str):
        if not FLAG_NAME.match(value):
            raise ValueError(f"flag name {value!r} must match {FLAG_NAME.pattern}")
        return FlagName(handler(value))
    return handler(value)


def flag_defaults(flags: Sequence[str | None]) -> tuple[dict[str, FlagSpec], list[str]]:
    """Each declared flag's spec, from the routes' ``flag`` values in order; and the problems
    (``routes[i].flag: ...``): a name no table declares, two tables that disagree."""
    declared: dict[str, tuple[int, FlagSpec]] = {}
    problems = []
    for index, flag in enumerate(flags):
        spec = getattr(flag, "declared", None)
        if flag is None or spec is None:
            continue
        first = declared.setdefault(flag, (index, spec))
        if first[1] != spec:
            problems.append(
                f"routes[{index}].flag: declares flag {str(flag)!r} differently from "
                f"routes[{first[0]}].flag ({_difference(first[1], spec)}); declare a flag once "
                f'and name it on the other routes with flag = "{flag}"'
            )
    for index, flag in enumerate(flags):
        if flag is not None and flag not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(
                f"routes[{index}].flag: flag {str(flag)!r} is not declared: give one of its "
                f"routes a [routes.flag] table with name = {str(flag)!r} (declared: {known})"
            )
    return {name: spec for name, (_, spec) in declared.items()}, problems


def _difference(first: FlagSpec, second: FlagSpec) -> str:
    old, new = first.model_dump(mode="json"), second.model_dump(mode="json")
    return ", ".join(f"{key} {old[key]!r} vs {new[key]!r}" for key in old if old[key] != new[key])


def defaults_moved(defaults: dict[str, Any]) -> str:
    """The message for a config that still has ``[flags.defaults]``: the new spelling."""
    example = next(iter(defaults), "NAME")
    return (
        "[flags.defaults] is gone: a flag is declared once, on its route. Replace "
        f'flag = "{example}" on the first route it decides with a [routes.flag] table holding '
        f'name = "{example}" and the keys of [flags.defaults.{example}] (mode, percentage, '
        'allow_subjects, ...); other routes keep flag = "NAME"'
    )
