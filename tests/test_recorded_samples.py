"""The samples file format, the route lookup every ROUTE argument goes through, and the
schema inferred from recorded JSON bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.recording.samples import (
    Body,
    RecordedIdentity,
    RecordedRequest,
    RecordedResponse,
    Sample,
    SampleFileError,
    append_samples,
    read_samples,
    sample_file_name,
)
from gateway.route_lookup import RouteNotFound, find_route
from gateway.schema_infer import infer_schema
from gateway.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def _sample(book_id: int) -> Sample:
    return Sample(
        route="GET /api/books/{book_id:int}",
        recorded_at="2026-12-05T09:00:00Z",
        request=RecordedRequest(
            method="GET",
            path=f"/api/books/{book_id}",
            query="fields=title",
            headers=(("accept", "application/json"),),
            identity=RecordedIdentity("alice", ("admin",), "session"),
        ),
        response=RecordedResponse(
            status=200,
            headers=(("content-type", "application/json"),),
            body=Body.of(b'{"id": %d, "title": "Dune"}' % book_id, "application/json", limit=1024),
        ),
    )


def test_samples_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "samples" / sample_file_name("GET", "/api/books/{book_id:int}")
    append_samples(path, [_sample(1)])
    append_samples(path, [_sample(2)])

    samples = read_samples(path)

    assert path.name == "get-api-books-book_id-int.jsonl"
    assert samples == [_sample(1), _sample(2)]
    assert samples[1].response.json() == {"id": 2, "title": "Dune"}
    assert samples[0].request.identity.roles == ("admin",)


@pytest.mark.parametrize(
    ("raw", "content_type", "encoding", "truncated", "again"),
    [
        (b'{"a": 1}', "application/json", "json", False, b'{"a":1}'),
        (b'{"a": 1', "application/json", "text", False, b'{"a": 1'),
        (b"name,total\n", "text/csv", "text", False, b"name,total\n"),
        (b"\xff\xfe\x00", "application/octet-stream", "base64", False, b"\xff\xfe\x00"),
        (b'{"a": "0123456789"}', "application/json", "text", True, b'{"a": "012'),
        (b"", "application/json", None, False, b""),
    ],
)
def test_bodies_keep_json_as_json_and_cut_long_ones(
    raw: bytes, content_type: str, encoding: str | None, truncated: bool, again: bytes
) -> None:
    body = Body.of(raw, content_type, limit=10 if truncated else 1024)

    assert (body.encoding, body.truncated, body.raw()) == (encoding, truncated, again)


def test_a_bad_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "get-x.jsonl"
    path.write_text(_sample(1).to_line() + "\n" + '{"v": 9}\n', encoding="utf-8")

    with pytest.raises(SampleFileError, match=r"get-x\.jsonl:2: .*version 9"):
        read_samples(path)


def test_missing_file_means_no_samples_yet(tmp_path: Path) -> None:
    assert read_samples(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(
    ("text", "label", "index"),
    [
        ("GET /api/me", "GET /api/me", 4),
        ("/api/me", "GET /api/me", 4),
        ("get /api/books/{book_id:int}", "GET /api/books/{book_id:int}", 1),
        ("GET /api/books/7", "GET /api/books/{book_id:int}", 1),
        ("POST /api/books", "POST /api/books", 2),
    ],
)
def test_a_route_argument_names_one_method_of_one_route(text: str, label: str, index: int) -> None:
    settings = load_settings(ROOT / "gateway.toml", {})

    found = find_route(settings, text)

    assert (found.label, found.index) == (label, index)
    assert found.settings is settings.routes[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GET /api/meh", r"no route 'GET /api/meh'.*did you mean 'GET /api/me'"),
        ("DELETE /api/me", r"no route 'DELETE /api/me'"),
        ("/api/books", r"several routes; say which: 'GET /api/books', 'POST /api/books'"),
    ],
)
def test_an_unknown_or_ambiguous_route_says_what_exists(text: str, message: str) -> None:
    settings = load_settings(ROOT / "gateway.toml", {})

    with pytest.raises(RouteNotFound, match=message):
        find_route(settings, text)


def test_inferred_schema_requires_only_keys_every_sample_has() -> None:
    schema = infer_schema(
        [
            {"id": 1, "price": 10, "tags": [], "note": None},
            {"id": 2, "price": 9.5, "tags": ["sf"]},
        ]
    )

    assert schema == {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "price": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "null"},
        },
        "required": ["id", "price", "tags"],
    }


def test_inferred_schema_unites_types_and_allows_anything_without_samples() -> None:
    assert infer_schema([1, "x", None]) == {"type": ["string", "integer", "null"]}
    assert infer_schema([[{"a": 1}, {"a": 2, "b": True}]]) == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
            "required": ["a"],
        },
    }
    assert infer_schema([]) == {}
