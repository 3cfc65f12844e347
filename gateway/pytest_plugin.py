"""A pytest plugin that makes parity part of a project's own suite: one test per recorded sample,
for every route that has samples.

::

    pytest -p gateway.pytest_plugin --gateway-parity
    pytest -p gateway.pytest_plugin --gateway-parity --gateway-config prod.toml -k api-me

Installed with the gateway, it is also registered under the ``pytest11`` entry point name
``gateway.pytest_plugin``: then ``-p`` is not needed, and without ``--gateway-parity`` it adds
nothing to a run (only its options). Tests are named
``parity[GET /api/me 1:/api/me]``; a failure shows the report (JSON Pointer, legacy value,
new value). Routes served by legacy, retired routes and routes without samples get no tests.
Unsafe methods are skipped unless ``--gateway-allow-unsafe`` (point both sides at a scratch
database).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gateway", "gateway parity (recorded samples)")
    group.addoption(
        "--gateway-parity",
        action="store_true",
        default=False,
        help="add one test per recorded sample of every route with samples",
    )
    group.addoption(
        "--gateway-config",
        metavar="PATH",
        default=None,
        help="the gateway config (default: $GATEWAY_CONFIG or gateway.toml)",
    )
    group.addoption(
        "--gateway-allow-unsafe",
        action="store_true",
        default=False,
        help="also replay POST/PUT/PATCH/DELETE samples (use a scratch database)",
    )


class ParityItem(pytest.Item):
    def __init__(self, *, case: Any, skip: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.skip = skip

    def runtest(self) -> None:
        if self.skip is not None:
            pytest.skip(self.skip)
        self.case.assert_same()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.case.source, None, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the parity tests before ``-k`` and ``-m`` select among the items. The gateway's
    modules are imported here, not at the top: a plugin loaded into every pytest run (the entry
    point) must cost nothing until ``--gateway-parity`` asks for it."""
    if not config.getoption("gateway_parity"):
        return
    from gateway.context import LEGACY
    from gateway.errors import ConfigError
    from gateway.recording.samples import SampleFileError
    from gateway.settings import load_settings
    from gateway.testing import iter_cases

    try:
        settings = load_settings(config.getoption("gateway_config"), os.environ)
        allow_unsafe = bool(config.getoption("gateway_allow_unsafe"))
        for route in settings.routes:
            if route.backend == LEGACY or route.retired is not None:
                continue  # nothing to compare with
            for method in route.methods:
                label = f"{method} {route.path}"
                _, _, cases = iter_cases(label, allow_unsafe=allow_unsafe, settings=settings)
                for case in cases:
                    items.append(
                        ParityItem.from_parent(
                            session,
                            name=f"parity[{label} {case.id}]",
                            case=case,
                            skip=case.skip_reason(),
                        )
                    )
    except ConfigError as exc:
        raise pytest.UsageError("\n".join(exc.problems)) from None
    except SampleFileError as exc:
        raise pytest.UsageError(str(exc)) from None
