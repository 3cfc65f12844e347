"""gateway.recent: remembered answers, bounded in count and in the size of what is kept."""

from __future__ import annotations

import tracemalloc

import pytest

from gateway.canonical import canonical_path
from gateway.recent import remember_recent
from gateway.routes import RouteTable, Rule


def test_short_arguments_are_remembered_long_ones_worked_out_each_time() -> None:
    calls: list[str] = []

    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    remembered = remember_recent(shout, size=2, longest=5)
    assert [remembered("ab"), remembered("ab"), remembered("abcdef"), remembered("abcdef")] == [
        "AB",
        "AB",
        "ABCDEF",
        "ABCDEF",
    ]
    assert calls == ["ab", "abcdef", "abcdef"]
    # Least recently used forgotten first: "ab" is worked out again after two others.
    remembered("c")
    remembered("d")
    remembered("ab")
    assert calls[-1] == "ab"
    assert remembered.cache_info().currsize == 2


def test_a_raise_is_never_remembered() -> None:
    calls = 0

    def refuse(text: str) -> str:
        nonlocal calls
        calls += 1
        raise ValueError(text)

    remembered = remember_recent(refuse, size=8, longest=64)
    for _ in range(3):
        with pytest.raises(ValueError, match="no"):
            remembered("no")
    assert calls == 3


def test_hostile_distinct_long_paths_keep_the_memory_small() -> None:
    # A client sending thousands of distinct 8 KiB paths: remembered, they would hold about
    # 1,024 x 8 KiB per table and again for the canonical path (over 16 MiB here).
    table = RouteTable([Rule("/api/{rest:path}", frozenset({"GET"}))])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for number in range(3000):
            path = f"/api/{number:08d}/" + "x" * 8192
            assert canonical_path(path.encode()) == path
            match = table.match("GET", path)
            assert match is not None
            assert match.params["rest"].startswith(f"{number:08d}/")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024 * 1024
