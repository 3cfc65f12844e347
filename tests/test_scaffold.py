"""``gateway scaffold``: from a Flask rule to a typed FastAPI stub, a route in shadow mode and a
parity test; idempotent, and with nothing written when anything is wrong."""

from __future__ import annotations

import ast
import os
import re
import stat
import textwrap
from pathlib import Path

import pytest
from demo_copy import copy_demo, run_gateway
from flask import Flask
from support import REPO
from werkzeug.routing import BaseConverter

from gateway import config_file
from gateway.auth.policy import Policy
from gateway.errors import ConfigError
from gateway.scaffold.config_edit import add_scaffolded_route, route_flag_name
from gateway.scaffold.models import model_source
from gateway.scaffold.render import Names, add_router, router_module, routers_init
from gateway.scaffold.rules import RuleNotFound, convert_variable, find_flask_route
from gateway.schema_infer import infer_schema


class TwoLetters(BaseConverter):
    regex = "[a-z]{2}"


def converter_app() -> Flask:
    app = Flask(__name__)
    app.url_map.converters["lang"] = TwoLetters
    rules = [
        "/books/<int:book_id>",
        "/pages/<int(min=1, max=500):page>",
        "/prices/<float:amount>",
        "/orders/<uuid:order_id>",
        "/files/<path:name>",
        "/codes/<string(length=2):code>",
        "/users/<string(minlength=3, maxlength=8):login>",
        "/tags/<tag>",
        "/sort/<any(asc, desc):order>",
        "/i18n/<lang:lang>",
    ]
    for number, rule in enumerate(rules):
        app.add_url_rule(rule, f"view{number}", lambda **_: "")
    return app


@pytest.mark.parametrize(
    ("rule", "fastapi_path", "annotation"),
    [
        ("/books/<int:book_id>", "/books/{book_id}", "int"),
        (
            "/pages/<int(min=1, max=500):page>",
            "/pages/{page}",
            "Annotated[int, Path(ge=1, le=500)]",
        ),
        ("/prices/<float:amount>", "/prices/{amount}", "float"),
        ("/orders/<uuid:order_id>", "/orders/{order_id}", "uuid.UUID"),
        ("/files/<path:name>", "/files/{name:path}", "str"),
        (
            "/codes/<string(length=2):code>",
            "/codes/{code}",
            "Annotated[str, Path(min_length=2, max_length=2)]",
        ),
        (
            "/users/<string(minlength=3, maxlength=8):login>",
            "/users/{login}",
            "Annotated[str, Path(min_length=3, max_length=8)]",
        ),
        ("/tags/<tag>", "/tags/{tag}", "str"),
        ("/sort/<any(asc, desc):order>", "/sort/{order}", 'Literal["asc", "desc"]'),
        ("/i18n/<lang:lang>", "/i18n/{lang}", "str"),  # a custom converter: the handler decides
    ],
)
def test_werkzeug_converters_become_fastapi_types(
    rule: str, fastapi_path: str, annotation: str
) -> None:
    route = find_flask_route(converter_app(), "GET", rule)
    assert route.fastapi_path == fastapi_path
    assert [param.annotation for param in route.params] == [annotation]


def test_a_gateway_template_finds_the_same_rule() -> None:
    route = find_flask_route(converter_app(), "get", "/books/{book_id:int}")
    assert (route.method, route.rule, route.template) == (
        "GET",
        "/books/<int:book_id>",
        "/books/{book_id:int}",
    )


def test_an_unknown_rule_names_the_nearest_ones() -> None:
    with pytest.raises(
        RuleNotFound,
        match=r"no rule for 'GET /book/<int:book_id>'; did you mean 'GET /books/<int:book_id>'",
    ):
        find_flask_route(converter_app(), "GET", "/book/<int:book_id>")
    with pytest.raises(RuleNotFound, match="no rule for 'POST /books/1'"):
        find_flask_route(converter_app(), "POST", "/books/1")


