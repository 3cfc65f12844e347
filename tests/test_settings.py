"""Config loading: every mistake names the file (or variable), the key and the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from gateway.errors import ConfigError
from gateway.settings import load_settings

MINIMAL = """
[legacy]
app = "legacy_flask:create_app"

[services.catalog]
app = "new_services.catalog:create_app"

[[routes]]
path = "/api/books"
methods = ["GET"]
backend = "catalog"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), {})
    assert settings.legacy.threads == 16
    assert settings.server.port == 8000
    assert settings.logging.format == "console"
    assert settings.routes[0].backend == "catalog"


def test_environment_overrides_with_types(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MINIMAL),
        {
            "GATEWAY_LEGACY__THREADS": "32",
            "GATEWAY_LOGGING__FORMAT": "json",
            "GATEWAY_SERVER__BACKEND_HEADER": "false",
            "GATEWAY_SERVICES__CATALOG__OPTIONS__DATABASE": "var/other.db",
            "UNRELATED": "ignored: no GATEWAY_ prefix",
        },
    )
    assert settings.legacy.threads == 32
    assert settings.logging.format == "json"
    assert settings.server.backend_header is False
    assert settings.services["catalog"].options == {"database": "var/other.db"}


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_settings(None, {"GATEWAY_CONFIG": str(path)}).source == str(path)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (MINIMAL + "\n[server]\nprot = 1\n", {}, "gateway.toml: server.prot: unknown key"),
        (
            MINIMAL.replace('methods = ["GET"]', 'methods = ["get"]'),
            {},
            "routes[0].methods[0]: 'get' is not an upper-case HTTP method",
        ),
        (
            MINIMAL.replace('methods = ["GET"]', "methods = []"),
            {},
            "routes[0].methods: needs at least one method",
        ),
        (
            MINIMAL.replace('"/api/books"', '"/api/{id:float}"'),
            {},
            "routes[0].path: unknown converter 'float'",
        ),
        (MINIMAL.replace('"/api/books"', '"api/books"'), {}, "routes[0].path: must start with '/'"),
        (
            MINIMAL.replace('backend = "catalog"', 'backend = "catalgo"'),
            {},
            "routes[0].backend: unknown backend 'catalgo' (known: legacy, catalog)",
        ),
        (
            MINIMAL.replace('app = "legacy_flask:create_app"', 'app = "legacy_flask"'),
            {},
            "legacy.app: 'legacy_flask' is not an import string",
        ),
        (
            MINIMAL.replace("[legacy]\n", "[legacy]\nthreads = 0\n"),
            {},
            "legacy.threads: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL.replace("[legacy]\n", "[legacy]\nswitch_interval = 0\n"),
            {},
            "legacy.switch_interval: Input should be greater than 0",
        ),
        (
            MINIMAL.replace("[legacy]\n", "[legacy]\nswitch_interval = 5\n"),
            {},
            "legacy.switch_interval: Input should be less than or equal to 0.1",
        ),
        (
            MINIMAL.replace("[legacy]\n", "[legacy]\nprocesses = 4\n"),
            {},
            'gateway.toml: legacy.processes: applies only with isolation = "processes"',
        ),
        (
            MINIMAL.replace("[legacy]\n", "[legacy]\nnice = 5\n"),
            {},
            'gateway.toml: legacy.nice: applies only with isolation = "processes"',
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\nnice = 20\n'),
            {},
            "legacy.nice: Input should be less than or equal to 19",
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\n'),
            {"GATEWAY_SERVER__PIN_WORKERS": "true"},
            'server.pin_workers: not with legacy.isolation = "processes"',
        ),
        (
            MINIMAL,
            {"GATEWAY_SERVER__PIN_WORKERS": "sometimes"},
            "server.pin_workers: Input should be a valid boolean",
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nscheduling = "idle"\n'),
            {},
            'gateway.toml: legacy.scheduling: applies only with isolation = "processes"',
        ),
        (
            MINIMAL.replace(
                "[legacy]\n", '[legacy]\nisolation = "processes"\nscheduling = "idle"\nnice = 5\n'
            ),
            {},
            'gateway.toml: legacy.nice: has no effect with scheduling = "idle"',
        ),
        # A whole-file check names where its key was set: the variable, not the file.
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\nnice = 5\n'),
            {"GATEWAY_LEGACY__SCHEDULING": "idle"},
            'gateway.toml: legacy.nice: has no effect with scheduling = "idle"',
        ),
        (
            MINIMAL.replace(
                "[legacy]\n", '[legacy]\nisolation = "processes"\nscheduling = "idle"\n'
            ),
            {"GATEWAY_LEGACY__NICE": "5"},
            'environment GATEWAY_LEGACY__NICE: legacy.nice: has no effect with scheduling = "idle"',
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\n'),
            {"GATEWAY_SERVER__PIN_WORKERS": "true"},
            "environment GATEWAY_SERVER__PIN_WORKERS: server.pin_workers: not with",
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\n'),
            {"GATEWAY_LEGACY__SCHEDULING": "fifo"},
            "legacy.scheduling: Input should be 'normal' or 'idle'",
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "processes"\nprocesses = 0\n'),
            {},
            "legacy.processes: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL.replace("[legacy]\n", '[legacy]\nisolation = "forks"\n'),
            {},
            "legacy.isolation: Input should be 'threads' or 'processes'",
        ),
        ("[server]\nport = 1\n", {}, "gateway.toml: legacy: required key is missing"),
        (MINIMAL + "\n[services.Bad_Name]\napp = 'a:b'\n", {}, "services: service name 'Bad_Name'"),
        (
            MINIMAL,
            {"GATEWAY_SERVER__PORT": "eighty"},
            "environment GATEWAY_SERVER__PORT: server.port: Input should be a valid integer",
        ),
        (
            MINIMAL,
            {"GATEWAY_SERVER__PROT": "80"},
            "environment GATEWAY_SERVER__PROT: server.prot: unknown key",
        ),
        (
            MINIMAL,
            {"GATEWAY_LEGACY__APP__X": "1"},
            "environment GATEWAY_LEGACY__APP__X: legacy.app is not a table",
        ),
        ("[legacy\napp=1", {}, "gateway.toml: not valid TOML"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), env)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("[legacy]\n", "[legacy]\nthreds = 4\n").replace('["GET"]', '["get"]')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), {})
    assert len(caught.value.problems) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_settings(tmp_path / "nope.toml", {})


