"""Compare two captured HTTP responses and say where they differ.

The pure part of shadow traffic: given the primary's and the candidate's answers (or two answers
of the primary, to learn noise), list the differences, each at a JSON Pointer (RFC 6901) into the
JSON body or at ``status``, ``header:<name>`` or ``body``. A difference's ``pattern`` (array
indices written ``*``) is what a caller collects as noise and passes back as an ``ignore`` rule.

    >>> import hashlib
    >>> def captured(body: bytes) -> Captured:
    ...     headers = (("content-type", "application/json"),)
    ...     return Captured(200, headers, body, hashlib.sha256(body).hexdigest())
    >>> compare(captured(b'{"n": 1}'), captured(b'{"n": 2}'), CompareRules())
    [Difference(pointer='/n', pattern='/n', kind='changed', primary='1', candidate='2')]

Compared in this order, stopping at ``MAX_DIFFERENCES``: the status; the first value of each
header in ``CompareRules.headers`` (``content-type`` ignoring case and spaces around ``;``); the
body. Equal digests end the body's comparison, whatever the content types. The body is compared
as JSON when both sides have a JSON content type, neither is truncated, both parse and neither
nests deeper than 200 levels; a JSON body against one that is not JSON is a ``type`` difference
at ``body``; anything else is compared by digest. Objects are walked by sorted key, arrays by
index; ``1`` and ``1.0`` are the same number, ``true`` and ``1`` different types.

An ``ignore`` pattern skips what it names and everything below (a pseudo-location is matched
exactly). An ``unordered`` pattern names arrays (the array itself, not a parent) compared as
multisets: each side is sorted by the canonical JSON of its elements, taken with their ignored
subtrees removed and their own unordered arrays sorted, then compared by index. Indices below
such an array are positions in that sorted order, so ignore rules inside it should write ``*``
for that index; the float tolerance applies after this pairing.

Redaction is a best effort by key name and value shape: values under a key that looks secret
(``password``, ``token``, ``session``, ...), at any depth, and strings shaped like a JWT or a
``Bearer`` credential are rendered ``[redacted]``. A secret in another shape under an innocent
key is rendered as it is: do not compare endpoints that return secrets in free text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import orjson

#: The most differences ``compare`` returns; it stops looking once it has found this many.
MAX_DIFFERENCES = 50

# Deeper JSON is compared by digest. It keeps the recursive walk far from Python's recursion limit
# and below orjson.dumps' own limit (254 levels), which sort keys and renderings rely on.
_MAX_JSON_DEPTH = 200
_RENDER_LIMIT = 120
_REDACTED = "[redacted]"
# Keys (and header names) whose values are never rendered, searched in the lower-cased key.
_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|authorization|cookie|session|api_key|apikey|credential|private"
)
# Their values are never rendered, whatever the words above say.
_CREDENTIAL_HEADERS = frozenset({"set-cookie", "cookie", "authorization"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[^/;]+\+)?json")
_BEARER = re.compile(r"\s*bearer\s+\S", re.IGNORECASE)

Kind = Literal["changed", "missing", "added", "type"]


@dataclass(frozen=True, slots=True)
class Captured:
    """One response as the shadow machinery saw it."""

    status: int
    headers: tuple[tuple[str, str], ...]  # lower-case names, latin-1 values, in order received
    body: bytes  # the body, or its first bytes when truncated
    digest: str  # hex SHA-256 of the whole body, even when truncated
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first value of the lower-case header ``name``, or ``None``."""
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True, slots=True)
class CompareRules:
    """What to compare; the patterns are escaped as pointers are, with ``*`` for one token."""

    headers: tuple[str, ...] = ("content-type",)  # lower-case names of the headers compared
    ignore: tuple[str, ...] = ()  # never compared, with everything below them
    unordered: tuple[str, ...] = ()  # arrays compared as multisets
    float_tolerance: float = 0.0  # absolute, for two numbers of which at least one is a float


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference. ``kind``: the value differs, is only in the primary (``missing``), only
    in the candidate (``added``), or the JSON types differ. ``primary`` and ``candidate`` are
    short renderings, redacted and truncated, and None on the side where the value is missing."""

    pointer: str  # a JSON Pointer into the body ("" is the root), "status", "header:<name>", "body"
    pattern: str  # the pointer with every array index written "*"; else the same as pointer
    kind: Kind
    primary: str | None
    candidate: str | None


def escape_token(token: str) -> str:
    """One reference token of a JSON Pointer, escaped as RFC 6901 says."""
    return token.replace("~", "~0").replace("/", "~1")


def matches_pattern(pattern: str, pointer_or_pattern: str) -> bool:
    """Whether ``pattern`` covers a pointer (or a narrower pattern).

    ``*`` in the pattern matches exactly one token, and a pattern covers everything below what it
    names: ``/meta`` covers ``/meta/generated_at``. Pseudo-locations (``status``, ``body``,
    ``header:<name>``) only match themselves.
    """
    pattern_tokens, tokens = _tokens(pattern), _tokens(pointer_or_pattern)
    if pattern_tokens is None or tokens is None:
        return pattern == pointer_or_pattern
    return _covers(pattern_tokens, tokens)


def redact(key: str, value: str) -> str:
    """``[redacted]`` when the key looks secret or the value looks like a credential, else the
    value cut to 120 characters."""
    if looks_secret(key) or is_credential(value):
        return _REDACTED
    return _truncate(value)


def compare(primary: Captured, candidate: Captured, rules: CompareRules) -> list[Difference]:
    """The differences between two responses, at most ``MAX_DIFFERENCES`` of them."""
    comparison = _Comparison(rules)
    if primary.status != candidate.status:
        comparison.add_plain("status", "changed", str(primary.status), str(candidate.status))
    for name in rules.headers:
        _compare_header(name.lower(), primary, candidate, comparison)
    _compare_bodies(primary, candidate, comparison)
    return comparison.found


# Markers no JSON document can hold: the side of a location that has no value there, and the
# two ways a body is not a JSON value: not a JSON content type or unparsable; truncated or too
# deep (not known to be JSON, or not walked).
_ABSENT, _NOT_JSON, _OPAQUE = object(), object(), object()


class _Comparison:
    """The differences found so far, and the rules, prepared once."""

    def __init__(self, rules: CompareRules) -> None:
        self.rules = rules
        self.ignore = [t for p in rules.ignore if (t := _tokens(p)) is not None]
        self.unordered = [t for p in rules.unordered if (t := _tokens(p)) is not None]
        self.found: list[Difference] = []

    def full(self) -> bool:
        return len(self.found) >= MAX_DIFFERENCES

    def add_plain(
        self, location: str, kind: Kind, primary: str | None, candidate: str | None
    ) -> None:
        if not self.full() and location not in self.rules.ignore:
            self.found.append(Difference(location, location, kind, primary, candidate))

    def walk(
        self, a: object, b: object, ptr: tuple[str, ...], pat: tuple[str, ...], secret: bool
    ) -> None:
        """Compare two JSON values (or ``_ABSENT``) at ``ptr``; ``secret``: below a secret key."""
        if self.full() or self.ignored(ptr):
            return
        kind: Kind | None = None
        if a is _ABSENT or b is _ABSENT:
            kind = "missing" if b is _ABSENT else "added"
        elif _json_type(a) != _json_type(b):
            kind = "type"
        elif isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys()):
                if self.full():
                    break
                token = escape_token(key)
                a_value, b_value = a.get(key, _ABSENT), b.get(key, _ABSENT)
                below_secret = secret or looks_secret(key)
                self.walk(a_value, b_value, (*ptr, token), (*pat, token), below_secret)
        elif isinstance(a, list) and isinstance(b, list):
            if self.unordered_at(ptr):
                a, b = self.sorted_elements(a, ptr), self.sorted_elements(b, ptr)
            for i in range(max(len(a), len(b))):
                if self.full():
                    break
                a_item = a[i] if i < len(a) else _ABSENT
                b_item = b[i] if i < len(b) else _ABSENT
                self.walk(a_item, b_item, (*ptr, str(i)), (*pat, "*"), secret)
        elif not _equal_scalars(a, b, self.rules.float_tolerance):
            kind = "changed"
        if kind is not None:
            pointer, pattern = "".join("/" + t for t in ptr), "".join("/" + t for t in pat)
            rendered = _render(a, secret), _render(b, secret)
            self.found.append(Difference(pointer, pattern, kind, *rendered))

    def ignored(self, ptr: tuple[str, ...]) -> bool:
        return any(_covers(p, ptr) for p in self.ignore)

    def unordered_at(self, ptr: tuple[str, ...]) -> bool:
        return any(len(p) == len(ptr) and _covers(p, ptr) for p in self.unordered)

    def sorted_elements(self, items: list[object], ptr: tuple[str, ...]) -> list[object]:
        element = (*ptr, "*")
        return sorted(items, key=lambda item: _canonical(self.normalized(item, element)))

    def normalized(self, value: object, ptr: tuple[str, ...]) -> object:
        """``value`` without its ignored subtrees and with its unordered arrays sorted."""
        if isinstance(value, dict):
            children = ((k, v, (*ptr, escape_token(k))) for k, v in value.items())
            return {k: self.normalized(v, c) for k, v, c in children if not self.ignored(c)}
        if isinstance(value, list):
            elements = ((v, (*ptr, str(i))) for i, v in enumerate(value))
            items = [None if self.ignored(c) else self.normalized(v, c) for v, c in elements]
            if self.unordered_at(ptr):
                items.sort(key=_canonical)
            return items
        return value


def _compare_header(name: str, primary: Captured, candidate: Captured, out: _Comparison) -> None:
    a, b = primary.header(name), candidate.header(name)
    kind: Kind | None = None
    if a is None or b is None:
        kind = None if a == b else "missing" if b is None else "added"
    elif _header_value(name, a) != _header_value(name, b):
        kind = "changed"
    if kind is not None:
        out.add_plain(f"header:{name}", kind, _render_header(name, a), _render_header(name, b))


def _header_value(name: str, value: str) -> str:
    if name == "content-type":
        return ";".join(part.strip() for part in value.lower().split(";"))
    return value


def _render_header(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    return _REDACTED if name in _CREDENTIAL_HEADERS else redact(name, value)


def _compare_bodies(primary: Captured, candidate: Captured, out: _Comparison) -> None:
    if primary.digest == candidate.digest:
        return
    a, b = _parse(primary), _parse(candidate)
    if a is _OPAQUE or b is _OPAQUE or (a is _NOT_JSON and b is _NOT_JSON):
        out.add_plain("body", "changed", _describe(primary), _describe(candidate))
    elif a is _NOT_JSON or b is _NOT_JSON:
        rendered = _describe(primary, _body_label(primary, a))
        out.add_plain("body", "type", rendered, _describe(candidate, _body_label(candidate, b)))
    elif "body" not in out.rules.ignore:
        out.walk(a, b, (), (), secret=False)


def _media_type(captured: Captured) -> str:
    return (captured.header("content-type") or "").split(";")[0].strip().lower()


def _parse(captured: Captured) -> object:
    """The body's JSON value, or ``_NOT_JSON`` or ``_OPAQUE``."""
    if captured.truncated:
        return _OPAQUE
    if not _JSON_MEDIA_TYPE.fullmatch(_media_type(captured)):
        return _NOT_JSON
    try:
        value = orjson.loads(captured.body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses nesting past 1024 levels; such a body is JSON, just too deep to walk.
        return _OPAQUE if "depth" in str(exc) or "recursion" in str(exc) else _NOT_JSON
    return _OPAQUE if _deeper_than(value, _MAX_JSON_DEPTH) else value


def _deeper_than(value: object, limit: int) -> bool:
    # A loop, not recursion: this is the check that keeps the recursive walk safe.
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _body_label(captured: Captured, parsed: object) -> str:
    media_type = _media_type(captured)
    if parsed is not _NOT_JSON or _JSON_MEDIA_TYPE.fullmatch(media_type):
        return "JSON" if parsed is not _NOT_JSON else "invalid JSON"
    return media_type or "no content-type"


def _describe(captured: Captured, label: str = "") -> str:
    size = f"over {len(captured.body)}" if captured.truncated else str(len(captured.body))
    return f"{label + ' ' if label else ''}sha256:{captured.digest[:16]}… ({size} bytes)"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True == 1 in Python, not in JSON
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__  # str, list or dict


def _equal_scalars(a: object, b: object, tolerance: float) -> bool:
    if a == b:
        return True
    if isinstance(a, int | float) and isinstance(b, int | float):
        either_float = isinstance(a, float) or isinstance(b, float)
        return either_float and abs(a - b) <= tolerance
    return False


def _canonical(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _render(value: object, secret: bool) -> str | None:
    if value is _ABSENT:
        return None
    if secret or (isinstance(value, str) and is_credential(value)):
        return _REDACTED
    return _truncate(orjson.dumps(_scrubbed(value)).decode())


def _scrubbed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _REDACTED if looks_secret(k) else _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, str) and is_credential(value):
        return _REDACTED
    return value


def looks_secret(key: str) -> bool:
    """Whether a JSON key, form field or header name looks like it holds a secret (the
    recorder masks such values too, ``gateway.recording.redact``)."""
    folded = key.lower().replace("-", "_")  # header names: "x-api-key" looks like "api_key"
    return _SECRET_KEY.search(folded) is not None


def is_credential(value: str) -> bool:
    """Whether a string is shaped like a JWT or a ``Bearer`` credential."""
    return bool(_JWT.search(value) or _BEARER.match(value))


def _truncate(text: str) -> str:
    return text if len(text) <= _RENDER_LIMIT else text[: _RENDER_LIMIT - 1] + "…"


def _tokens(pointer: str) -> tuple[str, ...] | None:
    """The (still escaped) tokens of a pointer or pattern; None for a pseudo-location."""
    return tuple(pointer.split("/")[1:]) if pointer == "" or pointer.startswith("/") else None


def _covers(pattern: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    """Whether ``pattern`` names ``tokens`` or one of their ancestors."""
    if len(pattern) > len(tokens):
        return False
    return all(p in ("*", t) for p, t in zip(pattern, tokens[: len(pattern)], strict=True))
