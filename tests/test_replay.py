"""``gateway parity`` and ``gateway.testing``: recorded samples replayed in process against the
demo's legacy app and its services, compared with the route's shadow rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import demo_config

from gateway.cli import main
from gateway.log import configure_logging
from gateway.recording.samples import (
    Body,
    RecordedIdentity,
    RecordedRequest,
    RecordedResponse,
    Sample,
    append_samples,
)
from gateway.retire import retire_edit
from gateway.route_lookup import find_route
from gateway.settings import load_settings
from gateway.testing import parity_cases

ALICE = RecordedIdentity("alice", ("admin",), "session")


def _sample(route: str, path: str, *, query: str = "", body: bytes = b"") -> Sample:
    method = route.split(" ", 1)[0]
    headers = (("content-type", "application/json"),) if body else ()
    return Sample(
        route=route,
        request=RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers=(("accept", "application/json"), *headers),
            body=Body.of(body, "application/json", limit=1024),
            identity=ALICE,
        ),
        response=RecordedResponse(status=200),
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    # `gateway parity` keeps its log to warnings; later tests expect info lines to be kept.
    configure_logging(format="console", level="info")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return demo_config(tmp_path)


def _write(config: Path, name: str, *samples: Sample) -> Path:
    path = config.parent / name
    append_samples(path, samples)
    return path


def _parity(config: Path, *args: str) -> int:
    return main(["parity", "--config", str(config), *args])


def test_samples_that_both_sides_answer_alike_pass(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _write(
        config,
        "books.jsonl",
        _sample("GET /api/books/{book_id:int}", "/api/books/1"),
        _sample("GET /api/books/{book_id:int}", "/api/books/999"),
    )

    status = _parity(config, "GET /api/books/{book_id:int}", "--samples", str(samples))

    out = capsys.readouterr().out
    assert status == 0, out
    assert "#1 GET /api/books/1 as alice (session): ok (legacy 200, catalog 200)" in out
    assert "#2 GET /api/books/999 as alice (session): ok (legacy 404, catalog 404)" in out
    assert out.rstrip().endswith("passed: 2 ok")


def test_a_difference_fails_with_its_json_pointer(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _write(config, "me.jsonl", _sample("GET /api/me", "/api/me"))

    status = _parity(config, "GET /api/me", "--samples", str(samples))

    out = capsys.readouterr().out
    assert status == 1
    assert "#1 GET /api/me as alice (session): MISMATCH (legacy 200, accounts 200)" in out
    assert '/display_name: added: legacy (absent), accounts "Alice"' in out
    assert out.rstrip().endswith("FAILED: 1 mismatch")


def test_the_json_report_names_pointer_and_both_values(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _write(config, "me.jsonl", _sample("GET /api/me", "/api/me"))

    status = _parity(config, "GET /api/me", "--samples", str(samples), "--json")

    report = json.loads(capsys.readouterr().out)
    assert status == 1
    assert report["passed"] is False
    assert report["outcomes"][0]["differences"] == [
        {"pointer": "/display_name", "kind": "added", "legacy": None, "new": '"Alice"'}
    ]


def test_the_routes_ignore_rule_is_honoured(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text().replace('# ignore = ["/display_name"]', 'ignore = ["/display_name"]')
    config.write_text(text)
    samples = _write(config, "me.jsonl", _sample("GET /api/me", "/api/me"))

    status = _parity(config, "GET /api/me", "--samples", str(samples))

    assert status == 0
    assert "#1 GET /api/me as alice (session): ok" in capsys.readouterr().out


def test_the_identity_recorded_is_the_identity_replayed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = _sample("GET /api/me", "/api/me")
    bob = Sample(
        bob.route,
        RecordedRequest("GET", "/api/me", identity=RecordedIdentity("bob", ("user",), "jwt")),
        bob.response,
    )
    anonymous = Sample(bob.route, RecordedRequest("GET", "/api/me"), bob.response)
    samples = _write(config, "me.jsonl", bob, anonymous)

    _parity(config, "GET /api/me", "--samples", str(samples), "--json")

    outcomes = json.loads(capsys.readouterr().out)["outcomes"]
    assert outcomes[0]["differences"][0]["new"] == '"Bob"'
    # Both sides refuse an anonymous caller alike (the legacy app's own 401 body).
    assert (outcomes[1]["legacy_status"], outcomes[1]["new_status"]) == (401, 401)


def test_unsafe_methods_run_only_with_allow_unsafe(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create = _sample(
        "POST /api/books", "/api/books", body=b'{"title": "T", "author": "A", "year": 1965}'
    )
    samples = _write(config, "create.jsonl", create)

    skipped = _parity(config, "POST /api/books", "--samples", str(samples))
    out = capsys.readouterr().out
    _parity(config, "POST /api/books", "--samples", str(samples), "--allow-unsafe", "--json")
    outcome = json.loads(capsys.readouterr().out)["outcomes"][0]

    assert skipped == 0
    assert "#1 POST /api/books as alice (session): skipped" in out
    assert "unsafe method POST: replay with --allow-unsafe" in out
    assert out.rstrip().endswith("nothing compared: 1 skipped")
    # Both sides created a book in the one demo database: the ids (and Location) differ.
    assert (outcome["legacy_status"], outcome["new_status"]) == (201, 201)
    assert "/id" in [difference["pointer"] for difference in outcome["differences"]]


def test_a_bad_samples_file_is_a_usage_error_naming_file_and_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _write(config, "me.jsonl", _sample("GET /api/me", "/api/me"))
    with samples.open("a") as out:
        out.write("{not json\n")

    status = _parity(config, "GET /api/me", "--samples", str(samples))

    assert status == 2
    assert f"gateway parity: {samples}:2: not a sample" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["GET /api/meh"], "no route 'GET /api/meh' in [[routes]]; did you mean 'GET /api/me'"),
        (["GET /api/me", "--samples", "missing.jsonl"], "missing.jsonl: no such file"),
        (["GET /api/me"], "no recorded samples for GET /api/me in "),
    ],
    ids=["unknown-route", "missing-file", "no-samples-yet"],
)
def test_usage_errors_exit_2_with_a_clear_message(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status = _parity(config, *args)

    assert status == 2
    assert message in capsys.readouterr().err


def test_parity_cases_give_one_case_per_sample_that_asserts_sameness(config: Path) -> None:
    _write(
        config,
        "var/samples/get-api-me.jsonl",
        _sample("GET /api/me", "/api/me", query="a=1"),
        _sample("GET /api/me", "/api/me"),
    )

    params = parity_cases("GET /api/me", config=config)

    assert [p.id for p in params] == ["1:/api/me?a=1", "2:/api/me"]
    with pytest.raises(AssertionError) as failure:
        params[0].values[0].assert_same()
    assert str(failure.value).splitlines()[1:] == [
        "#1 GET /api/me?a=1 as alice (session): MISMATCH (legacy 200, accounts 200)",
        '    /display_name: added: legacy (absent), accounts "Alice"',
    ]


def test_parity_cases_without_samples_is_one_skipped_case(config: Path) -> None:
    (param,) = parity_cases("GET /api/me", config=config)

    (mark,) = param.marks
    assert mark.name == "skip"
    assert mark.kwargs["reason"].startswith("no recorded samples for GET /api/me in ")
    assert '`gateway record "GET /api/me" --samples 20`' in mark.kwargs["reason"]


def _retire_api_me(config: Path) -> None:
    """``config`` with ``GET /api/me`` retired, as ``gateway retire`` leaves it."""
    index = find_route(load_settings(config, {}), "GET /api/me").index
    text = retire_edit(
        config.read_text(), index, endpoint="account.me", rule="/api/me", flag_heir=None
    )
    config.write_text(text)


def test_a_retired_route_has_no_parity_to_prove(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(config, "var/samples/get-api-me.jsonl", _sample("GET /api/me", "/api/me"))
    _retire_api_me(config)

    assert _parity(config, "GET /api/me") == 2
    assert (
        "gateway parity: GET /api/me is retired: accounts serves it alone, so there is no legacy "
        "side to compare with (delete its samples and its parity test)"
    ) in capsys.readouterr().err
    (param,) = parity_cases("GET /api/me", config=config)
    (mark,) = param.marks
    assert (param.id, mark.name) == ("retired", "skip")
    assert mark.kwargs["reason"].startswith("GET /api/me is retired: accounts serves it alone")
