"""``deploy/gateway.toml`` served by a real ``gateway serve``, asked as the platform asks it.

The file is used as the image runs it, moved to loopback: ``--host 127.0.0.1`` and a free port,
the demo database and (for the file store) the flags in ``tmp_path``, and Redis on
127.0.0.1:6379 when one runs there. The probes' requests are the manifests' own: the path and
the ``Host`` header from ``haproxy.cfg`` and ``k8s/gateway.yaml``, and the Dockerfile's
``HEALTHCHECK`` command run as it is, against the test's port.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from deploy_files import (
    DEPLOY_CONFIG,
    dockerfile_args,
    exec_form,
    k8s_environment,
)
from support import GatewayProcess, free_port, needs_redis

pytestmark = pytest.mark.e2e

#: The Host header HAProxy's check and the Kubernetes probes send.
PROBE_HOST = "localhost"


def deploy_gateway(tmp_path: Path, store: str, metrics_listen: str = "") -> GatewayProcess:
    """The deploy config as the image runs it; its metrics address moved to a free port (or
    ``metrics_listen``), so tests never fight over the image's fixed 9100."""
    config = tmp_path / "gateway.toml"
    config.write_text(DEPLOY_CONFIG.read_text())
    env = {
        **k8s_environment(),
        "BOOKSTORE_DATABASE": str(tmp_path / "bookstore.sqlite3"),
        "GATEWAY_CONFIG": str(config),
    }
    if store == "redis":
        env["GATEWAY_FLAGS__REDIS_URL"] = "redis://127.0.0.1:6379/0"
        env["GATEWAY_FLAGS__REDIS_KEY"] = f"test-deploy:{uuid.uuid4().hex}"
    else:
        env["GATEWAY_FLAGS__STORE"] = "file"
        env["GATEWAY_FLAGS__FILE"] = str(tmp_path / "flags.json")
    env["GATEWAY_METRICS__LISTEN"] = metrics_listen or f"127.0.0.1:{free_port()}"
    return GatewayProcess(config, env=env, args=["--host", "127.0.0.1"])


@pytest.mark.parametrize("store", ["file", pytest.param("redis", marks=needs_redis)])
def test_the_probes_get_200_from_the_deploy_config(tmp_path: Path, store: str) -> None:
    metrics_listen = f"127.0.0.1:{free_port()}"
    with deploy_gateway(tmp_path, store, metrics_listen) as gateway:
        probe = {"host": PROBE_HOST}
        health = httpx.get(f"{gateway.base_url}/_gateway/health", headers=probe, timeout=5)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = httpx.get(f"{gateway.base_url}/_gateway/ready", headers=probe, timeout=5)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

        # Why the probes set Host: the kubelet's default is the pod's address, not allowed.
        refused = httpx.get(
            f"{gateway.base_url}/_gateway/ready", headers={"host": "10.1.2.3:8000"}, timeout=5
        )
        assert refused.status_code == 400
        assert refused.json()["request_id"]

        # The demo answers through it, and its access line names the route template.
        books = httpx.get(f"{gateway.base_url}/api/books/1", headers=probe, timeout=5)
        assert books.status_code == 200
        assert books.json()["id"] == 1
        request_id = books.headers["x-request-id"]
        (line,) = [e for e in gateway.events_for(request_id) if e["event"] == "request"]
        assert line["route"] == "/api/books/{book_id:int}"

        # The address Prometheus scrapes, without auth. Prometheus cannot set Host: it sends
        # the target's address (prometheus.yml), which is no allowed host, so the metrics
        # address must answer whatever Host it gets.
        metrics = httpx.get(
            f"http://{metrics_listen}/_gateway/metrics",
            headers={"host": "gateway-1:9100"},
            timeout=5,
        )
        assert metrics.status_code == 200
        assert "gateway_requests_total" in metrics.text


def test_the_images_healthcheck_passes_against_a_live_gateway_and_fails_without_one(
    tmp_path: Path,
) -> None:
    (healthcheck,) = dockerfile_args("HEALTHCHECK")
    command = exec_form(healthcheck[healthcheck.index("CMD ") + len("CMD ") :])
    assert command[0] == "python"
    gateway = deploy_gateway(tmp_path, "file").start()
    try:
        script = command[2].replace(":8000/", f":{gateway.port}/")
        passed = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, timeout=30, check=False
        )
        assert passed.returncode == 0, passed.stderr
    finally:
        gateway.stop()
    failed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=30, check=False
    )
    assert failed.returncode != 0
