"""End to end: the demo through a real ``gateway serve`` process on a loopback port."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import REPO, GatewayProcess, demo_config, free_port

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = demo_config(tmp_path_factory.mktemp("demo"))
    with GatewayProcess(config) as gateway:
        yield gateway


@pytest.fixture
def client(demo: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.base_url, timeout=10) as http:
        yield http


def login(client: httpx.Client, username: str = "alice", password: str = "wonderland") -> None:
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 200, response.text


def test_legacy_and_new_routes_share_one_port(client: httpx.Client) -> None:
    books = client.get("/api/books")
    assert books.status_code == 200
    assert books.headers["x-gateway-backend"] == "catalog"
    assert [book["id"] for book in books.json()["books"]][:3] == [1, 2, 3]

    one = client.get("/api/books/1")
    assert one.headers["x-gateway-backend"] == "catalog"
    assert one.json()["id"] == 1

    search = client.get("/api/books/search", params={"q": "a"})
    assert search.headers["x-gateway-backend"] == "catalog"

    home = client.get("/")
    assert home.headers["x-gateway-backend"] == "legacy"
    # url_for links in legacy HTML point at the same URLs the new side serves.
    assert 'href="/api/books"' in home.text

    # GET was migrated; PUT on the same URL stays on legacy (admin only, checked by the gateway).
    login(client)
    dune = {"title": "Dune", "author": "Frank Herbert", "year": 1965}
    put = client.put("/api/books/1", json=dune)
    assert put.status_code == 200, put.text
    assert put.headers["x-gateway-backend"] == "legacy"
    assert client.get("/api/books/1").json()["title"] == "Dune"  # catalog sees legacy's write


def test_missing_book_is_the_same_json_404_with_the_request_id(client: httpx.Client) -> None:
    response = client.get("/api/books/9999", headers={"X-Request-ID": "e2e-missing-book"})
    assert response.status_code == 404
    assert response.headers["x-gateway-backend"] == "catalog"
    assert response.json() == {
        "error": {"status": 404, "message": "book 9999 not found"},
        "request_id": "e2e-missing-book",
    }


def test_trailing_slash_is_a_different_url_decided_by_legacy(client: httpx.Client) -> None:
    # /api/books is migrated (and public); /api/books/ is neither a configured route nor a public
    # path: the gateway asks for credentials, then the legacy app answers exactly as it did
    # before the gateway (Flask: no such rule, 404).
    assert client.get("/api/books/").status_code == 401
    login(client, "bob", "builder")
    slash = client.get("/api/books/")
    assert slash.headers["x-gateway-backend"] == "legacy"
    assert slash.status_code == 404
    # A non-integer id never matches {book_id:int}: legacy answers, as it always did.
    word = client.get("/api/books/abc")
    assert word.headers["x-gateway-backend"] == "legacy"
    assert word.status_code == 404


def test_request_id_reaches_log_lines_on_both_sides(
    demo: GatewayProcess, client: httpx.Client
) -> None:
    client.post(
        "/login",
        data={"username": "bob", "password": "builder"},
        headers={"X-Request-ID": "e2e-legacy-login"},
    )
    response = client.get("/api/books", headers={"X-Request-ID": "e2e-new-list"})
    assert response.headers["x-request-id"] == "e2e-new-list"

    legacy_events = [event["event"] for event in demo.events_for("e2e-legacy-login")]
    assert "auth.logged_in" in legacy_events  # logged inside the Flask handler thread
    new_events = [event["event"] for event in demo.events_for("e2e-new-list")]
    assert "catalog.books.listed" in new_events  # logged inside the FastAPI handler

    [access] = [e for e in demo.events_for("e2e-new-list") if e["event"] == "request"]
    assert access["method"] == "GET"
    assert access["path"] == "/api/books"
    assert access["route"] == "/api/books"
    assert access["backend"] == "catalog"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float)
    assert str(access["client"]).startswith("127.0.0.1:")
    [legacy_access] = [e for e in demo.events_for("e2e-legacy-login") if e["event"] == "request"]
    assert legacy_access["route"] == "/login"
    assert legacy_access["backend"] == "legacy"


def test_exactly_one_access_line_per_request(demo: GatewayProcess, client: httpx.Client) -> None:
    client.get("/api/books/2", headers={"X-Request-ID": "e2e-one-line"})
    client.get("/", headers={"X-Request-ID": "e2e-one-line-legacy"})
    for request_id in ("e2e-one-line", "e2e-one-line-legacy"):
        lines = [e for e in demo.events_for(request_id) if e["event"] == "request"]
        assert len(lines) == 1
    # uvicorn's own access log is off: no line in its format anywhere.
    assert '"GET /api/books/2 HTTP/1.1" 200' not in demo.log_text()


def test_streamed_csv_arrives_in_chunks(demo: GatewayProcess, client: httpx.Client) -> None:
    login(client)
    cookie = client.cookies["session"]
    request = (
        "GET /reports/sales.csv HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{demo.port}\r\n"
        f"Cookie: session={cookie}\r\n"
        "X-Request-ID: e2e-csv\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", demo.port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while data := sock.recv(65536):
            raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"x-gateway-backend: legacy" in head.lower()
    chunks = decode_chunked(body)
    # The report yields the header and then 20 rows at a time: each one is its own chunk.
    assert len(chunks) >= 10
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0] == "sale_id,sold_at,book_id,title,quantity"
    assert len(lines) == 201
    # Logged from inside the generator, after the view returned: the request id is still there.
    assert "reports.sales_streamed" in [e["event"] for e in demo.events_for("e2e-csv")]


def decode_chunked(body: bytes) -> list[bytes]:
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(body[:size])
        body = body[size + 2 :]


def test_upload_reaches_flask_intact(client: httpx.Client) -> None:
    login(client, "bob", "builder")
    payload = os.urandom(3 * 1024 * 1024 + 7)
    response = client.post("/api/uploads", files={"file": ("blob.bin", payload)})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "filename": "blob.bin",
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_chunked_upload_reaches_flask_intact(client: httpx.Client) -> None:
    login(client, "bob", "builder")
    boundary = "e2eboundary"
    payload = os.urandom(200_000)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def pieces() -> Iterator[bytes]:  # a generator body makes httpx send it chunked
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    response = client.post(
        "/api/uploads",
        content=pieces(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()


def test_session_login_then_legacy_protected_routes(client: httpx.Client) -> None:
    assert client.get("/admin/users").status_code == 401
    login(client, "bob", "builder")
    assert client.get("/api/me").json()["username"] == "bob"
    forbidden = client.get("/admin/users")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == "missing required role: admin"


def test_gateway_endpoints(client: httpx.Client) -> None:
    assert client.get("/_gateway/health").json() == {"status": "ok"}
    assert client.get("/_gateway/ready").json() == {"status": "ready"}
    assert client.get("/_gateway/routes").status_code == 401
    login(client)  # the inventory is for admins
    routes = client.get("/_gateway/routes").json()["routes"]
    by_path = {(row["path"], tuple(row["methods"])): row for row in routes}
    assert by_path[("/api/books", ("GET",))]["status"] == "migrated"
    assert by_path[("/api/books", ("GET",))]["served_by"] == "catalog"
    assert by_path[("/api/books", ("POST",))]["status"] == "migrated"
    assert by_path[("/api/books/search", ("GET",))]["status"] == "new-only"
    assert by_path[("/api/me", ("GET",))]["served_by"] == "accounts"
    assert by_path[("/api/books/{book_id:int}", ("PUT",))]["served_by"] == "legacy"
    assert by_path[("/reports/sales.csv", ("GET",))]["served_by"] == "legacy"


def test_ambiguous_paths_get_400_not_a_backend(demo: GatewayProcess) -> None:
    for target in (b"//admin/users", b"/api/books/%2e%2e/1", b"/admin%2Fusers"):
        with socket.create_connection(("127.0.0.1", demo.port), timeout=10) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while data := sock.recv(65536):
                raw += data
        assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
        assert b"x-gateway-backend" not in raw.lower().partition(b"\r\n\r\n")[0]
        assert b'"request_id"' in raw


def test_lifespans_ran_once_each_and_stop_once(tmp_path: Path) -> None:
    gateway = GatewayProcess(demo_config(tmp_path)).start()
    with httpx.Client(base_url=gateway.base_url) as http:
        assert http.get("/api/books").status_code == 200
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught so that a supervisor
    # sees how the process ended.
    assert gateway.stop() in (0, -signal.SIGTERM)
    events = [event["event"] for event in gateway.log_events()]
    assert "Application shutdown complete." in events
    assert events.count("catalog.started") == 1
    assert events.count("accounts.started") == 1
    assert events.count("catalog.stopped") == 1
    assert events.count("accounts.stopped") == 1
    assert events.index("catalog.started") < events.index("gateway.started")


def test_backend_header_can_be_switched_off(tmp_path: Path) -> None:
    env = {"GATEWAY_SERVER__BACKEND_HEADER": "false"}
    with GatewayProcess(demo_config(tmp_path), env=env) as gateway:
        response = httpx.get(f"{gateway.base_url}/api/books")
    assert response.status_code == 200
    assert "x-gateway-backend" not in response.headers


def test_all_legacy_config_logs_flask_app_logger_with_request_id(tmp_path: Path) -> None:
    with GatewayProcess(demo_config(tmp_path, routes="")) as gateway:
        response = httpx.get(
            f"{gateway.base_url}/api/books", headers={"X-Request-ID": "e2e-app-logger"}
        )
        assert response.headers["x-gateway-backend"] == "legacy"
        events = gateway.events_for("e2e-app-logger")
    # Flask's app.logger (stdlib) and structlog, both with the request id, one format.
    assert any(e.get("logger") == "legacy_flask" and "listed" in str(e["event"]) for e in events)
    assert "books.listed" in [e["event"] for e in events]


def test_two_workers_serve_the_same_routes(tmp_path: Path) -> None:
    with GatewayProcess(demo_config(tmp_path), args=["--workers", "2"]) as gateway:
        with httpx.Client(base_url=gateway.base_url) as http:
            backends = {http.get("/api/books").headers["x-gateway-backend"] for _ in range(20)}
            assert backends == {"catalog"}
            assert http.get("/").headers["x-gateway-backend"] == "legacy"
        # One lifespan per worker process (ready answers as soon as the first one is up).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events = gateway.log_events()
            started = [e["event"] for e in events].count("catalog.started")
            pids = {e.get("pid") for e in events if e["event"] == "gateway.started"}
            if started >= 2 and len(pids) >= 2:
                break
            time.sleep(0.1)
        log = gateway.log_text()
    assert started == 2, log
    assert len(pids) == 2, log


def test_legacy_switch_interval_applies_in_the_served_process(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[legacy]\napp = "sample_apps:create_switch_interval_flask"\nswitch_interval = 0.0005\n'
    )
    env = {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with (
        GatewayProcess(config, env=env) as gateway,
        httpx.Client(base_url=gateway.base_url) as http,
    ):
        response = http.get("/switch-interval")
    assert response.status_code == 200
    assert response.json()["seconds"] == pytest.approx(0.0005)


def test_service_startup_failure_stops_the_gateway(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[legacy]\napp = "sample_apps:create_flask"\n'
        '[services.broken]\napp = "sample_apps:create_failing_service"\n'
    )
    env = {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    gateway = GatewayProcess(config, env=env).start(wait_ready=False)
    assert gateway.process is not None
    code = gateway.process.wait(30)
    assert code != 0
    log = gateway.log_text()
    failures = [e for e in gateway.log_events() if e["event"] == "gateway.startup_failed"]
    # One clear line, no traceback.
    assert [e["error"] for e in failures] == [
        "service 'broken' failed to start: RuntimeError: database unreachable"
    ]
    assert "Traceback" not in log
    assert "Uvicorn running" not in log  # it never accepted traffic


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """``gateway routes | head -1``: the pipe's reader is gone before the table is written."""
    config = demo_config(tmp_path, flags=None)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "routes", "--config", str(config)],
        cwd=REPO,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # the only reader: every write now fails with EPIPE
        errors = process.stderr.read()
        assert process.wait(timeout=60) == 141  # what a shell shows for a SIGPIPE'd command
    assert errors == ""  # no traceback, no "Exception ignored" at exit


