"""Flag hygiene: a flag is declared once, on its route; ``flags delete`` and ``flags reset`` (CLI
and admin API) remove store entries; ``gateway check`` warns about flags no route declares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import REPO, GatewayProcess, demo_config, eventually

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.flags.model import FlagSpec
from gateway.settings import load_settings

API_KEY = {"X-API-Key": "demo-reporting-key-not-a-secret"}  # reporting-bot, role user

BASE = """
[legacy]
app = "legacy_flask:create_app"

[services.svc]
app = "new_services.accounts:create_app"

[flags]
store = "memory"
"""


def route(path: str, flag: str) -> str:
    return f'\n[[routes]]\npath = "{path}"\nmethods = ["GET"]\nbackend = "svc"\n{flag}\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + text)
    return load_settings(path, {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    source = tmp_path / "gateway.toml"
    assert all(p.startswith(f"{source}: ") for p in caught.value.problems)
    return caught.value.problems


# -- declared once, on the route ------------------------------------------------------------------


def test_a_table_declares_the_flag_and_other_routes_name_it(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        route("/b", 'flag = "shared"')  # named before it is declared: order does not matter
        + route("/a", '[routes.flag]\nname = "shared"\nmode = "canary"\npercentage = 10\n')
        + route("/c", 'flag = { name = "shared", mode = "canary", percentage = 10 }')
        + route("/d", '[routes.flag]\nname = "solo"\nallow_roles = ["qa"]\n'),
    )
    assert settings.flag_defaults() == {  # type: ignore[attr-defined]
        "shared": FlagSpec(mode="canary", percentage=10),
        "solo": FlagSpec(allow_roles=frozenset({"qa"})),
    }
    # Every consumer still reads a route's flag as its name.
    assert [r.flag for r in settings.routes] == ["shared", "shared", "shared", "solo"]  # type: ignore[attr-defined]


def test_conflicting_tables_name_both_keys(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        route("/a", 'flag = { name = "x", mode = "canary", percentage = 10 }')
        + route("/b", 'flag = { name = "x", mode = "canary", percentage = 20 }'),
    )
    assert len(found) == 1
    assert "routes[1].flag: declares flag 'x' differently from routes[0].flag" in found[0]
    assert "percentage 10 vs 20" in found[0]


def test_a_name_no_table_declares_is_an_error(tmp_path: Path) -> None:
    [found] = problems(
        tmp_path, route("/a", 'flag = { name = "x" }') + route("/b", 'flag = "catlog"')
    )
    assert "routes[1].flag: flag 'catlog' is not declared" in found
    assert "(declared: x)" in found


@pytest.mark.parametrize(
    ("flag", "key", "message"),
    [
        ('flag = { name = "x", percentage = 101 }', "routes[0].flag.percentage", "less than"),
        ('flag = { name = "x", colour = "red" }', "routes[0].flag.colour", "unknown key"),
        ('flag = { mode = "new" }', "routes[0].flag.name", "required key is missing"),
        ('flag = "Bad Name"', "routes[0].flag", "must match"),
    ],
)
def test_bad_tables_name_the_key(tmp_path: Path, flag: str, key: str, message: str) -> None:
    found = problems(tmp_path, route("/a", flag))
    assert any(f"{key}: " in p and message in p for p in found), found


def test_flags_defaults_is_refused_with_the_new_spelling(tmp_path: Path) -> None:
    [found] = problems(
        tmp_path, '[flags.defaults.old]\nmode = "new"\n' + route("/a", 'flag = "old"')
    )
    assert "[flags.defaults] is gone" in found
    assert '[routes.flag] table holding name = "old"' in found


# -- delete and reset through the admin API -------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = demo_config(tmp_path, flags=None)
    app = create_app(load_settings(config, {"GATEWAY_FLAGS__STORE": "memory"}))
    with TestClient(app, base_url="http://localhost") as test_client:
        login = {"username": "alice", "password": "wonderland"}
        assert test_client.post("/login", data=login).status_code == 200
        # A cookie-signed change must say it is not cross-site (gateway.csrf).
        test_client.headers["X-Gateway-CSRF"] = "1"
        yield test_client


def test_admin_delete_and_reset(client: TestClient) -> None:
    assert client.put("/_gateway/api/flags/catalog-books", json={"percentage": 100}).is_success
    assert client.put("/_gateway/api/flags/accounts-me", json={"mode": "new"}).is_success
    assert client.get("/api/me", headers=API_KEY).headers["x-gateway-backend"] == "accounts"

    # A declared flag: its store entry goes, its config default (shadow: legacy answers) is back.
    with capture_logs() as logs:
        deleted = client.delete("/_gateway/api/flags/accounts-me")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["flags"]["accounts-me"]["source"] == "default"
    assert deleted.json()["flags"]["accounts-me"]["mode"] == "shadow"
    [audit] = [log for log in logs if log["event"] == "flags.changed"]
    assert (audit["actor"], audit["flag"]) == ("alice (session)", "accounts-me")
    assert (audit["old"]["mode"], audit["new"]["mode"]) == ("new", "shadow")
    assert client.get("/api/me", headers=API_KEY).headers["x-gateway-backend"] == "legacy"

    # Reset: every declared flag back to its default, audited like `flags set`.
    with capture_logs() as logs:
        reset = client.delete("/_gateway/api/flags")
    assert reset.status_code == 200
    assert reset.json()["flags"]["catalog-books"] == {
        "mode": "canary",
        "percentage": 50,
        "allow_subjects": [],
        "deny_subjects": [],
        "allow_roles": [],
        "deny_roles": [],
        "source": "default",
    }
    assert [log["flag"] for log in logs if log["event"] == "flags.changed"] == ["catalog-books"]

    unknown = client.delete("/_gateway/api/flags/nope")
    assert unknown.status_code == 404
    assert "unknown flag 'nope'" in unknown.json()["error"]["message"]


def test_admin_delete_needs_an_admin(client: TestClient) -> None:
    client.post("/logout")
    assert client.delete("/_gateway/api/flags").status_code == 401
    assert client.delete("/_gateway/api/flags/accounts-me", headers=API_KEY).status_code == 403


# -- the CLI, against a running server ------------------------------------------------------------


def gateway_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


STALE = {"accounts-me": {"mode": "new"}, "retired-thing": {"mode": "new"}}


@pytest.mark.e2e
def test_delete_and_reset_while_serving(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags=STALE)
    # check: the config is fine (exit 0), with a warning about the flag no route declares.
    checked = gateway_cli(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert "ok:" in checked.stdout
    assert "holds flags no route declares: retired-thing" in checked.stderr
    assert "gateway flags delete NAME" in checked.stderr

    gateway = GatewayProcess(config).start()
    try:

        def me_backend() -> str:
            response = httpx.get(f"{gateway.base_url}/api/me", headers=API_KEY, timeout=5)
            return response.headers["x-gateway-backend"]

        assert me_backend() == "accounts"

        deleted = gateway_cli(config, "flags", "delete", "retired-thing")
        assert deleted.returncode == 0, deleted.stderr
        assert "flag 'retired-thing' deleted from the store" in deleted.stdout
        assert "retired-thing" not in deleted.stdout.split("\n", 2)[2]  # gone from the table
        assert "flags.changed" in deleted.stderr  # the audit line
        assert (
            "retired-thing"
            not in json.loads((tmp_path / "var" / "flags.json").read_text())["flags"]
        )
        clean = gateway_cli(config, "check")
        assert clean.returncode == 0
        assert "no route declares" not in clean.stderr

        reset = gateway_cli(config, "flags", "reset", "accounts-me")
        assert reset.returncode == 0, reset.stderr
        assert "flag 'accounts-me' is back to its config default" in reset.stdout
        assert "accounts-me    shadow" in reset.stdout
        # The running server follows (the file store is watched): shadow, so legacy answers.
        assert eventually(lambda: me_backend() == "legacy", limit=5)

        gateway_cli(config, "flags", "set", "catalog-books", "--percentage", "100")
        gateway_cli(config, "flags", "set", "accounts-me", "--mode", "new")
        assert eventually(lambda: me_backend() == "accounts", limit=5)
        everything = gateway_cli(config, "flags", "reset")
        assert everything.returncode == 0, everything.stderr
        assert "every declared flag is back to its config default" in everything.stdout
        assert "catalog-books  canary  50%" in everything.stdout
        assert eventually(lambda: me_backend() == "legacy", limit=5)
    finally:
        gateway.stop()


def test_cli_refusals(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags={"retired-thing": {"mode": "new"}})
    unknown = gateway_cli(config, "flags", "delete", "nope")
    assert unknown.returncode == 2
    assert "unknown flag 'nope'" in unknown.stderr
    undeclared = gateway_cli(config, "flags", "reset", "retired-thing")
    assert undeclared.returncode == 2
    assert "not declared by any route" in undeclared.stderr
    assert "gateway flags delete retired-thing" in undeclared.stderr
    # Nothing was written by the refusals.
    stored = json.loads((tmp_path / "var" / "flags.json").read_text())
    assert stored == {
        "version": 1,
        "kill_switch": False,
        "flags": {"retired-thing": {"mode": "new"}},
    }
