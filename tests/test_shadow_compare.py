from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.shadow.compare import (
    MAX_DIFFERENCES,
    Captured,
    CompareRules,
    Difference,
    compare,
    escape_token,
    matches_pattern,
    redact,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def response(
    doc: Any = None,
    *,
    raw: bytes | None = None,
    status: int = 200,
    content_type: str | None = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    keep: int | None = None,
) -> Captured:
    """A captured response; ``keep`` truncates the body to its first bytes, as capture does."""
    body = raw if raw is not None else json.dumps(doc).encode()
    if content_type is not None:
        headers = (("content-type", content_type), *headers)
    truncated = keep is not None and len(body) > keep
    kept = body[:keep] if truncated else body
    return Captured(status, headers, kept, hashlib.sha256(body).hexdigest(), truncated)


def diff(primary: Any, candidate: Any, **rules: Any) -> list[Difference]:
    return compare(response(primary), response(candidate), CompareRules(**rules))


def changed(pointer: str, primary: str | None, candidate: str | None) -> Difference:
    return Difference(pointer, pointer, "changed", primary, candidate)


def changed_at(pointer: str, pattern: str, primary: str, candidate: str) -> Difference:
    return Difference(pointer, pattern, "changed", primary, candidate)


def digest_of(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()[:16]}…"


# -- equal answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "candidate"),
    [
        pytest.param(b'{"a": 1, "b": [1, 2]}', b'{"a": 1, "b": [1, 2]}', id="same bytes"),
        pytest.param(b'{"a": 1, "b": 2}', b'{"b":2,"a":1}', id="key order and spaces"),
        pytest.param(b'{"n": 1}', b'{"n": 1.0}', id="int and float are one number type"),
        pytest.param(b"[]", b" [ ] ", id="empty arrays"),
        pytest.param(b"", b"", id="empty bodies"),
    ],
)
def test_equal_answers_have_no_differences(primary: bytes, candidate: bytes) -> None:
    assert compare(response(raw=primary), response(raw=candidate), CompareRules()) == []


def test_status_difference() -> None:
    primary, candidate = response({"a": 1}), response({"a": 1}, status=500)
    assert compare(primary, candidate, CompareRules()) == [changed("status", "200", "500")]


# -- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "candidate", "expected"),
    [
        ("application/json; charset=utf-8", "Application/JSON;charset=UTF-8", []),
        ("application/json ;charset=utf-8", "application/json; charset=utf-8", []),
        (
            "application/json",
            "application/problem+json",
            [changed("header:content-type", "application/json", "application/problem+json")],
        ),
    ],
)
def test_content_type_ignores_case_and_spaces_around_parameters(
    primary: str, candidate: str, expected: list[Difference]
) -> None:
    body = b'{"a": 1}'  # the same bytes on both sides: only the header can differ
    result = compare(
        response(raw=body, content_type=primary),
        response(raw=body, content_type=candidate),
        CompareRules(),
    )
    assert result == expected


@pytest.mark.parametrize(
    ("primary", "candidate", "expected"),
    [
        (
            (("cache-control", "no-store"),),
            (),
            Difference("header:cache-control", "header:cache-control", "missing", "no-store", None),
        ),
        (
            (),
            (("cache-control", "no-store"),),
            Difference("header:cache-control", "header:cache-control", "added", None, "no-store"),
        ),
        (
            (("cache-control", "no-store"), ("cache-control", "private")),
            (("cache-control", "max-age=60"),),
            changed("header:cache-control", "no-store", "max-age=60"),
        ),
    ],
    ids=["only in primary", "only in candidate", "first value compared"],
)
def test_listed_headers(
    primary: tuple[tuple[str, str], ...],
    candidate: tuple[tuple[str, str], ...],
    expected: Difference,
) -> None:
    rules = CompareRules(headers=("content-type", "Cache-Control"))
    result = compare(response({}, headers=primary), response({}, headers=candidate), rules)
    assert result == [expected]


