"""The head of a test gateway config: which test apps it loads, and the test-only API keys.

::

    CONFIG = apps_config("shadow_apps", services={"svc": "create_candidate"}) + '''
    [flags]
    store = "memory"
    ...'''
    client.get("/admin/flags", headers=ADMIN)

Every module that loads its own apps (``metrics_apps``, ``shadow_apps``, ``tracing_apps``) had
the same ``[legacy]``, ``[services]`` and ``[auth]`` tables written out; they are built here.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Test-only keys, known by their SHA-256 in the config: an admin and a plain user.
ADMIN = {"X-API-Key": "test-admin-key"}
USER = {"X-API-Key": "test-user-key"}

_AUTH = """
[auth]
order = ["api-key"]
default_access = "public"
[auth.api_keys]
[[auth.api_keys.keys]]
name = "test-admin"
sha256 = "944650a7cd0f9e14d5c4fb15edbffb7fa45fb9ed36a4fa9be3d7e5476ae51bd9"
roles = ["admin"]
[[auth.api_keys.keys]]
name = "test-user"
sha256 = "d3b2fd8274017751cc95b3b55973ae90951714bc1755f08aad059f62d66553bd"
roles = ["user"]
"""


def apps_config(
    module: str,
    *,
    legacy: str = "",
    services: Mapping[str, str] | None = None,
    service_options: Mapping[str, str] | None = None,
) -> str:
    """``[legacy]`` loading ``module:create_legacy`` (plus the ``legacy`` lines, e.g.
    ``threads = 4``), a ``[services.NAME]`` per entry of ``services`` (name → factory in
    ``module``; default ``svc`` → ``create_service``) with its inline ``options`` from
    ``service_options``, and api-key auth that leaves every path public unless a policy says
    otherwise and knows ``ADMIN`` and ``USER``."""
    lines = ["", "[legacy]", f'app = "{module}:create_legacy"']
    if legacy:
        lines.append(legacy)
    options = service_options or {}
    for name, factory in (services or {"svc": "create_service"}).items():
        lines += [f"[services.{name}]", f'app = "{module}:{factory}"']
        if name in options:
            lines.append(f"options = {options[name]}")
    return "\n".join(lines) + _AUTH
