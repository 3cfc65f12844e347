"""The ``/_gateway/`` endpoints (``gateway.admin``) called directly, as the dispatcher calls them:
with the request's facts in the scope and no access policy in front."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from support import Exchange, call, http_scope

from gateway.admin import AdminApp, GatewayState
from gateway.admin_models import FlagChange, FlagView, NamedFlag, RouteRow
from gateway.context import ANONYMOUS, FACTS_KEY, Identity, RequestFacts
from gateway.flags.model import FlagSpec, FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore, StoreUnavailable
from gateway.inventory import Inventory, InventoryRow
from gateway.storage.memory import MemoryStorage

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"admin"}), "session")
BOB = Identity("bob", frozenset({"user"}), "jwt")
ROWS = (
    InventoryRow("/api/books", ("GET",), "catalog", "migrated", "books.list", ("catalog",), "cb"),
    InventoryRow("/admin/users", ("GET",), "legacy", "legacy", "admin.users", ()),
)
#: Every path the document must list, with its operations: the public contract.
OPERATIONS = {
    "/_gateway/health": {"get"},
    "/_gateway/ready": {"get"},
    "/_gateway/routes": {"get"},
    "/_gateway/openapi.json": {"get"},
    "/_gateway/api/flags": {"get", "delete"},
    "/_gateway/api/flags/{name}": {"get", "put", "delete"},
    "/_gateway/api/kill-switch": {"get", "put"},
    "/_gateway/api/shadow": {"get"},
    "/_gateway/api/breakers": {"get"},
}
GET_PATHS = [
    "/_gateway/health",
    "/_gateway/ready",
    "/_gateway/routes",
    "/_gateway/openapi.json",
    "/_gateway/api/flags",
    "/_gateway/api/flags/catalog-books",
    "/_gateway/api/kill-switch",
    "/_gateway/api/shadow",
    "/_gateway/api/breakers",
]


class DownStore(FlagStore):
    def __init__(self) -> None:
        super().__init__(MemoryStorage())

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        raise StoreUnavailable("redis is down")


def build(store: FlagStore | None = None) -> AdminApp:
    flags = FlagRuntime(
        defaults={"catalog-books": FlagSpec(mode="canary", percentage=50)},
        store=store or FlagStore(MemoryStorage()),
    )
    flags.apply(FlagState())  # the store has been read (what start() does)
    inventory = Inventory(rows=ROWS, legacy_routes=(), plans=(), service_methods={})
    return AdminApp(state=GatewayState(ready=True), inventory=inventory, flags=flags)


@pytest.fixture
def admin() -> AdminApp:
    return build()


async def ask(
    admin: AdminApp,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    identity: Identity = ALICE,
    content_type: bytes | None = b"application/json",
) -> tuple[Exchange, RequestFacts]:
    headers = [(b"content-type", content_type)] if body is not None and content_type else []
    scope = http_scope(path, method, headers)
    facts = RequestFacts(request_id="req-1", path=path, method=method, identity=identity)
    scope[FACTS_KEY] = facts
    return await call(admin, scope, [body] if body is not None else []), facts


def error_of(exchange: Exchange) -> tuple[int, str]:
    payload = json.loads(exchange.body)
    assert payload["request_id"] == "req-1"
    assert payload["error"]["status"] == exchange.status
    assert exchange.headers[b"content-type"] == b"application/json"
    return exchange.status, payload["error"]["message"]


async def test_the_document_is_generated_and_lists_every_endpoint(admin: AdminApp) -> None:
    exchange, _ = await ask(admin, "GET", "/_gateway/openapi.json")
    assert exchange.status == 200
    document = json.loads(exchange.body)
    assert document["openapi"].startswith("3.1")  # FastAPI's, not the hand-written 3.0.3
    assert {path: set(ops) for path, ops in document["paths"].items()} == OPERATIONS
    schemas = document["components"]["schemas"]
    # The bodies come from the pydantic models; FastAPI's 422 is gone with its schemas.
    assert {"FlagChange", "KillSwitch", "NamedFlag", "FlagsView", "ErrorBody"} <= set(schemas)
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)
    assert schemas["FlagChange"]["additionalProperties"] is False
    assert all("default" not in field for field in schemas["FlagChange"]["properties"].values())
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses
            statuses = {int(status) for status in responses}
            expected = {200, 400}
            if path not in ("/_gateway/health", "/_gateway/ready"):
                expected |= {401, 403}
                assert {"bearer": []} in operation["security"]
            if path == "/_gateway/ready":
                expected.add(503)
            if path == "/_gateway/api/flags/{name}":
                expected.add(404)
            if method == "put":
                expected |= {413, 503}
            if method == "delete":
                expected.add(503)
            assert statuses == expected, (method, path)
            for status, response in responses.items():
                if int(status) >= 400 and path != "/_gateway/ready":
                    assert response["content"]["application/json"]["schema"] == error
    assert schemas["ErrorBody"]["required"] == ["error", "request_id"]


@pytest.mark.parametrize("path", GET_PATHS)
async def test_head_answers_like_get_without_a_body(admin: AdminApp, path: str) -> None:
    got, _ = await ask(admin, "GET", path)
    head, facts = await ask(admin, "HEAD", path)
    assert got.status == head.status == 200
    assert got.body
    assert head.body == b""
    assert head.headers == got.headers  # content-length included
    assert facts.route is not None


@pytest.mark.parametrize(
    ("method", "path", "allow", "route"),
    [
        ("POST", "/_gateway/health", "GET, HEAD", "/_gateway/health"),
        ("DELETE", "/_gateway/ready", "GET, HEAD", "/_gateway/ready"),
        ("PUT", "/_gateway/routes", "GET, HEAD", "/_gateway/routes"),
        ("POST", "/_gateway/openapi.json", "GET, HEAD", "/_gateway/openapi.json"),
        ("POST", "/_gateway/api/flags", "DELETE, GET, HEAD", "/_gateway/api/flags"),
        ("PATCH", "/_gateway/api/flags/catalog-books", "DELETE, GET, HEAD, PUT", None),
        ("POST", "/_gateway/api/flags/catalog-books", "DELETE, GET, HEAD, PUT", None),
        ("OPTIONS", "/_gateway/api/kill-switch", "GET, HEAD, PUT", "/_gateway/api/kill-switch"),
        ("PUT", "/_gateway/api/shadow", "GET, HEAD", "/_gateway/api/shadow"),
        ("DELETE", "/_gateway/api/breakers", "GET, HEAD", "/_gateway/api/breakers"),
    ],
)
async def test_other_methods_get_405_with_allow(
    admin: AdminApp, method: str, path: str, allow: str, route: str | None
) -> None:
    exchange, facts = await ask(admin, method, path)
    assert error_of(exchange) == (405, "method not allowed")
    assert exchange.headers[b"allow"] == allow.encode()
    assert facts.route == (route or "/_gateway/api/flags/{name}")


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "message"),
    [
        (
            "flags/catalog-books",
            b"{not json",
            b"application/json",
            400,
            "the body is not valid JSON",
        ),
        ("flags/catalog-books", b"", b"application/json", 400, "the body is not valid JSON"),
        ("flags/catalog-books", b"[]", None, 400, "the body must be a JSON object of flag fields"),
        ("flags/catalog-books", b'"new"', None, 400, "the body must be a JSON object of flag"),
        ("flags/catalog-books", b"null", None, 400, "the body must be a JSON object of flag"),
        ("flags/catalog-books", b'{"b": 1, "a": 2}', None, 400, "unknown flag fields: a, b"),
        ("flags/catalog-books", b'{"percentage": 101}', None, 400, "percentage: Input should be"),
        ("flags/catalog-books", b'{"percentage": null}', None, 400, "percentage: Input should"),
        ("flags/catalog-books", b'{"allow_roles": [1]}', None, 400, "allow_roles.0: Input"),
        ("flags/catalog-books", b'{"mode": "sideways"}', b"text/plain", 400, "mode: Input"),
        # An unknown flag is 404 before its new value is looked at; bad JSON comes first.
        ("flags/nope", b'{"percentage": 101}', None, 404, "unknown flag 'nope' (known: catalog"),
        ("flags/nope", b"{bad", None, 400, "the body is not valid JSON"),
        ("kill-switch", b'{"enabled": "yes"}', None, 400, 'the body must be {"enabled": true}'),
        ("kill-switch", b'{"enabled": 1}', None, 400, 'the body must be {"enabled": true}'),
        ("kill-switch", b"{}", None, 400, 'the body must be {"enabled": true} or'),
        ("kill-switch", b"[true]", None, 400, 'the body must be {"enabled": true} or'),
        ("kill-switch", b"null", None, 400, 'the body must be {"enabled": true} or'),
        ("kill-switch", b"nope", None, 400, "the body is not valid JSON"),
    ],
)
async def test_bad_bodies_get_400_in_the_gateway_shape(
    admin: AdminApp,
    path: str,
    body: bytes,
    content_type: bytes | None,
    status: int,
    message: str,
) -> None:
    exchange, facts = await ask(
        admin, "PUT", f"/_gateway/api/{path}", body, content_type=content_type
    )
    said_status, said = error_of(exchange)
    assert (said_status, said[: len(message)]) == (status, message)
    assert facts.route is not None
    flags, _ = await ask(admin, "GET", "/_gateway/api/flags")
    assert json.loads(flags.body)["version"] == 0  # nothing changed


@pytest.mark.parametrize(
    "content_type",
    [b"application/json", b"text/plain", b"application/x-www-form-urlencoded", None],
)
async def test_a_body_is_json_whatever_its_content_type(
    admin: AdminApp, content_type: bytes | None
) -> None:
    # `curl -d` (as in the README) sends application/x-www-form-urlencoded.
    body = b'{"percentage": 25, "allow_subjects": ["carol"]}'
    exchange, facts = await ask(
        admin, "PUT", "/_gateway/api/flags/catalog-books", body, content_type=content_type
    )
    assert exchange.status == 200, exchange.body
    assert json.loads(exchange.body) == {
        "name": "catalog-books",
        "mode": "canary",  # left out: kept
        "percentage": 25,
        "allow_subjects": ["carol"],
        "deny_subjects": [],
        "allow_roles": [],
        "deny_roles": [],
        "source": "store",
    }
    assert facts.route == "/_gateway/api/flags/{name}"
    switched, _ = await ask(
        admin, "PUT", "/_gateway/api/kill-switch", b'{"enabled": true}', content_type=content_type
    )
    assert json.loads(switched.body) == {"enabled": True}


async def test_a_body_over_64_kib_is_413(admin: AdminApp) -> None:
    body = b'{"enabled": true, "pad": "' + b"x" * 65536 + b'"}'
    exchange, _ = await ask(admin, "PUT", "/_gateway/api/kill-switch", body)
    assert error_of(exchange) == (413, "the body is larger than 65536 bytes")


async def test_a_store_that_is_down_is_503() -> None:
    admin = build(DownStore())
    exchange, _ = await ask(admin, "PUT", "/_gateway/api/kill-switch", b'{"enabled": true}')
    assert error_of(exchange) == (503, "the flag store is unavailable: redis is down")


async def test_a_failing_endpoint_answers_a_json_500_and_raises() -> None:
    flags = FlagRuntime(defaults={}, store=FlagStore(MemoryStorage()))

    def view() -> dict[str, Any]:
        raise RuntimeError("the runtime broke")

    flags.view = view  # type: ignore[method-assign]
    inventory = Inventory(rows=(), legacy_routes=(), plans=(), service_methods={})
    admin = AdminApp(state=GatewayState(), inventory=inventory, flags=flags)
    scope = http_scope("/_gateway/api/flags")
    scope[FACTS_KEY] = RequestFacts("req-1", "/_gateway/api/flags", "GET", identity=ALICE)
    exchange = Exchange()

    async def receive() -> dict[str, Any]:
        raise AssertionError("a GET endpoint reads no body")

    async def send(message: dict[str, Any]) -> None:
        exchange.messages.append(message)

    # Raised on after the answer, for the request context middleware to log (once).
    with pytest.raises(RuntimeError, match="the runtime broke"):
        await admin(scope, receive, send)
    assert error_of(exchange) == (500, "internal server error")
    assert exchange.headers[b"cache-control"] == b"no-store"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_gateway/api/flags"),
        ("PUT", "/_gateway/api/flags/catalog-books"),
        ("DELETE", "/_gateway/api/flags/catalog-books"),  # a method it does not serve
        ("GET", "/_gateway/api/nothing"),  # a path it does not serve
        ("HEAD", "/_gateway/api/kill-switch"),
        # The whole surface, not only /api/: with no [auth] section every policy is public.
        ("GET", "/_gateway/routes"),
        ("GET", "/_gateway/openapi.json"),
        ("GET", "/_gateway/nope"),
    ],
)
async def test_the_admin_api_needs_an_admin_role_before_anything_else(
    admin: AdminApp, method: str, path: str
) -> None:
    # No access policy runs here: the admin app checks server.admin_roles itself.
    body = b'{"percentage": 100}' if method == "PUT" else None
    anonymous, facts = await ask(admin, method, path, body, identity=ANONYMOUS)
    assert error_of(anonymous) == (401, "authentication required")
    assert anonymous.headers[b"www-authenticate"] == b'Bearer realm="gateway"'
    assert facts.route is None
    forbidden, _ = await ask(admin, method, path, body, identity=BOB)
    assert error_of(forbidden) == (403, "missing required role: admin")
    assert b"www-authenticate" not in forbidden.headers


@pytest.mark.parametrize("path", ["/_gateway/health", "/_gateway/ready"])
async def test_the_probes_are_public(admin: AdminApp, path: str) -> None:
    exchange, _ = await ask(admin, "GET", path, identity=ANONYMOUS)
    assert exchange.status == 200


@pytest.mark.parametrize(
    "path", ["/_gateway/", "/_gateway/nope", "/_gateway/health/", "/_gateway/api/kill-switch/"]
)
async def test_unknown_endpoints_are_404(admin: AdminApp, path: str) -> None:
    exchange, facts = await ask(admin, "GET", path)
    assert error_of(exchange) == (404, "no such gateway endpoint")
    assert facts.route is None


@pytest.mark.parametrize(
    ("path", "name"), [("flags/nope", "nope"), ("flags/a/b", "a/b"), ("flags/", "")]
)
async def test_a_flag_name_is_everything_after_flags(admin: AdminApp, path: str, name: str) -> None:
    exchange, facts = await ask(admin, "GET", f"/_gateway/api/{path}")
    assert error_of(exchange) == (404, f"unknown flag {name!r} (known: catalog-books)")
    assert facts.route == "/_gateway/api/flags/{name}"


async def test_every_answer_says_no_store(admin: AdminApp) -> None:
    for method, path in [
        ("GET", "/_gateway/api/flags"),
        ("GET", "/_gateway/api/flags/nope"),
        ("POST", "/_gateway/health"),
    ]:
        exchange, _ = await ask(admin, method, path)
        assert exchange.headers[b"cache-control"] == b"no-store", (method, path)
    anonymous, _ = await ask(admin, "GET", "/_gateway/api/flags", identity=ANONYMOUS)
    assert anonymous.headers[b"cache-control"] == b"no-store"


async def test_routes_is_the_inventory(admin: AdminApp) -> None:
    exchange, _ = await ask(admin, "GET", "/_gateway/routes")
    # The same keys in the same order as InventoryRow.as_dict: nothing dropped by the model.
    assert (
        exchange.body
        == json.dumps({"routes": [row.as_dict() for row in ROWS]}, separators=(",", ":")).encode()
    )


async def test_readiness_follows_the_lifespan() -> None:
    for ready, shutting_down, store_read, status, said in [
        (False, False, True, 503, "starting"),
        (True, False, True, 200, "ready"),
        # Started, but the flag store was never read (down at start-up): defaults decide.
        (True, False, False, 503, "waiting for the flag store"),
        (True, True, True, 503, "shutting down"),
    ]:
        gateway_state = GatewayState(ready=ready, shutting_down=shutting_down)
        inventory = Inventory(rows=(), legacy_routes=(), plans=(), service_methods={})
        flags = FlagRuntime(defaults={}, store=FlagStore(MemoryStorage()))
        if store_read:
            flags.apply(FlagState())
        app = AdminApp(state=gateway_state, inventory=inventory, flags=flags)
        exchange, _ = await ask(app, "GET", "/_gateway/ready")
        assert (exchange.status, json.loads(exchange.body)) == (status, {"status": said})
        assert exchange.headers[b"cache-control"] == b"no-store"


def test_the_models_keep_up_with_the_flag_spec() -> None:
    # A field added to FlagSpec must reach the admin API's bodies (and the document).
    spec = list(FlagSpec.model_fields)
    assert list(FlagChange.model_fields) == spec
    assert list(FlagView.model_fields) == [*spec, "source"]
    assert list(NamedFlag.model_fields) == ["name", *spec, "source"]
    assert list(RouteRow.model_fields) == list(ROWS[0].as_dict())


def test_flag_changes_keep_fields_left_out() -> None:
    change: dict[str, Any] = FlagChange.model_validate({"percentage": 25}).model_dump(
        exclude_unset=True
    )
    assert change == {"percentage": 25}
