"""``gateway.cookies.read_cookie`` picks the cookie Flask would pick, whatever the header holds,
including when it answers without parsing (the name absent from the header) or from its memory
of headers parsed before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_cookie

from gateway import cookies
from gateway.cookies import read_cookie, without_cookie

#: Names that overlap one another as text, so a name often occurs inside another cookie's name
#: or value without being a cookie of its own.
_NAMES = ["session", "xsession", "session2", "sess", "a", "é"]
_name = st.sampled_from(_NAMES)
_value = st.one_of(
    st.sampled_from(["", "1", "session", "x=session", '"a;session=b"', '"\\"q\\""', "é", " v "]),
    st.text(alphabet='asion=;" \t\\é,', max_size=12),
)
_pair = st.builds(lambda name, value: f"{name}={value}", _name, _value)
_header = st.lists(_pair, max_size=5).map("; ".join).map(lambda text: text.encode())


def _flask_reads(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """What Flask sees: the Cookie headers joined as the legacy adapter joins them, parsed by
    Werkzeug from the latin-1 text WSGI hands it, the first value of a name."""
    joined = b"; ".join(value for key, value in headers if key == b"cookie")
    return parse_cookie(joined.decode("latin-1")).get(name) if joined else None


@settings(max_examples=500, deadline=None)
@given(st.lists(_header, max_size=3), _name)
def test_reads_the_cookie_flask_reads(cookie_headers: list[bytes], name: str) -> None:
    headers = [(b"host", b"example.test"), *((b"cookie", value) for value in cookie_headers)]
    expected = _flask_reads(headers, name)
    assert read_cookie(headers, name) == expected
    # Asked again (now from the memory of parsed headers): the same answer.
    assert read_cookie(headers, name) == expected


def test_a_name_inside_another_cookie_is_not_that_cookie() -> None:
    headers = [(b"cookie", b'xsession=1; theme=session; b="session=2"')]
    assert read_cookie(headers, "session") is None
    assert read_cookie(headers, "xsession") == "1"


def test_the_first_of_a_name_wins_across_headers() -> None:
    headers = [(b"cookie", b"theme=dark"), (b"cookie", b"session=first; session=second")]
    assert read_cookie(headers, "session") == "first"
    assert read_cookie([(b"cookie", b"session=")], "session") == ""
    assert read_cookie([(b"accept", b"*/*")], "session") is None


def test_remembered_parses_are_bounded_and_per_header() -> None:
    cookies._first_values.cache_clear()
    for number in range(cookies._PARSED_LIMIT * 2):
        assert read_cookie([(b"cookie", f"session={number}".encode())], "session") == str(number)
    info = cookies._first_values.cache_info()
    assert info.currsize == cookies._PARSED_LIMIT
    assert info.misses == cookies._PARSED_LIMIT * 2
    # A header without the name is answered without parsing it, so it takes no room.
    read_cookie([(b"cookie", b"theme=dark")], "session")
    assert cookies._first_values.cache_info().misses == cookies._PARSED_LIMIT * 2


def test_without_cookie_removes_every_cookie_of_the_name_only() -> None:
    headers = [(b"cookie", b"session=1; xsession=2; session=3"), (b"cookie", b"session=4")]
    assert without_cookie(headers, "session") == [(b"cookie", b"xsession=2")]
