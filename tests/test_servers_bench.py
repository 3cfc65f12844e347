"""What bench/servers_bench.py and bench/http_bench.py measure, with and without granian (a
bench-only extra): the case lists their options give. Nothing here starts a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import http_bench, servers_bench, workers_bench


@pytest.fixture
def granian_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(http_bench, "GRANIAN", tmp_path / "no-granian")


@pytest.fixture
def granian_present(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = tmp_path / "granian"
    installed.touch()
    monkeypatch.setattr(http_bench, "GRANIAN", installed)


@pytest.mark.usefixtures("granian_present")
def test_every_route_is_served_by_every_server_the_same_gateway() -> None:
    args = servers_bench.parse_args([])
    assert [(case.path, case.label) for case in args.cases] == [
        (route, server)
        for route in ("/trivial", "/new/hello", "/legacy/hello")
        for server in ("gateway serve", "uvicorn httptools", "uvicorn h11", "granian ASGI")
    ]
    by_label = {case.label: case.server for case in args.cases}
    assert by_label["gateway serve"].argv[1:4] == ("serve", "-c", "bench/gateway.toml")
    for label, http in (("uvicorn httptools", "httptools"), ("uvicorn h11", "h11")):
        argv = by_label[label].argv
        assert argv[argv.index("--http") + 1] == http
        assert "gateway.asgi:app" in argv
        assert "--no-proxy-headers" in argv
    granian = by_label["granian ASGI"].argv
    assert granian[granian.index("--interface") + 1] == "asgi"
    for label in ("uvicorn httptools", "uvicorn h11", "granian ASGI"):
        assert by_label[label].env == (("GATEWAY_CONFIG", "bench/gateway.toml"),)


@pytest.mark.usefixtures("granian_absent")
def test_without_granian_its_cases_are_skipped_and_the_run_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = servers_bench.parse_args(["--routes", "/legacy/hello"])
    assert [case.label for case in args.cases] == [
        "gateway serve",
        "uvicorn httptools",
        "uvicorn h11",
    ]
    assert "granian is not installed" in capsys.readouterr().out


def test_http_bench_compares_the_legacy_route_with_granian_wsgi_only_when_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(http_bench, "GRANIAN", tmp_path / "no-granian")
    args = http_bench._parse_args([])
    assert "legacy.granian" not in {case.key for case in args.cases}
    assert "legacy route / granian WSGI" not in {ratio.label for ratio in args.ratios}
    assert "granian WSGI comparison is skipped" in capsys.readouterr().out

    (tmp_path / "granian").touch()
    monkeypatch.setattr(http_bench, "GRANIAN", tmp_path / "granian")
    args = http_bench._parse_args([])
    keys = [case.key for case in args.cases]
    # Listed, run and reported with the other legacy-route servers, not after the trivial ones.
    assert keys[keys.index("legacy.gateway") : keys.index("legacy.granian") + 1] == [
        "legacy.gateway",
        "legacy.gunicorn",
        "legacy.a2wsgi",
        "legacy.granian",
    ]
    granian = next(case for case in args.cases if case.key == "legacy.granian")
    assert granian.path == "/legacy/hello"
    assert "bench.apps:flask_app" in granian.server.argv
    ratio = next(r for r in args.ratios if r.label == "legacy route / granian WSGI")
    assert (ratio.numerator, ratio.denominator, ratio.target) == (
        "legacy.gateway",
        "legacy.granian",
        0.70,
    )


@pytest.mark.usefixtures("granian_absent")
@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--routes", "/nowhere"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        servers_bench.parse_args(argv)
    assert exc_info.value.code == 2


@pytest.mark.parametrize(("workers", "legacy_target"), [(1, 1.5), (2, 1.3)])
def test_workers_bench_gives_every_server_the_same_number_of_workers(
    workers: int, legacy_target: float
) -> None:
    cases = {case.key: case.server for case in workers_bench.cases(workers)}
    for key in ("legacy.gateway", "legacy.pinned", "new.gateway", "new.uvicorn", "new.logged"):
        argv = cases[key].argv
        assert argv[argv.index("--workers") + 1] == str(workers)
    gunicorn = cases["legacy.gunicorn"].argv
    assert gunicorn[gunicorn.index("-w") + 1] == str(workers)
    # The pinned gateway differs from the other by server.pin_workers alone.
    assert cases["legacy.pinned"].argv == cases["legacy.gateway"].argv
    assert cases["legacy.pinned"].env == (("GATEWAY_SERVER__PIN_WORKERS", "true"),)
    assert cases["legacy.gateway"].env == ()
    targets = {label: target for label, _, _, target in workers_bench.ratios(workers)}
    assert targets["legacy: gateway / gunicorn"] == legacy_target
    assert targets["new: gateway / uvicorn, no log"] == 0.85
