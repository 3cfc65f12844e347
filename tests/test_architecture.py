"""The shape the code promises: configuration is a leaf, and the examples in docstrings run."""

from __future__ import annotations

import doctest
import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import gateway

#: What reading the configuration may load: the settings themselves and small value modules.
SETTINGS_MAY_IMPORT = {
    "gateway",
    "gateway.settings",
    "gateway.errors",
    "gateway.context",
    "gateway.http_tokens",
    "gateway.path_template",
    "gateway.request_body",
    "gateway.flags",
    "gateway.flags.model",
}


def test_settings_import_nothing_of_the_runtime() -> None:
    code = (
        "import json, sys, gateway.settings; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'gateway')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))
    assert loaded <= SETTINGS_MAY_IMPORT, sorted(loaded - SETTINGS_MAY_IMPORT)
    assert "gateway.settings" in loaded


def gateway_modules() -> list[str]:
    prefix = gateway.__name__ + "."
    modules = [info.name for info in pkgutil.walk_packages(gateway.__path__, prefix)]
    return sorted([gateway.__name__, *modules])


@pytest.mark.parametrize("name", gateway_modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=vars(module).copy()):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} docstring example(s) failed in {name}"


def test_some_modules_carry_runnable_examples() -> None:
    """The doctest run above is not vacuous."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    examples = sum(
        len(test.examples)
        for name in gateway_modules()
        for test in finder.find(importlib.import_module(name), name)
    )
    assert examples >= 10
