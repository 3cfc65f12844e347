"""End to end: ``gateway serve --workers 2`` counts exactly what it was sent, whichever worker
served it, scraped at ``/_gateway/metrics`` (admin) and at ``[metrics] listen`` (no auth); its
multiprocess directory lives exactly as long as the server."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_config import ADMIN, apps_config
from metrics_apps import ROUTES
from prometheus_client.parser import text_string_to_metric_families
from support import GatewayProcess, eventually, free_port

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent

CONFIG = (
    apps_config("metrics_apps", legacy="threads = 4")
    + """
[flags]
store = "memory"
"""
    + ROUTES
)

#: What the test sends: (path, how many times) → the series it must land in.
MIX = {
    ("/legacy/hello", 7): ("/legacy/hello", "legacy", "2xx"),
    ("/legacy/items/{}", 5): ("/legacy/items/{item_id:int}", "legacy", "2xx"),
    ("/new/hello", 6): ("/new/hello", "svc", "2xx"),
    ("/flagged/{}", 4): ("/flagged/{n:int}", "svc", "2xx"),
    ("/nothing/{}", 3): ("<unmatched>", "legacy", "4xx"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str, Path]]:
    folder = tmp_path_factory.mktemp("metrics")
    temporary = folder / "tmp"
    temporary.mkdir()
    listen = f"127.0.0.1:{free_port()}"
    config = folder / "gateway.toml"
    config.write_text(CONFIG + f'\n[metrics]\nlisten = "{listen}"\n')
    env = {"PYTHONPATH": f"{TESTS.parent}:{TESTS}", "TMPDIR": str(temporary)}
    gateway = GatewayProcess(config, env=env, args=["--workers", "2"]).start()
    try:
        yield gateway, f"http://{listen}", temporary
    finally:
        gateway.stop()


def served_counts(text: str) -> dict[tuple[str, str, str], float]:
    """``gateway_requests_total`` by (route, backend, status class), the gateway's own aside."""
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "gateway_requests_total" and labels["backend"] != "gateway":
                key = (labels["route"], labels["backend"], labels["status_class"])
                counts[key] = sample.value
    return counts


def sample_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_the_scraped_counters_equal_what_was_sent_per_route_and_backend(
    served: tuple[GatewayProcess, str, Path],
) -> None:
    gateway, listen_url, _ = served
    expected: dict[tuple[str, str, str], float] = {}
    for (path, times), series in MIX.items():
        for n in range(times):
            # A new connection each time: the kernel spreads them over both workers.
            httpx.get(gateway.base_url + path.format(n + 1), headers={"Connection": "close"})
        expected[series] = expected.get(series, 0) + times

    # Workers flush once a second: poll until the numbers arrive, then they must be exact.
    counts = eventually(lambda: (c := served_counts(httpx.get(listen_url).text)) == expected and c)
    assert served_counts(httpx.get(listen_url).text) == expected, counts
    admin = httpx.get(f"{gateway.base_url}/_gateway/metrics", headers=ADMIN)
    assert admin.status_code == 200
    assert admin.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert served_counts(admin.text) == expected
    # Flag decisions, from either worker, added up too.
    text = httpx.get(listen_url).text
    assert (
        'gateway_flag_decisions_total{flag="flagged",reason="default",route="/flagged/{n:int}",'
        'side="new"} 4.0'
    ) in text


def test_the_listen_address_needs_no_credentials_and_the_admin_path_does(
    served: tuple[GatewayProcess, str, Path],
) -> None:
    gateway, listen_url, _ = served
    assert httpx.get(listen_url).status_code == 200
    assert httpx.get(f"{listen_url}/metrics").status_code == 200
    assert httpx.get(f"{gateway.base_url}/_gateway/metrics").status_code == 401
    # Both workers' pools, added up (each has 4 threads).
    size = {"state": "size"}
    assert eventually(
        lambda: sample_value(httpx.get(listen_url).text, "gateway_legacy_pool_threads", size) == 8
    )


def test_a_request_head_refused_by_the_http_protocol_is_counted(
    served: tuple[GatewayProcess, str, Path],
) -> None:
    gateway, listen_url, _ = served
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431")
    line = 'gateway_edge_rejections_total{reason="the request head is too large",status="431"} 1.0'
    assert eventually(lambda: line in httpx.get(listen_url).text), httpx.get(listen_url).text


def test_the_multiprocess_directory_lives_as_long_as_the_server_and_forgets_dead_workers(
    tmp_path: Path,
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    config = tmp_path / "gateway.toml"
    listen = f"127.0.0.1:{free_port()}"
    config.write_text(CONFIG + f'\n[metrics]\nlisten = "{listen}"\n')
    env = {"PYTHONPATH": f"{TESTS.parent}:{TESTS}", "TMPDIR": str(temporary)}

    def pool_size() -> float | None:
        text = httpx.get(f"http://{listen}").text
        return sample_value(text, "gateway_legacy_pool_threads", {"state": "size"})

    with GatewayProcess(config, env=env, args=["--workers", "2"]) as gateway:
        directories = list(temporary.glob("gateway-metrics-*"))
        assert len(directories) == 1
        directory = directories[0]
        assert eventually(lambda: pool_size() == 8)  # two workers' pools of 4
        # A worker dies: uvicorn's supervisor starts another, and marks the dead one's files,
        # so its pool no longer counts (without that the gauge would read 12).
        victim = httpx.get(f"{gateway.base_url}/legacy/pid").json()["pid"]
        dead = directory / f"gauge_livesum_{victim}.db"
        assert dead.exists()
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            return not dead.exists() and len(list(directory.glob("gauge_livesum_*.db"))) == 2

        assert eventually(replaced, limit=30), sorted(p.name for p in directory.iterdir())
        assert eventually(lambda: pool_size() == 8)
    assert gateway.process is not None
    assert gateway.process.returncode == 0
    assert list(temporary.iterdir()) == []