@pytest.mark.parametrize(
    ("name", "primary", "candidate", "expected"),
    [
        ("set-cookie", "sid=abc; HttpOnly", "sid=def; HttpOnly", ("[redacted]", "[redacted]")),
        ("cookie", "a=1", None, ("[redacted]", None)),
        ("authorization", "Basic YWxpY2U6cHc=", "Basic Ym9iOnB3", ("[redacted]", "[redacted]")),
        ("x-api-key", "k1", "k2", ("[redacted]", "[redacted]")),
        ("x-trace", "Bearer abc", "none", ("[redacted]", "none")),
    ],
)
def test_credential_headers_are_compared_but_never_rendered(
    name: str, primary: str, candidate: str | None, expected: tuple[str | None, ...]
) -> None:
    primary_headers = ((name, primary),)
    candidate_headers = ((name, candidate),) if candidate is not None else ()
    result = compare(
        response({}, headers=primary_headers),
        response({}, headers=candidate_headers),
        CompareRules(headers=(name,)),
    )
    assert [(d.pointer, d.primary, d.candidate) for d in result] == [(f"header:{name}", *expected)]


def test_equal_credential_headers_are_not_reported() -> None:
    headers = (("set-cookie", "sid=abc"),)
    rules = CompareRules(headers=("set-cookie",))
    assert compare(response({}, headers=headers), response({}, headers=headers), rules) == []


def test_header_returns_the_first_value_of_a_lower_case_name() -> None:
    captured = response({}, headers=(("x-a", "1"), ("x-a", "2")))
    assert (captured.header("x-a"), captured.header("x-b")) == ("1", None)


# -- JSON bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "candidate", "expected"),
    [
        pytest.param(
            {"book": {"author": {"name": "Ann"}}},
            {"book": {"author": {"name": "Bob"}}},
            [changed("/book/author/name", '"Ann"', '"Bob"')],
            id="nested change",
        ),
        pytest.param(
            {"a/b": {"m~n": 1}},
            {"a/b": {"m~n": 2}},
            [changed("/a~1b/m~0n", "1", "2")],
            id="escaped tokens",
        ),
        pytest.param(
            {"a": 1, "b": 2},
            {"b": 2, "c": 3},
            [
                Difference("/a", "/a", "missing", "1", None),
                Difference("/c", "/c", "added", None, "3"),
            ],
            id="keys only on one side",
        ),
        pytest.param(
            {"books": [{"t": "A"}, {"t": "B"}]},
            {"books": [{"t": "A"}, {"t": "C"}]},
            [Difference("/books/1/t", "/books/*/t", "changed", '"B"', '"C"')],
            id="pattern writes array indices as *",
        ),
        pytest.param(
            [1, 2],
            [1, 2, {"x": [3]}],
            [Difference("/2", "/*", "added", None, '{"x":[3]}')],
            id="longer candidate array",
        ),
        pytest.param(
            [1, 2, 3],
            [1],
            [
                Difference("/1", "/*", "missing", "2", None),
                Difference("/2", "/*", "missing", "3", None),
            ],
            id="shorter candidate array",
        ),
        pytest.param("a", "b", [changed("", '"a"', '"b"')], id="the root is the empty pointer"),
    ],
)
def test_structural_differences(primary: Any, candidate: Any, expected: list[Difference]) -> None:
    assert diff(primary, candidate) == expected


@pytest.mark.parametrize(
    ("primary", "candidate", "rendered"),
    [
        (True, 1, ("true", "1")),
        (False, 0, ("false", "0")),
        (1, "1", ("1", '"1"')),
        (None, 0, ("null", "0")),
        ({}, [], ("{}", "[]")),
        ([1], {"0": 1}, ("[1]", '{"0":1}')),
    ],
)
def test_json_type_changes(primary: Any, candidate: Any, rendered: tuple[str, str]) -> None:
    assert diff({"v": primary}, {"v": candidate}) == [Difference("/v", "/v", "type", *rendered)]


@pytest.mark.parametrize(
    ("primary", "candidate", "tolerance", "equal"),
    [
        (1.0, 1.0000001, 1e-6, True),
        (1.0, 1.0000001, 0.0, False),
        (1, 1.0000001, 1e-6, True),
        (1, 1.0, 0.0, True),
        (1.0, 1.1, 1e-6, False),
        (1, 2, 5.0, False),  # two ints are compared exactly: the tolerance is for floats
    ],
)
def test_float_tolerance(primary: float, candidate: float, tolerance: float, equal: bool) -> None:
    result = diff({"n": primary}, {"n": candidate}, float_tolerance=tolerance)
    assert result == ([] if equal else [changed("/n", str(primary), str(candidate))])


