"""The canonical path: ambiguous spellings are refused before any backend sees them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.canonical import canonical_path
from gateway.errors import BadRequest


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"/", "/"),
        (b"/api/books/1", "/api/books/1"),
        (b"/api/books/", "/api/books/"),
        (b"/caf%C3%A9", "/caf\u00e9"),
        (b"/a%20b", "/a b"),
        # Decoded once: %25 becomes a literal %, never a second round of decoding.
        (b"/a%252Fb", "/a%2Fb"),
        (b"/a/...", "/a/..."),
        (b"/a/.hidden", "/a/.hidden"),
    ],
)
def test_accepted(raw: bytes, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"//admin/users", "empty or dot segment"),
        (b"/api//books", "empty or dot segment"),
        (b"/a/./b", "empty or dot segment"),
        (b"/a/../admin", "empty or dot segment"),
        (b"/a/%2e%2e/admin", "empty or dot segment"),
        (b"/a/.", "empty or dot segment"),
        (b"/a/..", "empty or dot segment"),
        (b"/a%2Fb", "encoded '/'"),
        (b"/a%2fb", "encoded '/'"),
        (b"/a%5Cb", "encoded '/'"),
        (b"/a\\b", "control character or '\\'"),
        (b"/a%00b", "control character"),
        (b"/a%0d%0aSet-Cookie:x", "control character"),
        (b"/a\x7f", "control character"),
        (b"/a%ff", "not valid UTF-8"),
        (b"/a%C3", "not valid UTF-8"),
        (b"*", "must start with '/'"),
        (b"http://evil/", "must start with '/'"),
    ],
)
def test_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match="path") as caught:
        canonical_path(raw)
    assert reason in caught.value.reason
    assert caught.value.status == 400


@given(st.binary(max_size=40))
def test_whatever_is_accepted_is_unambiguous(tail: bytes) -> None:
    try:
        path = canonical_path(b"/" + tail)
    except BadRequest:
        return
    segments = path.split("/")[1:]
    # No empty segment except a trailing slash, no dot segments, nothing a parser could split.
    assert all(segments[:-1])
    assert not any(segment in (".", "..") for segment in segments)
    assert "\\" not in path
    assert not any(ord(char) < 0x20 or ord(char) == 0x7F for char in path)


def test_a_refused_path_is_refused_every_time_and_an_accepted_one_stays_the_same() -> None:
    # Answers are remembered: a refusal must not be (each call raises), an answer must not drift.
    for _ in range(3):
        with pytest.raises(BadRequest, match="dot segment"):
            canonical_path(b"/api/%2e%2e/admin")
        assert canonical_path(b"/api/books/%31") == "/api/books/1"
