"""``gateway retire``: refuses without the evidence, then serves the route by its service alone,
keeps ``url_for`` of the deleted view building, and ``gateway check`` names a dangling one.

The demo's ``GET /api/me`` is the subject: its flag starts in shadow mode, and the accounts
service answers with one deliberate difference (``/display_name``), so shadow traffic finds a
mismatch until the flag moves to ``new`` on a freshly started gateway.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest
from demo_copy import copy_demo, delete_view, run_gateway
from flask import Flask, url_for
from support import GatewayProcess, eventually

from gateway.flask_support import add_retired_rules
from gateway.retire import retire_edit
from gateway.scaffold.config_edit import add_scaffolded_route
from gateway.settings import Settings
from gateway.url_for_check import url_for_problems

API_KEY = {"X-API-Key": "demo-reporting-key-not-a-secret"}  # the demo's documented key
ADMIN = {"Authorization": ""}
ME_VIEW = '@bp.get("/api/me")'


def admin_token(gateway: GatewayProcess) -> dict[str, str]:
    response = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": "alice", "password": "wonderland"}
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def shadow_counts(gateway: GatewayProcess, route: str) -> dict[str, int]:
    response = httpx.get(f"{gateway.base_url}/_gateway/api/shadow", headers=admin_token(gateway))
    routes: dict[str, dict[str, int]] = response.json()["routes"]
    return routes.get(route, {})


def flag_store(config: Path) -> dict[str, object]:
    flags: dict[str, object] = json.loads((config.parent / "var" / "flags.json").read_text())
    return flags


@pytest.mark.e2e
@pytest.mark.slow
def test_retire_refuses_on_mismatches_then_retires_and_url_for_still_builds(
    tmp_path: Path,
) -> None:
    config = copy_demo(tmp_path, flags={})  # the demo's defaults: /api/me in shadow mode
    before = config.read_text()
    with GatewayProcess(config) as gateway:
        assert httpx.get(f"{gateway.base_url}/api/me", headers=API_KEY).status_code == 200
        assert eventually(lambda: shadow_counts(gateway, "GET /api/me").get("mismatches"))
        # The worker publishes its report within a second; retire reads it from the store.
        refused = eventually(
            lambda: (
                (r := run_gateway(config, "retire", "GET /api/me")).returncode == 1
                and "mismatch" in r.stderr
                and r
            )
        )
    assert refused, "retire did not refuse with the shadow mismatch"
    assert "flag accounts-me is at mode 'shadow', not 'new'" in refused.stderr
    assert "shadow traffic found 1 mismatch" in refused.stderr
    assert config.read_text() == before  # nothing written

    # Nothing running: no record to judge by.
    no_workers = run_gateway(config, "retire", "GET /api/me")
    assert no_workers.returncode == 1
    assert "no running gateway reports" in no_workers.stderr

    assert run_gateway(config, "flags", "set", "accounts-me", "--mode", "new").returncode == 0
    with GatewayProcess(config) as gateway:
        served = httpx.get(f"{gateway.base_url}/api/me", headers=API_KEY)
        assert served.headers["x-gateway-backend"] == "accounts"
        done = eventually(
            lambda: (r := run_gateway(config, "retire", "GET /api/me")).returncode == 0 and r
        )
    assert done, "retire did not succeed once the flag was new and shadow agreed"
    out = done.stdout
    assert "retired GET /api/me: service accounts serves it alone" in out
    assert "flag accounts-me removed from the config and from the flag store" in out
    assert "Flask view legacy_flask.account:me (legacy_flask/account.py:" in out
    assert "tests/" not in out or "tests that reference it" in out
    text = config.read_text()
    assert '[routes.retired]\nendpoint = "account.me"\nrule = "/api/me"' in text
    assert "accounts-me" not in text
    # The comment introducing the next route is still there, above it.
    assert "# New-only: stores a preference in the legacy Flask session" in text
    assert "accounts-me" not in flag_store(config)["flags"]  # type: ignore[operator]

    # Twice: nothing to do.
    again = run_gateway(config, "retire", "GET /api/me")
    assert again.returncode == 0
    assert "nothing to do: GET /api/me is already retired" in again.stdout

    delete_view(config, "account", ME_VIEW)
    check = run_gateway(config, "check")
    assert check.returncode == 0, check.stderr
    with GatewayProcess(config) as gateway:
        index = httpx.get(f"{gateway.base_url}/")
        assert index.status_code == 200, index.text
        assert 'href="/api/me"' in index.text
        me = httpx.get(f"{gateway.base_url}/api/me", headers=API_KEY)
        assert me.status_code == 200
        assert me.headers["x-gateway-backend"] == "accounts"
    routes = run_gateway(config, "routes", "--json")
    rows = [row for row in json.loads(routes.stdout) if row["path"] == "/api/me"]
    assert [(row["methods"], row["status"], row["served_by"]) for row in rows] == [
        (["GET"], "retired", "accounts")
    ]


@pytest.mark.e2e
def test_check_names_the_template_line_of_a_dangling_url_for(tmp_path: Path) -> None:
    config = copy_demo(tmp_path)
    delete_view(config, "account", ME_VIEW)
    result = run_gateway(config, "check")
    assert result.returncode == 2
    assert (
        "legacy_flask/templates/index.html:8: url_for('account.me'): no rule builds this "
        "endpoint" in result.stderr
    )


@pytest.mark.e2e
def test_check_names_the_module_line_of_a_dangling_url_for(tmp_path: Path) -> None:
    config = copy_demo(tmp_path)
    delete_view(config, "books", '@bp.get("/api/books/<int:book_id>")')
    result = run_gateway(config, "check")
    assert result.returncode == 2
    assert "legacy_flask/books.py:" in result.stderr
    assert "url_for('books.get_book')" in result.stderr
    assert "legacy_flask/templates/index.html:7: url_for('books.get_book')" in result.stderr


@pytest.mark.e2e
def test_retire_of_an_unknown_route_exits_2_with_near_matches(tmp_path: Path) -> None:
    config = copy_demo(tmp_path)
    result = run_gateway(config, "retire", "GET /api/mee")
    assert result.returncode == 2
    assert "no route 'GET /api/mee'" in result.stderr
    assert "'GET /api/me'" in result.stderr


@pytest.mark.e2e
def test_retire_force_retires_without_evidence_and_says_so(tmp_path: Path) -> None:
    config = copy_demo(tmp_path, flags={})
    result = run_gateway(config, "retire", "GET /api/me", "--force")
    assert result.returncode == 0, result.stderr
    assert "warning: --force: flag accounts-me is at mode 'shadow'" in result.stdout
    assert "[routes.retired]" in config.read_text()
    assert run_gateway(config, "check").returncode == 0


# -- in-process ----------------------------------------------------------------------------------


def retired_settings(**route: object) -> Settings:
    return Settings.model_validate(
        {
            "legacy": {"app": "legacy:app"},
            "services": {"admin": {"app": "admin:app"}},
            "routes": [
                {
                    "path": "/admin/users",
                    "methods": ["GET"],
                    "backend": "admin",
                    "retired": {"endpoint": "admin.list_users", "rule": "/admin/users"},
                    **route,
                }
            ],
        }
    )


def test_add_retired_rules_keeps_url_for_building_and_never_matches() -> None:
    app = Flask(__name__)
    assert add_retired_rules(app, retired_settings()) == ["admin.list_users"]
    with app.test_request_context():
        assert url_for("admin.list_users") == "/admin/users"
        assert url_for("admin.list_users", _external=True) == "http://localhost/admin/users"
    assert app.test_client().get("/admin/users").status_code == 404  # build-only


def test_add_retired_rules_leaves_a_live_view_alone() -> None:
    app = Flask(__name__)
    app.add_url_rule("/admin/users", "admin.list_users", lambda: "live")
    assert add_retired_rules(app, retired_settings()) == []
    assert app.test_client().get("/admin/users").text == "live"


def test_add_retired_rules_reads_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[legacy]\napp = "legacy:app"\n[services.admin]\napp = "admin:app"\n'
        '[[routes]]\npath = "/admin/users"\nmethods = ["GET"]\nbackend = "admin"\n'
        '[routes.retired]\nendpoint = "admin.list_users"\nrule = "/admin/users"\n'
    )
    app = Flask(__name__)
    add_retired_rules(app, config)
    with app.test_request_context():
        assert url_for("admin.list_users") == "/admin/users"


def test_a_retired_route_cannot_keep_a_fallback() -> None:
    with pytest.raises(ValueError, match=r"routes\[0\]\.retired: a retired route is served"):
        retired_settings(fallback=True)


RETIRE_TEXT = """\
[[routes]]
path = "/a"   # the first
methods = ["GET"]
backend = "svc"
flag = "a"
timeout = 2.0
fallback = true
[routes.breaker]
failures = 5
# a note about the breaker