# -- ignore and unordered rules ----------------------------------------------------------------


def test_ignore_with_a_wildcard_over_array_elements() -> None:
    primary = {"books": [{"id": 1, "updated_at": "t1"}, {"id": 2, "updated_at": "t2"}]}
    candidate = {"books": [{"id": 1, "updated_at": "t8"}, {"id": 3}]}
    result = diff(primary, candidate, ignore=("/books/*/updated_at",))
    assert result == [Difference("/books/1/id", "/books/*/id", "changed", "2", "3")]


def test_ignore_covers_a_whole_subtree_but_not_a_longer_key() -> None:
    primary = {"meta": {"generated_at": 1, "host": "a"}, "metadata": 1}
    candidate = {"meta": {"generated_at": 2, "region": "b"}, "metadata": 2}
    assert diff(primary, candidate, ignore=("/meta",)) == [changed("/metadata", "1", "2")]
    assert diff(primary, {"metadata": 1}, ignore=("/meta",)) == []


def test_ignore_names_pseudo_locations() -> None:
    primary, candidate = response(raw=b"<p>1</p>", content_type="text/html"), response(raw=b"2")
    rules = CompareRules(headers=("content-type",), ignore=("body", "header:content-type"))
    assert compare(primary, candidate, rules) == []


@pytest.mark.parametrize(
    ("primary", "candidate", "expected"),
    [
        pytest.param(["a", "b", "c"], ["c", "a", "b"], [], id="permuted"),
        pytest.param(["a", "b", "b"], ["b", "a", "b"], [], id="same multiset"),
        # Indices are positions after sorting: a, b, c against a, bb, c.
        pytest.param(
            ["a", "b", "c"],
            ["c", "bb", "a"],
            [changed_at("/tags/1", "/tags/*", '"b"', '"bb"')],
            id="one element differs",
        ),
        pytest.param(
            ["b", "a", "b"],
            ["b", "a"],
            [Difference("/tags/2", "/tags/*", "missing", '"b"', None)],
            id="one element fewer",
        ),
        pytest.param(
            ["a", "b"],
            ["b", "b"],
            [changed_at("/tags/0", "/tags/*", '"a"', '"b"')],
            id="different multiset",
        ),
    ],
)
def test_unordered_arrays_are_multisets(
    primary: list[str], candidate: list[str], expected: list[Difference]
) -> None:
    assert diff({"tags": primary}, {"tags": candidate}, unordered=("/tags",)) == expected


def test_unordered_applies_to_the_named_array_only() -> None:
    primary, candidate = {"a": [[1, 2]]}, {"a": [[2, 1]]}
    assert diff(primary, candidate, unordered=("/a",)) == [
        changed_at("/a/0/0", "/a/*/*", "1", "2"),
        changed_at("/a/0/1", "/a/*/*", "2", "1"),
    ]
    assert diff(primary, candidate, unordered=("/a/*",)) == []


def test_unordered_pairs_elements_without_their_ignored_fields() -> None:
    # "at" sorts before "id": without removing it, the sort would pair id 1 with id 2.
    primary = {"items": [{"at": "9", "id": 1}, {"at": "1", "id": 2}]}
    candidate = {"items": [{"at": "1", "id": 1}, {"at": "9", "id": 2}]}
    rules = {"unordered": ("/items",), "ignore": ("/items/*/at",)}
    assert diff(primary, candidate, **rules) == []
    assert diff(primary, {"items": [{"at": "0", "id": 1}, {"at": "0", "id": 3}]}, **rules) == [
        changed_at("/items/1/id", "/items/*/id", "2", "3")
    ]


def test_nested_unordered_arrays_pair_by_their_sorted_contents() -> None:
    primary = {"groups": [{"tags": ["z", "a"]}, {"tags": ["m"]}]}
    candidate = {"groups": [{"tags": ["m"]}, {"tags": ["a", "z"]}]}
    assert diff(primary, candidate, unordered=("/groups", "/groups/*/tags")) == []


