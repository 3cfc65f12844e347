"""The public surface: ``from gateway import ...``, ``gateway --version`` and ``python -m gateway``.

``import gateway`` must stay cheap: a tool that only reads the settings must not pay for Flask,
FastAPI and the whole gateway because the package's ``__init__`` imported them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, run_python

import gateway

VERSION = importlib.metadata.version("flask-fastapi-gateway")


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    script = f"{statement}\nimport json, sys\nprint(json.dumps(list(sys.modules)))"
    result = run_python("-c", script)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def gateway_script() -> str:
    script = shutil.which("gateway", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the gateway script is not installed next to this Python")
    return script


@pytest.mark.parametrize("command", ["python -m gateway", "gateway"])
def test_version_comes_from_the_installed_distribution(command: str) -> None:
    argv = [gateway_script()] if command == "gateway" else [sys.executable, "-m", "gateway"]
    result = subprocess.run(
        [*argv, "--version"],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gateway {VERSION}\n"
    assert gateway.__version__ == VERSION


def test_python_m_gateway_is_the_gateway_command() -> None:
    result = run_python("-m", "gateway")
    assert result.returncode == 2  # argparse: a command is required
    assert result.stderr.startswith("usage: gateway [-h] [--version] COMMAND ...")


def test_public_names_are_the_real_objects() -> None:
    from gateway import (
        GatewayApp,
        Identity,
        Settings,
        app,
        context,
        create_app,
        fastapi_support,
        flask_session,
        load_settings,
        require_roles,
        settings,
    )

    assert (create_app, GatewayApp) == (app.create_app, app.GatewayApp)
    assert (load_settings, Settings) == (settings.load_settings, settings.Settings)
    assert Identity is context.Identity
    assert (require_roles, flask_session) == (
        fastapi_support.require_roles,
        fastapi_support.flask_session,
    )
    assert gateway.flask_support.current_request_id() is None  # outside a Flask request


def test_every_name_in_all_resolves_and_is_listed() -> None:
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None, name
    assert set(gateway.__all__) <= set(dir(gateway))
    assert "importlib" not in dir(gateway)  # the lazy loader's helpers are not public


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'gateway' has no attribute 'nope'"):
        _ = gateway.nope  # type: ignore[attr-defined]
    assert not hasattr(gateway, "nope")
    with pytest.raises(ImportError, match="cannot import name 'nope'"):
        from gateway import nope  # type: ignore[attr-defined]  # noqa: F401


def test_import_gateway_imports_no_submodule() -> None:
    loaded = modules_after("import gateway")
    assert sorted(name for name in loaded if name.startswith("gateway.")) == []
    assert not {"flask", "fastapi", "starlette"} & loaded


def test_import_gateway_settings_does_not_build_the_rest() -> None:
    loaded = modules_after("import gateway.settings")
    heavy = {"gateway.app", "gateway.flask_support", "gateway.fastapi_support", "flask", "fastapi"}
    assert not heavy & loaded