def test_positional_converter_arguments_count_too() -> None:
    param = convert_variable(Flask(__name__).url_map.converters, "code", "string", "2")
    assert param.annotation == "Annotated[str, Path(min_length=2)]"


def test_flag_names_come_from_the_route() -> None:
    assert route_flag_name("GET", "/admin/users") == "admin-users"
    assert route_flag_name("POST", "/api/books/{book_id:int}") == "post-api-books-book-id"


# -- rendered sources ----------------------------------------------------------------------------


def demo_route(method: str = "GET", rule: str = "/admin/users"):  # type: ignore[no-untyped-def]
    import legacy_flask

    app = legacy_flask.create_app(database=":memory:")
    return find_flask_route(app, method, rule)


NAMES = Names("admin", "new_services.admin", "get_admin_users")


def test_router_module_carries_types_docstring_identity_and_model() -> None:
    route = demo_route("GET", "/api/books/<int:book_id>")
    bodies = [
        {"id": 1, "title": "Dune", "tags": ["sf"], "class": "x"},
        {"id": 2, "title": "Emma", "tags": [], "note": None, "class": "y"},
    ]
    model = model_source(infer_schema(bodies), "GetBookResponse")
    admin_only = Policy("/x", frozenset(), "roles", frozenset({"admin"}))
    source = router_module(NAMES, route, admin_only, model, 2)
    ast.parse(source)  # valid Python
    assert (
        "async def get_book(\n    book_id: int,\n"
        '    identity: Annotated[Identity, Depends(require_roles("admin"))],\n'
        ") -> GetBookResponse:"
    ) in source
    assert '@router.get("/api/books/{book_id}", response_class=LegacyJSONResponse)' in source
    assert "legacy_flask.books:get_book" in source
    assert "inferred from 2 recorded sample(s)" in source
    assert "class GetBookResponse(BaseModel):" in source
    assert "    note: None = None" in source
    assert '    class_: str = Field(alias="class")' in source
    assert "    tags: list[str]" in source


def test_a_public_route_gets_no_identity_and_no_model_without_samples() -> None:
    source = router_module(
        NAMES, demo_route("GET", "/api/books"), Policy("/", frozenset(), "public"), None, 0
    )
    namespace: dict[str, object] = {}
    assert "Depends" not in source
    assert "No samples were recorded" in source
    assert "async def list_books() :" not in source
    ast.parse(source)
    del namespace


def test_nested_samples_give_nested_models() -> None:
    model = model_source(
        infer_schema([{"users": [{"username": "alice", "roles": ["admin"]}]}]), "ListUsersResponse"
    )
    assert model.annotation == "ListUsersResponse"
    assert model.source == textwrap.dedent(
        """\
        class User(BaseModel):
            username: str
            roles: list[str]


        class ListUsersResponse(BaseModel):
            users: list[User]"""
    )


def test_routers_are_appended_with_sorted_imports() -> None:
    first = add_router(routers_init(NAMES), NAMES)
    second = add_router(first, Names("admin", "new_services.admin", "delete_admin_user"))
    assert (
        "from new_services.admin.routes import delete_admin_user\n"
        "from new_services.admin.routes import get_admin_users\n"
    ) in second
    assert "    get_admin_users.router,\n    delete_admin_user.router,\n]" in second


# -- the config edit, on text --------------------------------------------------------------------


def test_config_edit_keeps_every_comment_and_adds_service_and_route() -> None:
    text = (REPO / "gateway.toml").read_text()
    edited = add_scaffolded_route(
        text,
        service="admin",
        service_app="new_services.admin:create_app",
        method="GET",
        template="/admin/users",
        flag="admin-users",
    )
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    kept = [line for line in edited.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in kept if line in comments] == comments  # all there, same order
    assert (
        '[services.accounts]\napp = "new_services.accounts:create_app"\n\n'
        '[services.admin]\napp = "new_services.admin:create_app"\n\n'
        "# Authentication happens once" in edited
    )
    assert edited.endswith(
        '[[routes]]\npath = "/admin/users"\nmethods = ["GET"]\nbackend = "admin"\n'
        'fallback = true\n\n[routes.flag]\nname = "admin-users"\nmode = "shadow"\n\n'
        '[routes.shadow]\nprimary = "legacy" # legacy answers the client; the service is compared\n'
    )
    assert edited.startswith(text[: text.index("[services.accounts]")])