@pytest.mark.parametrize(
    ("pattern", "pointer", "expected"),
    [
        ("/books/*/updated_at", "/books/3/updated_at", True),
        ("/books/*/updated_at", "/books/*/updated_at", True),
        ("/books/*/updated_at", "/books/3/title", False),
        ("/books/3/updated_at", "/books/*/updated_at", False),
        ("/meta", "/meta/generated_at", True),
        ("/meta", "/metadata", False),
        ("/meta/generated_at", "/meta", False),
        ("", "/anything/below", True),
        ("/a~1b", "/a~1b/c", True),
        ("/a", "/a~1b", False),
        ("status", "status", True),
        ("body", "/body", False),
        ("", "body", False),
        ("header:date", "header:date", True),
    ],
)
def test_matches_pattern(pattern: str, pointer: str, expected: bool) -> None:
    assert matches_pattern(pattern, pointer) is expected


@pytest.mark.parametrize(
    ("token", "escaped"), [("a/b", "a~1b"), ("m~n", "m~0n"), ("~1", "~01"), ("/~", "~1~0")]
)
def test_escape_token(token: str, escaped: str) -> None:
    assert escape_token(token) == escaped


# -- bodies compared by digest -----------------------------------------------------------------


def test_non_json_bodies_are_compared_by_digest() -> None:
    primary = response(raw=b"<p>one</p>", content_type="text/html")
    candidate = response(raw=b"<p>two!</p>", content_type="text/html")
    assert compare(primary, candidate, CompareRules()) == [
        changed(
            "body",
            f"{digest_of(b'<p>one</p>')} (10 bytes)",
            f"{digest_of(b'<p>two!</p>')} (11 bytes)",
        )
    ]


def test_truncated_json_is_compared_by_digest() -> None:
    primary_body, candidate_body = b'{"a": 1, "pad": "xxxx"}', b'{"a": 2, "pad": "xxxx"}'
    primary = response(raw=primary_body, keep=10)
    candidate = response(raw=candidate_body)
    assert compare(primary, candidate, CompareRules()) == [
        changed(
            "body",
            f"{digest_of(primary_body)} (over 10 bytes)",
            f"{digest_of(candidate_body)} (23 bytes)",
        )
    ]


@pytest.mark.parametrize(
    ("candidate", "label"),
    [
        (response(raw=b"<html></html>", content_type="text/html; charset=utf-8"), "text/html"),
        (response(raw=b"<html></html>", content_type=None), "no content-type"),
        (response(raw=b"<html></html>"), "invalid JSON"),
    ],
    ids=["html", "no content-type", "json content type that does not parse"],
)
def test_json_against_a_body_that_is_not_json_is_a_type_difference(
    candidate: Captured, label: str
) -> None:
    body = b'{"a": 1}'
    assert compare(response(raw=body), candidate, CompareRules(headers=())) == [
        Difference(
            "body",
            "body",
            "type",
            f"JSON {digest_of(body)} (8 bytes)",
            f"{label} {digest_of(b'<html></html>')} (13 bytes)",
        )
    ]


@pytest.mark.parametrize("depth", [201, 1000, 5000])
def test_json_nested_too_deep_is_compared_by_digest(depth: int) -> None:
    deep = b"[" * depth + b"0" + b"]" * depth
    other = b"[" * depth + b"1" + b"]" * depth
    size = f"({len(deep)} bytes)"
    assert compare(response(raw=deep), response(raw=other), CompareRules()) == [
        changed("body", f"{digest_of(deep)} {size}", f"{digest_of(other)} {size}")
    ]


def test_json_nested_200_deep_is_walked() -> None:
    deep, other = b"[" * 200 + b"0" + b"]" * 200, b"[" * 200 + b"1" + b"]" * 200
    result = compare(response(raw=deep), response(raw=other), CompareRules())
    assert result == [changed_at("/0" * 200, "/*" * 200, "0", "1")]


