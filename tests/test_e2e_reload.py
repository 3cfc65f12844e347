"""End to end: live config reload under a real ``gateway serve`` (one worker and two), with a
client loop running throughout that must see no failed request; ``gateway reload`` reporting;
``gateway serve --reload`` applying an edited config file without a restart."""

from __future__ import annotations

import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from support import GatewayProcess, demo_config, eventually, run_gateway

pytestmark = pytest.mark.e2e

API_KEY = {"X-API-Key": "demo-reporting-key-not-a-secret"}  # reporting-bot, role "user"
SEARCH_ROUTE = '[[routes]]\npath = "/api/books/search"\nmethods = ["GET"]\nbackend = "catalog"\n'
PUBLIC_BOOK = 'path = "/api/books/{book_id:int}"\nmethods = ["GET"]\naccess = "public"'
ADMIN_BOOK = 'path = "/api/books/{book_id:int}"\nmethods = ["GET"]\nroles = ["admin"]'
#: The last route (``routes[5]``) with no method: a file no gateway accepts.
BAD_METHODS = ('methods = ["PUT"]\nbackend = "accounts"', 'methods = []\nbackend = "accounts"')


def replace_file(path: Path, text: str) -> None:
    """As a deploy tool writes a config: the reader sees the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def gateway_reload(config: Path) -> subprocess.CompletedProcess[str]:
    return run_gateway("reload", "--config", str(config))


class ClientLoop:
    """Requests, one after another, until stopped (at most ``limit``): every transport error
    and every 5xx is a failure; other statuses are counted per path."""

    PATHS = ("/api/books", "/api/books/1", "/", "/api/books/search?q=a")

    def __init__(self, base_url: str, limit: int = 20_000) -> None:
        self._base_url = base_url
        self._limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0
        self.failures: list[str] = []
        self.statuses: Counter[tuple[str, int]] = Counter()

    def _run(self) -> None:
        with httpx.Client(base_url=self._base_url, timeout=10) as client:
            while not self._stop.is_set() and self.sent < self._limit:
                path = self.PATHS[self.sent % len(self.PATHS)]
                self.sent += 1
                try:
                    response = client.get(path)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                self.statuses[(path.partition("?")[0], response.status_code)] += 1
                if response.status_code >= 500:
                    self.failures.append(f"{path}: {response.status_code} {response.text}")

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        assert eventually(lambda: self.sent > 20), "the client loop did not start"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(30)


def get(gateway: GatewayProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2])
def test_routes_and_policies_change_live_under_load_and_a_bad_file_is_rejected(
    tmp_path: Path, workers: int
) -> None:
    text = demo_config(tmp_path).read_text()
    assert SEARCH_ROUTE in text
    assert PUBLIC_BOOK in text
    config = tmp_path / "gateway.toml"
    replace_file(config, text.replace(SEARCH_ROUTE, ""))
    noun = "worker" if workers == 1 else "workers"

    with GatewayProcess(config, args=["--workers", str(workers)]) as gateway:
        with ClientLoop(gateway.base_url) as loop:
            # Before: no route claims the search, so the legacy app answers (it has none: 404).
            response = get(gateway, "/api/books/search?q=a")
            assert (response.status_code, response.headers["x-gateway-backend"]) == (404, "legacy")

            # (a) A new route: served by its service once every worker has applied it.
            replace_file(config, text)
            reloaded = gateway_reload(config)
            assert reloaded.returncode == 0, reloaded.stderr
            assert reloaded.stdout.startswith(f"{config}: reload applied by {workers} {noun}")
            for _ in range(6):  # several requests: with two workers, both answer some
                response = get(gateway, "/api/books/search?q=a")
                assert response.status_code == 200
                assert response.headers["x-gateway-backend"] == "catalog"

            # (b) A tightened policy: anonymous callers get 401, a user without the role 403.
            assert get(gateway, "/api/books/1").status_code == 200
            replace_file(config, text.replace(PUBLIC_BOOK, ADMIN_BOOK))
            reloaded = gateway_reload(config)
            assert reloaded.returncode == 0, reloaded.stderr
            for _ in range(6):
                assert get(gateway, "/api/books/1").status_code == 401
                assert get(gateway, "/api/books/1", headers=API_KEY).status_code == 403

            # (c) A bad file: rejected, named, and the running config keeps serving.
            replace_file(config, text.replace(PUBLIC_BOOK, ADMIN_BOOK).replace(*BAD_METHODS))
            reloaded = gateway_reload(config)
            assert reloaded.returncode == 2
            problem = f"{config}: routes[5].methods: needs at least one method (got [])"
            assert f"gateway: config error: {problem}" in reloaded.stderr
            assert f"reload rejected by {workers} {noun}" in reloaded.stderr
            for _ in range(6):
                assert get(gateway, "/api/books/search?q=a").headers["x-gateway-backend"] == (
                    "catalog"
                )
                assert get(gateway, "/api/books/1").status_code == 401

        assert loop.failures == []
        assert loop.statuses[("/api/books", 200)] > 0
        # The loop saw both policies: public before (b), refused after.
        assert loop.statuses[("/api/books/1", 200)] > 0
        assert loop.statuses[("/api/books/1", 401)] > 0
        # Each worker logs three reloads; its flusher writes them a moment later.
        events = eventually(
            lambda: (
                [e for e in gateway.log_events() if e["event"] == "config.reload"][
                    3 * workers - 1 :
                ]
                and [e for e in gateway.log_events() if e["event"] == "config.reload"]
            ),
            limit=30,
        )
        rejected = [e for e in events if e["level"] == "error"]
        assert len(rejected) == workers
        assert all(problem in e["result"] for e in rejected)
        assert len([e for e in events if e["result"] == "reload: applied"]) == 2 * workers
    assert not (tmp_path / "var" / "run" / "gateway.pid").exists()


def test_changes_that_need_a_restart_are_named_and_the_rest_applies(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    text = config.read_text()
    with GatewayProcess(config) as gateway:
        changed = text.replace("threads = 16", "threads = 4").replace(PUBLIC_BOOK, ADMIN_BOOK)
        replace_file(config, changed.replace("port = 8000", "port = 8001"))
        reloaded = gateway_reload(config)
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout.strip() == (
            f"{config}: reload applied by 1 worker (pid {gateway.process.pid}); "  # type: ignore[union-attr]
            "not applied live (restart needed): server.port, legacy.threads"
        )
        assert get(gateway, "/api/books/1").status_code == 401
        [line] = eventually(lambda: reload_lines(gateway))
        assert line["result"] == (
            "reload: applied; not applied live (restart needed): server.port, legacy.threads"
        )


def test_reload_without_a_running_gateway_says_so(tmp_path: Path) -> None:
    reloaded = gateway_reload(demo_config(tmp_path))
    assert reloaded.returncode == 1
    pid_file = tmp_path / "var" / "run" / "gateway.pid"
    assert reloaded.stderr.strip() == (f"gateway: no running gateway found: cannot read {pid_file}")


def test_reload_with_a_stale_pid_file_says_the_server_has_ended(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])  # its pid names no process once it has been reaped
    finished.wait()
    pid_file = tmp_path / "gateway.pid"
    pid_file.write_text(f"{finished.pid}\n")
    reloaded = run_gateway(
        "reload", "--config", str(demo_config(tmp_path)), "--pid-file", str(pid_file)
    )
    assert reloaded.returncode == 1
    assert reloaded.stderr.strip() == (
        f"gateway: no running gateway found: {pid_file} names {finished.pid}, which has ended"
    )


def reload_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """The ``config.reload`` lines logged so far (each worker's flusher writes them)."""
    return [e for e in gateway.log_events() if e["event"] == "config.reload"]


def test_serve_reload_applies_an_edited_config_without_restarting(tmp_path: Path) -> None:
    text = demo_config(tmp_path).read_text()
    config = tmp_path / "gateway.toml"
    replace_file(config, text.replace(SEARCH_ROUTE, ""))
    with GatewayProcess(config, args=["--reload"]) as gateway:
        assert get(gateway, "/api/books/search?q=a").headers["x-gateway-backend"] == "legacy"
        replace_file(config, text)
        served = eventually(
            lambda: get(gateway, "/api/books/search?q=a").headers["x-gateway-backend"] == "catalog",
            limit=30,
        )
        assert served, gateway.log_text()
        # The worker's log lines are written by its flusher a moment later: wait for them.
        reloads = eventually(lambda: reload_lines(gateway), limit=30)
        events = gateway.log_events()
        started = [e for e in events if e["event"] == "gateway.started"]
        assert len(started) == 1, gateway.log_text()  # applied in place: no restart
        # One reload per batch of changes the watcher saw (usually one); each applied.
        assert {e["result"] for e in reloads} == {"reload: applied"}, gateway.log_text()
