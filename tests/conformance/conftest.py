"""The conformance suite: real third-party code, which nobody here wrote, run through the gateway.

Every test under this directory is marked ``conformance`` (``pytest -m conformance`` runs just
this suite). What is vendored, from where, is in ``vendor/README.md``.

The hooks below wire ``a2wsgi_shim`` into pytest: a2wsgi's own tests run with the gateway's
adapter in place of a2wsgi's, and the tests listed in ``a2wsgi_shim.INTENDED_DIFFERENCES`` are
deselected, with their reasons printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from a2wsgi_shim import INTENDED_DIFFERENCES, SUBSTITUTES, VENDORED_A2WSGI_TESTS

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    # The vendored tests are written for pytest-asyncio; pytest_pyfunc_call below runs them.
    config.addinivalue_line("markers", "asyncio: an async test of the vendored a2wsgi suite")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    for item in items:
        if not item.path.is_relative_to(HERE):
            kept.append(item)
            continue
        item.add_marker(pytest.mark.conformance)
        if item.path == VENDORED_A2WSGI_TESTS and item.name in INTENDED_DIFFERENCES:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
        config.stash[_DESELECTED] = [item.name for item in deselected]


_DESELECTED = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    names = config.stash.get(_DESELECTED, [])
    if names:
        terminalreporter.section("a2wsgi tests deselected as intended differences")
        for name in names:
            terminalreporter.line(f"{name}: {INTENDED_DIFFERENCES[name]}")


@pytest.fixture(autouse=True)
def _a2wsgi_through_the_gateway(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.path != VENDORED_A2WSGI_TESTS:
        yield
        return
    for name, substitute in SUBSTITUTES.items():
        # raising=True: if upstream stops importing a name, this fails instead of testing a2wsgi.
        monkeypatch.setattr(request.module, name, substitute)
    # test_build_environ_with_env sets SCRIPT_NAME in os.environ and never removes it; every
    # later gateway subprocess would inherit it.
    with mock.patch.dict(os.environ):
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run the vendored ``@pytest.mark.asyncio`` tests on a fresh event loop each."""
    if pyfuncitem.get_closest_marker("asyncio") is None:
        return None
    function = pyfuncitem.obj
    arguments = {name: pyfuncitem.funcargs[name] for name in inspect.signature(function).parameters}
    asyncio.run(function(**arguments))
    return True
