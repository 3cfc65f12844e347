"""Several services' OpenAPI documents as one set of components, names kept where they agree.

A component (``schemas``, ``responses``, ``securitySchemes``...) that two services define
differently under one name is renamed ``{service}__{name}`` in every service that has it
(``catalog__Book``, ``accounts__Book``); one they define identically (FastAPI's
``HTTPValidationError``) stays shared. Every ``$ref`` in a service's paths and components, and
every security requirement, follows its service's renames::

    merged = merge_components({"catalog": catalog.openapi(), "accounts": accounts.openapi()})
    merged.components["schemas"]["Book"]          # or "catalog__Book" on a collision
    merged.paths["catalog"]["/api/books"]["get"]  # refs rewritten

The input documents are not changed (FastAPI hands out its cached document itself).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_REF = re.compile(r"^#/components/([^/]+)/(.+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@dataclass(frozen=True, slots=True)
class MergedComponents:
    #: Service name → its ``paths``, with path-level parameters and the document's security
    #: pushed down into each operation, and references renamed.
    paths: dict[str, dict[str, Any]]
    components: dict[str, dict[str, Any]]


def merge_components(documents: Mapping[str, Mapping[str, Any]]) -> MergedComponents:
    definitions: dict[tuple[str, str], dict[str, Any]] = {}
    for service, document in documents.items():
        for section, entries in document.get("components", {}).items():
            for name, definition in entries.items():
                definitions.setdefault((section, name), {})[service] = definition

    renames: dict[str, dict[tuple[str, str], str]] = {service: {} for service in documents}
    for (section, name), by_service in definitions.items():
        if len({_canonical(definition) for definition in by_service.values()}) > 1:
            for service in by_service:
                renames[service][(section, name)] = f"{_UNSAFE.sub('_', service)}__{name}"

    components: dict[str, dict[str, Any]] = {}
    paths: dict[str, dict[str, Any]] = {}
    for service, document in documents.items():
        renamed = renames[service]
        for section, entries in document.get("components", {}).items():
            for name, definition in entries.items():
                target = renamed.get((section, name), name)
                components.setdefault(section, {})[target] = _rewrite(definition, renamed)
        paths[service] = {
            path: _operations(item, document.get("security"), renamed)
            for path, item in document.get("paths", {}).items()
        }
    return MergedComponents(
        paths, {section: dict(sorted(v.items())) for section, v in components.items()}
    )


def _operations(
    item: Mapping[str, Any], security: Any, renamed: Mapping[tuple[str, str], str]
) -> dict[str, Any]:
    """The path item's operations, each standing alone in the merged document."""
    shared = item.get("parameters", [])
    operations = {}
    for method, operation in item.items():
        if method not in _METHODS:
            continue
        operation = copy.deepcopy(dict(operation))
        if shared:
            own = {(p.get("name"), p.get("in")) for p in operation.get("parameters", [])}
            inherited = [p for p in shared if (p.get("name"), p.get("in")) not in own]
            operation["parameters"] = [*copy.deepcopy(inherited), *operation.get("parameters", [])]
        if security is not None and "security" not in operation:
            operation["security"] = copy.deepcopy(security)
        if "security" in operation:
            operation["security"] = [
                {renamed.get(("securitySchemes", name), name): scopes for name, scopes in r.items()}
                for r in operation["security"]
            ]
        operations[method] = _rewrite(operation, renamed)
    return operations


def _rewrite(value: Any, renamed: Mapping[tuple[str, str], str]) -> Any:
    """A copy of ``value`` with its ``$ref`` strings pointing at the renamed components."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                found = _REF.match(item)
                if found is not None and (found[1], found[2]) in renamed:
                    item = f"#/components/{found[1]}/{renamed[(found[1], found[2])]}"
            result[key] = _rewrite(item, renamed)
        return result
    if isinstance(value, list):
        return [_rewrite(item, renamed) for item in value]
    return value


def _canonical(definition: Any) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))