# -- redaction and limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "candidate", "expected"),
    [
        ({"password": "a"}, {"password": "b"}, changed("/password", "[redacted]", "[redacted]")),
        (
            {"Access-Token": 1},
            {},
            Difference("/Access-Token", "/Access-Token", "missing", "[redacted]", None),
        ),
        (
            {"credentials": {"user": "u1"}},
            {"credentials": {"user": "u2"}},
            changed("/credentials/user", "[redacted]", "[redacted]"),
        ),
        ({"note": JWT}, {"note": "plain"}, changed("/note", "[redacted]", '"plain"')),
        (
            {"note": "Bearer abc"},
            {"note": "bearer def"},
            changed("/note", "[redacted]", "[redacted]"),
        ),
        (
            {"user": {"name": "ann", "password": "pw", "links": [f"/x?t={JWT}"]}},
            {"user": "gone"},
            Difference(
                "/user",
                "/user",
                "type",
                '{"name":"ann","password":"[redacted]","links":["[redacted]"]}',
                '"gone"',
            ),
        ),
    ],
    ids=["secret key", "secret key any case", "below a secret key", "jwt", "bearer", "inside"],
)
def test_secret_values_are_redacted(primary: Any, candidate: Any, expected: Difference) -> None:
    assert diff(primary, candidate) == [expected]


@pytest.mark.parametrize(
    ("key", "value", "rendered"),
    [
        ("x-session-id", "abc", "[redacted]"),
        ("X-Api-Key", "abc", "[redacted]"),
        ("db_passwd", "abc", "[redacted]"),
        ("private_key", "abc", "[redacted]"),
        ("note", JWT, "[redacted]"),
        ("note", f"see {JWT} here", "[redacted]"),
        ("note", "Bearer abc", "[redacted]"),
        ("note", "the bearer of news", "the bearer of news"),
        ("note", "x" * 200, "x" * 119 + "…"),
        ("note", "x" * 120, "x" * 120),
    ],
)
def test_redact(key: str, value: str, rendered: str) -> None:
    assert redact(key, value) == rendered


def test_long_values_are_cut_to_120_characters() -> None:
    (difference,) = diff({"text": "a" * 500}, {"text": "b"})
    assert difference.primary == '"' + "a" * 118 + "…"
    assert len(difference.primary) == 120


def test_at_most_max_differences_are_returned() -> None:
    primary = {f"k{i:03}": i for i in range(100)}
    candidate = {f"k{i:03}": -i - 1 for i in range(100)}
    result = compare(response(primary), response(candidate, status=500), CompareRules())
    assert len(result) == MAX_DIFFERENCES == 50
    assert [d.pointer for d in result[:3]] == ["status", "/k000", "/k001"]
    assert result[-1].pointer == "/k048"


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


def leaves(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The paths to every scalar and empty container in ``value``."""
    if isinstance(value, dict) and value:
        return [p for key, child in value.items() for p in leaves(child, (*path, key))]
    if isinstance(value, list) and value:
        return [p for i, child in enumerate(value) for p in leaves(child, (*path, i))]
    return [path]


def replaced(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def resolve(value: Any, pointer: str) -> Any:
    """The value a JSON Pointer names (RFC 6901 section 4)."""
    for token in pointer.split("/")[1:] if pointer else []:
        key = token.replace("~1", "/").replace("~0", "~")
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def reformatted(value: Any) -> Captured:
    # Other bytes for the same value, so that the digests differ and the walk runs.
    return response(raw=json.dumps(value, indent=1, sort_keys=True).encode())


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_value_equals_itself(value: Any) -> None:
    assert compare(response(value), reformatted(value), CompareRules()) == []


@settings(max_examples=300, deadline=None)
@given(json_values, st.data())
def test_one_changed_leaf_is_one_difference_at_that_leaf(value: Any, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(leaves(value)))
    old = resolve(value, "".join("/" + escape_token(str(t)) for t in path))
    new = old + "!" if isinstance(old, str) else "changed"
    candidate = replaced(value, path, new)
    (difference,) = compare(response(value), reformatted(candidate), CompareRules())
    assert resolve(value, difference.pointer) == old
    assert resolve(candidate, difference.pointer) == new