def test_gateway_routes_command_prints_the_table(tmp_path: Path) -> None:
    # The demo config, with its database, flag file and worker reports in tmp_path: the
    # checkout's own var/reports holds the breaker states of a `gateway serve` running there.
    config = demo_config(tmp_path, flags=None)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "routes", "--config", str(config)],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "PATH", "METHODS", "SERVED", "BY", "FLAG", "STATUS", "BREAKER", "LEGACY", "ENDPOINT",
        "SERVICES",
    ]  # fmt: skip
    rows = [line.split()[:6] for line in lines]
    # No server runs, so no worker reports a breaker state yet.
    assert ["/api/books", "GET", "catalog", "catalog-books", "migrated", "unknown"] in rows
    rows = [row[:5] for row in rows]
    assert ["/api/books", "GET", "catalog", "catalog-books", "migrated"] in rows
    assert ["/api/books", "POST", "catalog", "-", "migrated"] in rows
    assert ["/api/books/search", "GET", "catalog", "-", "new-only"] in rows
    assert ["/api/me", "GET", "accounts", "accounts-me", "migrated"] in rows
    assert ["/reports/sales.csv", "GET", "legacy", "-", "legacy"] in rows


def test_importable_app_serves_under_plain_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    config = demo_config(tmp_path)
    log = tmp_path / "uvicorn.log"
    env = {**os.environ, "GATEWAY_CONFIG": str(config), "GATEWAY_LOGGING__FORMAT": "json"}
    command = [sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--lifespan", "on"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_gateway/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        response = httpx.get(f"http://127.0.0.1:{port}/api/books/1")
        assert response.status_code == 200, log.read_text()
        assert response.headers["x-gateway-backend"] == "catalog"
    finally:
        process.terminate()
        process.wait(15)
    assert "catalog.started" in log.read_text()