def run_cli(
    *args: str, cwd: Path, database: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if database is not None:
        env["GATEWAY_LEGACY__OPTIONS__DATABASE"] = str(database)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_config_error_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('backend = "catalog"', 'backend = "nope"'))
    for command in ("check", "routes", "serve"):
        result = run_cli(command, "--config", str(path), cwd=tmp_path)
        assert result.returncode == 2
        assert "config error" in result.stderr
        assert "routes[0].backend: unknown backend 'nope'" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            (
                'app = "new_services.catalog:create_app"',
                'app = "new_services.catalogue:create_app"',
            ),
            "services.catalog.app: no module named 'new_services.catalogue'",
        ),
        (
            ('app = "new_services.catalog:create_app"', 'app = "new_services.catalog:make_app"'),
            "services.catalog.app: 'new_services.catalog' has no attribute 'make_app'",
        ),
        (
            ('path = "/api/books"', 'path = "/api/bookz"'),
            "routes[0]: service 'catalog' does not implement GET /api/bookz",
        ),
        (
            ('methods = ["GET"]', 'methods = ["GET", "DELETE"]'),
            "routes[0]: service 'catalog' does not implement DELETE /api/books",
        ),
        (
            ("[legacy]\n", "[legacy]\noptions = { colour = 'blue' }\n"),
            "legacy.options: 'legacy_flask:create_app' rejects them",
        ),
    ],
)
def test_check_verifies_apps_and_routes(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    config = write(tmp_path, MINIMAL.replace(*change))
    result = run_cli("check", "--config", str(config), cwd=REPO, database=tmp_path / "db.sqlite3")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_check_passes_on_the_demo_config(tmp_path: Path) -> None:
    result = run_cli("check", cwd=REPO, database=tmp_path / "db.sqlite3")
    assert result.returncode == 0, result.stderr
    assert "gateway.toml: ok: 6 routes (6 to services), 2 services" in result.stdout