# The second route: kept as it is.
[[routes]]
path = "/b"
methods = ["GET"]
backend = "svc"
"""


def test_retire_edit_keeps_comments_and_the_next_sections_introduction() -> None:
    edited = retire_edit(RETIRE_TEXT, 0, endpoint="a.view", rule="/a", flag_heir=None)
    assert edited == (
        '[[routes]]\npath = "/a"   # the first\nmethods = ["GET"]\nbackend = "svc"\n'
        "timeout = 2.0\n\n"
        '[routes.retired]\nendpoint = "a.view"\nrule = "/a"\n\n'
        "# The second route: kept as it is.\n"
        '[[routes]]\npath = "/b"\nmethods = ["GET"]\nbackend = "svc"\n'
    )


def test_retiring_a_scaffolded_route_rewrites_the_scaffolds_comment() -> None:
    text = add_scaffolded_route(
        '[services.svc]\napp = "svc:app"\n\n[[routes]]\npath = "/a"\nbackend = "svc"\n',
        service="admin",
        service_app="admin:create_app",
        method="GET",
        template="/admin/users",
        flag="admin-users",
    )
    assert "# GET /admin/users: scaffolded onto admin (`gateway scaffold`). Shadow mode" in text

    edited = retire_edit(text, 1, endpoint="admin.list_users", rule="/admin/users", flag_heir=None)

    assert edited.endswith(
        'backend = "svc"\n\n'
        "# GET /admin/users: scaffolded onto admin (`gateway scaffold`), then retired\n"
        "# (`gateway retire`): admin serves it alone; [routes.retired] keeps url_for building.\n"
        '[[routes]]\npath = "/admin/users"\nmethods = ["GET"]\nbackend = "admin"\n\n'
        '[routes.retired]\nendpoint = "admin.list_users"\nrule = "/admin/users"\n'
    )


SHARED_FLAG_TEXT = """\
[[routes]]
path = "/a"
methods = ["GET"]
backend = "svc"
[routes.flag]
name = "a"
mode = "new"

