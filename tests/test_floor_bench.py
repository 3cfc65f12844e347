"""``bench/ablation_bench.py --floor``: its configurations, its arithmetic, and that a floor app
really serves the bench's endpoints and writes the gateway's access line (one uvicorn process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench import ablation_bench, http_bench
from bench.http_bench import WrkResult
from bench.servers import HOST, free_port, wait_until_ready

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("/trivial", ["none", "direct", "context", "context-line", "uvicorn-line"]),
        ("/new/hello", ["none", "direct", "context", "context-line"]),
        # No gateway at all is Flask on another server: the floor starts at the adapter alone,
        # and the issue's two comparisons are served in the same rounds.
        (
            "/legacy/hello",
            ["none", "direct", "context", "context-line", "gunicorn", "granian"],
        ),
    ],
)
def test_the_floor_adds_the_request_context_without_and_with_its_line(
    path: str, keys: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = tmp_path / "granian"
    installed.touch()
    monkeypatch.setattr(http_bench, "GRANIAN", installed)
    cases = ablation_bench.cases(path, [], None, floor=True)
    assert [case.key for case in cases] == keys
    apps = {case.key: case.server.argv[5] for case in cases if case.group == "floor"}
    app = ablation_bench.FLOOR_APPS[path]
    assert apps["context"] == f"bench.floor_apps:{app}_context"
    assert apps["context-line"] == f"bench.floor_apps:{app}_logged"
    if path == "/legacy/hello":
        assert apps["direct"] == "bench.floor_apps:legacy_adapter"
    for key in ("direct", "context", "context-line"):
        case = next(case for case in cases if case.key == key)
        if case.group == "floor":
            assert "--no-access-log" in case.server.argv  # only the gateway's line is written


def test_without_granian_the_legacy_floor_skips_it_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(http_bench, "GRANIAN", tmp_path / "no-granian")
    cases = ablation_bench.cases("/legacy/hello", [], None, floor=True)
    assert "granian" not in [case.key for case in cases]
    assert "granian is not installed" in capsys.readouterr().out


def test_without_floor_no_floor_configuration_is_served() -> None:
    assert all(case.group != "floor" for case in ablation_bench.cases("/trivial", [], None))


def test_floor_refuses_a_path_it_has_no_app_for(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ablation_bench.main(["--floor", "--path", "/canary/flagged"])
    assert exit_info.value.code == 2
    assert "--floor measures /trivial, /new/hello, /legacy/hello only" in capsys.readouterr().err


def _result(cpu_us: float) -> WrkResult:
    return WrkResult(rps=1e6 / cpu_us, p50_ms=1, p99_ms=2, requests=1000, non_2xx=0,
                     socket_errors=0, cpu_us=cpu_us)  # fmt: skip


def test_the_floor_report_splits_the_gateway_cost_round_by_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = {
        "none": [_result(60.0), _result(70.0)],
        "direct": [_result(20.0), _result(22.0)],
        "context": [_result(28.0), _result(29.0)],
        "context-line": [_result(40.0), _result(45.0)],
    }
    ablation_bench._report_floor(runs, "/trivial")
    out = capsys.readouterr().out.splitlines()
    lines = {line[:38].strip(): line[38:].split()[0] for line in out if "µs" in line}
    assert lines == {
        "request context alone (no line)": "7.5",  # rounds 8 and 7
        "its JSON access line": "14.0",  # 12 and 16
        "the rest of the gateway": "22.5",  # 20 and 25
        "the whole gateway over direct": "44.0",  # 40 and 48
        # Issue 15's first target as a budget: bare uvicorn's CPU per request + 12 µs.
        "the floor (request context + line)": "42.5",
        "bare uvicorn + 12 µs": "33.0",
    }


def test_the_legacy_floor_states_the_issues_bars_from_the_same_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = {
        key: [_result(cpu)]
        for key, cpu in {
            "none": 170.0, "direct": 125.0, "context": 138.0, "context-line": 155.0,
            "gunicorn": 240.0, "granian": 77.0,
        }.items()
    }  # fmt: skip
    ablation_bench._report_floor(runs, "/legacy/hello")
    out = capsys.readouterr().out
    assert "1.5x gunicorn's rate                  160.0 µs" in out
    assert "0.7x granian's rate                   110.0 µs" in out


@pytest.mark.e2e
def test_a_floor_app_serves_the_bench_endpoint_and_writes_the_gateways_access_line(
    tmp_path: Path,
) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    argv = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port),
            "bench.floor_apps:legacy_logged", "--no-access-log"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(process, port, "/legacy/hello", log_path)
        response = httpx.get(
            f"http://{HOST}:{port}/legacy/hello", headers={"X-Request-ID": "floor-1"}
        )
        assert response.json() == {"hello": "legacy", "n": 1}
        assert response.headers["x-request-id"] == "floor-1"
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("request_id") == "floor-1"]
    assert (line["event"], line["path"], line["status"]) == ("request", "/legacy/hello", 200)
    assert list(line)[:10] == [
        "request_id", "method", "path", "route", "backend", "status", "duration_ms", "client",
        "user", "auth",
    ]  # fmt: skip
