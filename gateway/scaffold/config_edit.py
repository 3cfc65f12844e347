"""The ``gateway.toml`` edit of ``gateway scaffold``, on text: comments and layout kept.

::

    text = add_scaffolded_route(text, service="admin", service_app="new_services.admin:create_app",
                                method="GET", template="/admin/users", flag="admin-users")

adds ``[services.admin]`` (when ``service_app`` is given: a new service) after the last service,
and a ``[[routes]]`` entry whose flag starts in ``shadow`` mode: legacy keeps answering, the
service gets a copy of each safe request and the answers are compared
(``gateway shadow report``).
"""

from __future__ import annotations

import tomlkit
from tomlkit.items import AoT

from gateway.config_file import append_table, append_to_array

#: Methods whose requests shadow mode copies, and fallback may replay.
_SAFE = frozenset({"GET", "HEAD"})


def route_flag_name(method: str, template: str) -> str:
    """``GET /admin/users`` → ``admin-users``; other methods keep theirs (``post-api-books``)."""
    words = [
        part.strip("{}").split(":", 1)[0].replace("_", "-").lower()
        for part in template.strip("/").split("/")
        if part
    ]
    name = "-".join(words) or "root"
    if method != "GET":
        name = f"{method.lower()}-{name}"
    return name[:64]


def scaffold_comment(method: str, template: str, service: str, flag: str) -> str:
    """The comment ``gateway scaffold`` writes above the route (``gateway retire`` replaces it,
    since it describes the migration in progress)."""
    return (
        f"{method} {template}: scaffolded onto {service} (`gateway scaffold`). Shadow mode: "
        f"legacy\nanswers; `gateway flags set {flag} --mode new` moves it, `gateway retire` "
        "ends it."
    )


def retired_comment(method: str, template: str, service: str) -> str:
    """What replaces :func:`scaffold_comment` once ``gateway retire`` has ended the migration."""
    return (
        f"{method} {template}: scaffolded onto {service} (`gateway scaffold`), then retired\n"
        f"(`gateway retire`): {service} serves it alone; [routes.retired] keeps url_for building."
    )


def add_scaffolded_route(
    text: str,
    *,
    service: str,
    service_app: str | None,
    method: str,
    template: str,
    flag: str,
) -> str:
    """``text`` with the new service (when ``service_app``) and the route added."""
    doc = tomlkit.parse(text)
    if service_app is not None:
        entry = tomlkit.table()
        entry.add("app", service_app)
        services = doc.get("services")
        if services is None:
            services = tomlkit.table(is_super_table=True)
            doc.add(tomlkit.nl())
            doc.add("services", services)
        append_table(services, service, entry)

    route = tomlkit.table()
    route.add("path", template)
    route.add("methods", [method])
    route.add("backend", service)
    if method in _SAFE:
        # When the flag says new and the service raises or answers 5xx, legacy answers.
        route.add("fallback", True)
    flag_table = tomlkit.table()
    flag_table.add("name", flag)
    flag_table.add("mode", "shadow")
    route.add("flag", flag_table)
    shadow = tomlkit.table()
    shadow.add("primary", "legacy")
    shadow["primary"].comment("legacy answers the client; the service is compared")
    route.add("shadow", shadow)

    comment = scaffold_comment(method, template, service, flag)
    routes = doc.get("routes")
    if routes is None:
        doc.add(tomlkit.nl())
        doc.add("routes", tomlkit.aot())
        routes = doc["routes"]
    if not isinstance(routes, AoT):
        raise ValueError("routes is not an array of tables ([[routes]])")
    append_to_array(routes, route, comment)
    return tomlkit.dumps(doc)