# -- the command: every mistake exits 2 and writes nothing ----------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".log", ".db")
    }


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return copy_demo(tmp_path)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["GET", "/admin/user", "--service", "admin"],
            "no rule for 'GET /admin/user'; did you mean 'GET /admin/users'",
        ),
        (["GET", "/admin/users", "--service", "Admin-Tools"], "service name 'Admin-Tools' must be"),
        (["GET", "/admin/users", "--service", "legacy"], "service name 'legacy' must be"),
        (
            ["GET", "/admin/users", "--service", "catalog"],
            "service 'catalog' is already registered",
        ),
        (
            ["GET", "/api/me", "--service", "admin"],
            "GET /api/me is already routed to 'accounts'",
        ),
    ],
)
def test_mistakes_exit_2_and_change_nothing(demo: Path, args: list[str], message: str) -> None:
    before = tree(demo.parent)
    result = run_gateway(demo, "scaffold", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert tree(demo.parent) == before


@pytest.mark.e2e
def test_an_unregistered_package_of_that_name_is_a_clash(demo: Path) -> None:
    (demo.parent / "new_services" / "admin").mkdir()
    result = run_gateway(demo, "scaffold", "GET", "/admin/users", "--service", "admin")
    assert result.returncode == 2
    assert "new_services/admin already exists but no [services.admin] names it" in result.stderr


@pytest.mark.e2e
def test_an_unparsable_config_is_named_by_file_and_line(demo: Path) -> None:
    demo.write_text(demo.read_text() + "\n[routes\n")
    before = tree(demo.parent)
    result = run_gateway(demo, "scaffold", "GET", "/admin/users", "--service", "admin")
    assert result.returncode == 2
    lines = demo.read_text().count("\n")
    assert f"{demo}:{lines}:" in result.stderr
    assert "not valid TOML" in result.stderr
    assert tree(demo.parent) == before


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_a_read_only_config_stops_everything(demo: Path) -> None:
    demo.chmod(0o444)
    before = tree(demo.parent)
    result = run_gateway(demo, "scaffold", "GET", "/admin/users", "--service", "admin")
    assert result.returncode == 2
    assert (
        "the file is read-only for this user (mode -r--r--r--, 444); nothing was changed"
        in result.stderr
    )
    assert tree(demo.parent) == before
    assert stat.S_IMODE(demo.stat().st_mode) == 0o444


# -- gateway.config_file -------------------------------------------------------------------------


def test_check_writable_names_the_mode_of_a_read_only_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[legacy]\n")
    config.chmod(0o444)
    # Root may write anything; ask as an ordinary user would be answered.
    monkeypatch.setattr(config_file.os, "access", lambda path, mode: Path(path) != config)
    with pytest.raises(ConfigError) as caught:
        config_file.check_writable(config)
    assert caught.value.problems == [
        f"{config}: the file is read-only for this user (mode -r--r--r--, 444); nothing was changed"
    ]


def test_stage_config_refuses_an_invalid_edit_naming_the_real_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[legacy]\napp = "x:y"\n')
    with pytest.raises(ConfigError) as caught:
        config_file.stage_config(config, '[legacy]\napp = "x:y"\nthreads = 0\n')
    assert caught.value.problems[0].startswith(f"{config}: legacy.threads: ")
    assert caught.value.problems[-1].endswith(
        "the edit would make the config invalid; nothing was changed"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.toml"]  # no temporary left


def test_replace_config_keeps_the_mode(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("old\n")
    config.chmod(0o640)
    config_file.write_file(config, "new\n")
    assert config.read_text() == "new\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.toml"]


def test_parse_config_names_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[legacy]\napp = "x:y"\nthreads = = 3\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}:3:\d+: not valid TOML: "):
        config_file.parse_config(config)