[[routes]]
path = "/b"
methods = ["GET"]
backend = "svc"
flag = "a"   # declared on /a
"""


def test_retiring_the_route_that_declares_a_shared_flag_moves_the_declaration() -> None:
    edited = retire_edit(SHARED_FLAG_TEXT, 0, endpoint="a.view", rule="/a", flag_heir=1)
    doc = tomllib.loads(edited)
    assert "flag" not in doc["routes"][0]
    assert doc["routes"][0]["retired"] == {"endpoint": "a.view", "rule": "/a"}
    assert doc["routes"][1]["flag"] == {"name": "a", "mode": "new"}
    # What the gateway loads: the flag still declared once, its default unchanged.
    settings = Settings.model_validate(
        {"legacy": {"app": "legacy:app"}, "services": {"svc": {"app": "svc:app"}}, **doc}
    )
    assert settings.flag_defaults()["a"].mode == "new"
    assert settings.routes[1].flag == "a"


def test_an_app_named_after_no_module_is_not_blamed_for_the_working_directorys_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Flask("legacy")``: Flask takes the working directory as its root; the project's other
    code there (tests, other apps) is not this app's, so its url_for calls are not checked."""
    (tmp_path / "other_app.py").write_text("from flask import url_for\nurl_for('elsewhere')\n")
    monkeypatch.chdir(tmp_path)
    app = Flask("no_module_of_this_name")
    assert Path(app.root_path) == tmp_path
    assert url_for_problems(app) == []


def test_url_for_problems_checks_constant_endpoints_in_templates_and_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text(
        "{{ url_for('live') }}\n{{ url_for('.relative') }}\n{{ url_for(name) }}\n"
        "<a href=\"{{ url_for('gone', x=1) }}\">\n"
    )
    (tmp_path / "views.py").write_text(
        "from flask import url_for, helpers\nurl_for('gone')\nhelpers.url_for('live')\n"
    )
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "lib.py").write_text("url_for('not.app.code')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # `views` is a module: its folder is app code
    app = Flask("views", root_path=str(tmp_path))
    app.add_url_rule("/live", "live", lambda: "")
    problems = url_for_problems(app)
    assert [problem.split(": no rule")[0] for problem in problems] == [
        "templates/page.html:4: url_for('gone')",
        "views.py:2: url_for('gone')",
    ]
    add_retired_rules(app, retired_settings(retired={"endpoint": "gone", "rule": "/gone"}))
    assert url_for_problems(app) == []
