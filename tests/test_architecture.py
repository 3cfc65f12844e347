"""The shape the code promises: configuration is a leaf, and the examples in docstrings run."""

from __future__ import annotations

import ast
import builtins
import doctest
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

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
    # The rollout state is part of the flag state document (a value module, like flags.model).
    "gateway.rollout",
    "gateway.rollout.state",
    "gateway.flags.declarations",
}


def modules_loaded_by(code: str) -> set[str]:
    """Every module in ``sys.modules`` after ``code`` ran in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(result.stdout))


def test_settings_import_nothing_of_the_runtime() -> None:
    loaded = {
        m for m in modules_loaded_by("import gateway.settings") if m.split(".")[0] == "gateway"
    }
    assert loaded <= SETTINGS_MAY_IMPORT, sorted(loaded - SETTINGS_MAY_IMPORT)
    assert "gateway.settings" in loaded


#: What building the ``gateway`` command's parser must not load: each command imports its own
#: machinery when it runs, so ``--help``, ``--version`` and the ``serve --workers N``
#: supervisor stay small (tests/test_e2e_supervisor.py watches a real supervisor).
CLI_MUST_NOT_IMPORT = {
    "flask",
    "werkzeug",
    "fastapi",
    "httpx",
    "structlog",
    "uvicorn",
    "gateway.app",
    "gateway.build",
    "gateway.metrics.runtime",
    "gateway.reload_control",
    "gateway.replay",
}


def test_the_cli_parser_imports_no_command_machinery() -> None:
    loaded = modules_loaded_by("import gateway.cli\ngateway.cli._parser()")
    assert sorted(loaded & CLI_MUST_NOT_IMPORT) == []
    assert "gateway.cli_parity" in loaded  # the parser was built


_BUILD_AND_LIST = """
import io, json, sys
from gateway.app import create_app
from gateway.settings import load_settings
create_app(load_settings(sys.argv[1], {}), log_stream=io.StringIO())
print(json.dumps(sorted(m for m in ("jwt", "redis") if m in sys.modules)))
"""

_JWT = """
[auth]
order = ["jwt"]
[auth.jwt]
[[auth.jwt.keys]]
kid = "k1"
algorithm = "HS256"
secret = "demo-only-test-secret-not-for-production-use-32b"
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", []),
        (_JWT, ["jwt"]),
        ('[flags]\nstore = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n', ["redis"]),
    ],
    ids=["neither", "jwt", "redis"],
)
def test_jwt_and_redis_are_imported_only_when_the_config_uses_them(
    tmp_path: Path, extra: str, expected: list[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[legacy]\napp = "sample_apps:create_flask"\n' + extra)
    tests = Path(__file__).resolve().parent
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), *sys.path])}
    environ = {k: v for k, v in environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-c", _BUILD_AND_LIST, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == expected


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


def literal_blocks(docstring: str) -> list[str]:
    """The indented blocks that follow a line ending in ``::`` (reST literal blocks)."""
    blocks: list[str] = []
    lines = docstring.splitlines()
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        block: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith("    "):
                break
            block.append(following)
        blocks.append(textwrap.dedent("\n".join(block)).strip())
    return [block for block in blocks if block]


def unresolved_calls(block: str, namespace: dict[str, object]) -> list[str]:
    """Calls in a Python example whose callee is not defined where the example says it is:
    a bare name that is neither bound in the example, nor the module's, nor a builtin; or an
    attribute of the module's own names that does not exist (``FlagRuntime.decide``)."""
    try:
        tree = ast.parse(block)
    except SyntaxError:
        return []  # a shell command, JSON, a diagram: not Python
    bound = {
        target.id
        for node in ast.walk(tree)
        for target in (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.NamedExpr))
            else []
        )
        if isinstance(target, ast.Name)
    }
    bound |= {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    bound |= {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if isinstance(callee, ast.Name):
            name = callee.id
            if name in bound or name in namespace or hasattr(builtins, name):
                continue
            # A plain word (``app``, ``service``, ``send``) is the reader's own object; a
            # compound or capitalised name (``read_body``, ``FileFlagStore``) is an API.
            if "_" in name or name[0].isupper():
                problems.append(name)
        elif isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
            owner = namespace.get(callee.value.id)
            if callee.value.id in bound or owner is None:
                continue
            if (inspect.isclass(owner) or inspect.ismodule(owner)) and not hasattr(
                owner, callee.attr
            ):
                problems.append(f"{callee.value.id}.{callee.attr}")
    return problems


@pytest.mark.parametrize("name", gateway_modules())
def test_module_examples_name_what_exists(name: str) -> None:
    """Examples in ``::`` blocks are not run (they need servers, stores, requests), but every
    call they show must name something the module really has: an example cannot go stale."""
    module = importlib.import_module(name)
    namespace = vars(module)
    problems = [
        problem
        for block in literal_blocks(module.__doc__ or "")
        for problem in unresolved_calls(block, namespace)
    ]
    assert problems == [], f"{name}: its docstring example calls {problems}"
