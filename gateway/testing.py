"""Parity as test cases: one pytest case per recorded sample of a route.

::

    import pytest
    from gateway.testing import parity_cases

    @pytest.mark.parametrize("case", parity_cases("GET /admin/users", config="gateway.toml"))
    def test_parity(case):
        case.assert_same()

Each case replays its sample in process against the legacy app and the route's service
(``gateway.replay``) and compares the answers with the route's shadow rules;
``assert_same`` raises ``AssertionError`` with the readable report (JSON Pointer, legacy value,
new value). A route with no samples yet gives one skipped case that says how to record some; a
retired route (``gateway retire``), one that says the test can go.
Unsafe methods are skipped unless ``allow_unsafe=True``: then point both sides at a scratch
database. ``pytest -p gateway.pytest_plugin --gateway-parity`` collects the same cases for every
route that has samples, without a test module.

A wrong config, an unknown route or a broken samples file raises at collection: a parity test
that cannot run must not look like one that passed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.recording.samples import Sample, read_samples, sample_path
from gateway.replay.replay import (
    Outcome,
    Replayer,
    no_samples_message,
    retired_message,
    skip_reason,
)
from gateway.replay.report import render_outcome
from gateway.route_lookup import FoundRoute, find_route
from gateway.settings import Settings, load_settings


@dataclass(frozen=True, slots=True)
class ParityCase:
    """One sample of one route, ready to replay."""

    settings: Settings
    route: FoundRoute
    sample: Sample
    #: The sample's position in its file, from 1.
    index: int
    source: Path
    allow_unsafe: bool = False

    @property
    def id(self) -> str:
        """``3:/api/books/7?fields=title``: the sample's index, path and query."""
        request = self.sample.request
        return f"{self.index}:{request.path}" + (f"?{request.query}" if request.query else "")

    def skip_reason(self) -> str | None:
        return skip_reason(self.route, self.sample, allow_unsafe=self.allow_unsafe)

    def replay(self) -> Outcome:
        """Replay the sample against both sides (each built afresh, lifespans and all)."""
        return asyncio.run(self._replay())

    async def _replay(self) -> Outcome:
        async with Replayer(self.settings, self.route) as replayer:
            return await replayer.replay(self.index, self.sample, allow_unsafe=self.allow_unsafe)

    def assert_same(self) -> None:
        """Pass when both sides answered alike; ``AssertionError`` with the report when not
        (a skipped sample skips the test)."""
        outcome = self.replay()
        if outcome.status == "skipped":
            import pytest

            pytest.skip(outcome.reason or "skipped")
        if outcome.status in ("mismatch", "error"):
            backend = self.route.settings.backend
            lines = render_outcome(outcome, backend=backend)
            heading = f"{self.route.label}: sample #{self.index} of {self.source}"
            raise AssertionError("\n".join([heading, *lines]))


def iter_cases(
    route: str,
    *,
    config: str | Path | None = None,
    samples: Path | None = None,
    allow_unsafe: bool = False,
    settings: Settings | None = None,
) -> tuple[FoundRoute, Path, list[ParityCase]]:
    """The route, its samples file and one case per sample (no pytest objects)."""
    if settings is None:
        settings = load_settings(config, os.environ)
    found = find_route(settings, route)
    path = samples or sample_path(settings.record.dir, found.method, found.template)
    cases = [
        ParityCase(settings, found, sample, index, path, allow_unsafe)
        for index, sample in enumerate(read_samples(path), start=1)
    ]
    return found, path, cases


def parity_cases(
    route: str,
    *,
    config: str | Path | None = None,
    samples: Path | None = None,
    allow_unsafe: bool = False,
) -> list[Any]:
    """``pytest.param`` objects, one per sample of ``route`` (``"GET /admin/users"``), for
    ``@pytest.mark.parametrize("case", ...)``; see the module docstring."""
    import pytest

    found, path, cases = iter_cases(
        route, config=config, samples=samples, allow_unsafe=allow_unsafe
    )
    if (retired := retired_message(found)) is not None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=retired), id="retired")]
    if not cases:
        skip = pytest.mark.skip(reason=no_samples_message(found, path))
        return [pytest.param(None, marks=skip, id="no-samples")]
    params = []
    for case in cases:
        reason = case.skip_reason()
        marks = [pytest.mark.skip(reason=reason)] if reason is not None else []
        params.append(pytest.param(case, marks=marks, id=case.id))
    return params
