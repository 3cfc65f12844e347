"""End to end, issue 13's scenario: migrate the demo's ``GET /admin/users`` to a new service with
the migration kit only, through real processes on a temporary copy of the demo.

scaffold → check → write the handler with the parity helpers → record samples through a running
``gateway serve`` → ``gateway parity`` passes → a planted difference fails it with its JSON
Pointer (and fails the scaffold's generated test) → shadow traffic with the difference → flag to
``new`` → ``gateway retire`` refuses on the mismatches → a fresh gateway, and it retires → the
Flask view deleted, the index page (``url_for('admin.list_users')``) still renders → parity of
the retired route says there is nothing left to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from demo_copy import copy_demo, delete_view, record_while, run_gateway
from support import REPO, GatewayProcess, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUTE = "GET /admin/users"
GATEWAY = (sys.executable, "-m", "gateway.cli")
GENERATED_TEST = "tests/test_parity_get_admin_users.py"
SAMPLES = 3
#: What the legacy view answers: both demo users, sorted by name, with their sorted roles.
USERS = {
    "users": [{"roles": ["admin"], "username": "alice"}, {"roles": ["user"], "username": "bob"}]
}

#: The handler a developer writes into the scaffolded stub: the legacy view's query on the same
#: database, answered through the parity helpers (README, "Migrate one endpoint in 15 minutes").
HANDLER = '''\
"""GET /admin/users, moved from the legacy view to the admin service."""

from __future__ import annotations

from contextlib import closing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from gateway.context import Identity
from gateway.fastapi_support import require_roles
from gateway.parity import LegacyJSONResponse
from legacy_flask.auth import parse_roles
from legacy_flask.db import connect, resolve_database_path

router = APIRouter()


@router.get("/admin/users", response_class=LegacyJSONResponse)
def list_users(
    request: Request, identity: Annotated[Identity, Depends(require_roles("admin"))]
) -> dict[str, Any]:
    """Every user and their roles, by username."""
    database = resolve_database_path(request.app.state.options.get("database"))
    with closing(connect(database)) as db:
        rows = db.execute("SELECT username, roles FROM users ORDER BY username").fetchall()
    users = [
        {"username": row["username"], "roles": sorted(parse_roles(row["roles"]))} for row in rows
    ]
    return {"users": users}
'''
#: The same handler with one changed field: every user name capitalised.
PLANTED = HANDLER.replace('{"username": row["username"],', '{"username": row["username"].title(),')


@contextmanager
def signed_in_admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A client of the running gateway with alice's (role admin) Flask session cookie."""
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        login = client.post("/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200, login.text
        yield client


def record_while_admin_calls(gateway: GatewayProcess, config: Path) -> tuple[int, str]:
    """``gateway record ROUTE --samples N`` while alice calls the route, until it ends."""
    with signed_in_admin(gateway) as client:

        def call(number: int) -> None:
            answer = client.get("/admin/users")
            assert answer.status_code == 200, answer.text
            assert answer.json() == USERS
            assert answer.headers["x-gateway-backend"] == "legacy"  # shadow: legacy answers

        return record_while(config, ROUTE, SAMPLES, call)


def shadow_counts(client: httpx.Client) -> dict[str, int]:
    """The running workers' shadow results for the route (``/_gateway/api/shadow``)."""
    routes: dict[str, dict[str, int]] = client.get("/_gateway/api/shadow").json()["routes"]
    return routes.get(ROUTE, {})


def run_generated_test(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The scaffold's parity test module under pytest, in the copy, as its developer runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args, GENERATED_TEST],
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_migrate_admin_users_from_scaffold_to_retirement(tmp_path: Path) -> None:
    config = copy_demo(tmp_path, flags={})  # an empty store: the config's flag defaults apply
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the copy's own pytest root
    handler = tmp_path / "new_services" / "admin" / "routes" / "get_admin_users.py"

    # 1. Scaffold, from the Flask rule; the config is valid at once.
    scaffold = run_gateway(config, "scaffold", "GET", "/admin/users", "--service", "admin")
    assert scaffold.returncode == 0, scaffold.stderr
    assert "scaffolded GET /admin/users (Flask view legacy_flask.admin:list_users)" in (
        scaffold.stdout
    )
    assert "flag admin-users starts in shadow mode" in scaffold.stdout
    assert "501" in handler.read_text()  # the stub, until it is written
    check = run_gateway(config, "check")
    assert check.returncode == 0, check.stderr
    assert "ok: 7 routes (7 to services), 3 services, 15 legacy rules" in check.stdout

    # 2. The handler, and the service's database option (as the catalog's).
    handler.write_text(HANDLER)
    service = 'app = "new_services.admin:create_app"\n'
    options = f"[services.admin.options]\ndatabase = {json.dumps(str(tmp_path / 'bookstore.db'))}\n"
    assert service in config.read_text()
    config.write_text(config.read_text().replace(service, service + options))
    check = run_gateway(config, "check")
    assert check.returncode == 0, check.stderr

    # 3. Record real requests through a running gateway; shadow traffic agrees meanwhile.
    with GatewayProcess(config) as gateway:
        status, output = record_while_admin_calls(gateway, config)
        assert status == 0, output
        samples = tmp_path / "var" / "samples" / "get-admin-users.jsonl"
        assert f"{SAMPLES} samples of GET /admin/users in {samples}" in output
        with signed_in_admin(gateway) as client:
            counts = eventually(lambda: shadow_counts(client).get("matches"), limit=30)
            assert counts, shadow_counts(client)
            assert shadow_counts(client).get("mismatches", 0) == 0

    # 4. Parity, offline: passes; a planted difference fails it, naming its JSON Pointer.
    parity = run_gateway(config, "parity", ROUTE)
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert parity.stdout.count("ok (legacy 200, admin 200)") == SAMPLES
    assert parity.stdout.rstrip().endswith(f"passed: {SAMPLES} ok")

    handler.write_text(PLANTED)
    planted = run_gateway(config, "parity", ROUTE)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert '/users/0/username: changed: legacy "alice", admin "Alice"' in planted.stdout
    assert '/users/1/username: changed: legacy "bob", admin "Bob"' in planted.stdout
    assert planted.stdout.rstrip().endswith(f"FAILED: {SAMPLES} mismatch")

    # 5. The scaffold's generated parity test: fails on the difference, passes without it.
    failing = run_generated_test(config)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"{SAMPLES} failed" in failing.stdout
    assert '/users/0/username: changed: legacy "alice", admin "Alice"' in failing.stdout

    # 6. Shadow traffic with the difference; then the handler restored and the flag at new:
    #    retire still refuses, on the running gateway's mismatches.
    with GatewayProcess(config) as gateway, signed_in_admin(gateway) as client:
        for _ in range(SAMPLES):
            answer = client.get("/admin/users")
            assert answer.json() == USERS  # legacy still answers the client
        assert eventually(lambda: shadow_counts(client).get("mismatches"), limit=30)

        handler.write_text(HANDLER)
        passing = run_generated_test(config)
        assert passing.returncode == 0, passing.stdout + passing.stderr
        assert f"{SAMPLES} passed" in passing.stdout

        flags = run_gateway(config, "flags", "set", "admin-users", "--mode", "new")
        assert flags.returncode == 0, flags.stderr
        before = config.read_text()
        refused = eventually(
            lambda: (
                (r := run_gateway(config, "retire", ROUTE)).returncode == 1
                and "mismatch" in r.stderr
                and r
            ),
            limit=30,
        )
        assert refused, "retire did not refuse on the shadow mismatches"
        assert "gateway retire: refused: GET /admin/users is not ready" in refused.stderr
        assert "shadow traffic found" in refused.stderr
        assert "not 'new'" not in refused.stderr  # the flag is no longer what is missing
        assert config.read_text() == before

    # 7. A fresh gateway with the restored handler: the service answers, and retire succeeds.
    with GatewayProcess(config) as gateway, signed_in_admin(gateway) as client:
        answer = client.get("/admin/users")
        assert answer.status_code == 200
        assert answer.headers["x-gateway-backend"] == "admin"
        assert answer.json() == USERS
        done = eventually(
            lambda: (r := run_gateway(config, "retire", ROUTE)).returncode == 0 and r, limit=30
        )
    assert done, "retire did not succeed on a clean run"
    assert "retired GET /admin/users: service admin serves it alone" in done.stdout
    assert "flag admin-users removed from the config and from the flag store" in done.stdout
    assert "Flask view legacy_flask.admin:list_users (legacy_flask/admin.py:" in done.stdout
    retired = config.read_text()
    assert '[routes.retired]\nendpoint = "admin.list_users"\nrule = "/admin/users"' in retired
    assert "admin-users" not in retired  # nor the scaffold's comment that named the flag
    assert "# GET /admin/users: scaffolded onto admin (`gateway scaffold`), then retired" in retired

    # 8. The view deleted: check passes, the index page still builds its link, the service
    #    serves the route alone.
    delete_view(config, "admin", '@bp.get("/users")')
    check = run_gateway(config, "check")
    assert check.returncode == 0, check.stderr
    assert "14 legacy rules" in check.stdout
    with GatewayProcess(config) as gateway, signed_in_admin(gateway) as client:
        index = client.get("/")
        assert index.status_code == 200, index.text
        assert 'href="/admin/users"' in index.text
        answer = client.get("/admin/users")
        assert (answer.status_code, answer.headers["x-gateway-backend"]) == (200, "admin")
        assert answer.json() == USERS
    routes = run_gateway(config, "routes", "--json")
    rows = [row for row in json.loads(routes.stdout) if row["path"] == "/admin/users"]
    assert [(row["status"], row["served_by"]) for row in rows] == [("retired", "admin")]

    # 9. Nothing is left to compare: parity says so, and the generated test (and the plugin's
    #    tests for the route's samples) give way to one skip saying the test can go.
    parity = run_gateway(config, "parity", ROUTE)
    assert parity.returncode == 2, parity.stdout + parity.stderr
    assert "GET /admin/users is retired: admin serves it alone" in parity.stderr
    leftover = run_generated_test(config, "-p", "gateway.pytest_plugin", "--gateway-parity")
    assert leftover.returncode == 0, leftover.stdout + leftover.stderr
    assert "1 skipped" in leftover.stdout
    assert "passed" not in leftover.stdout
    assert "(delete its samples and its parity test)" in leftover.stdout
