"""The parity report: what ``gateway parity`` prints, and what a failing parity test says.

::

    print(render_report(outcomes, route="GET /api/me", source="var/samples/get-api-me.jsonl",
                        backend="accounts"))
    print(json.dumps(report_json(outcomes, route="GET /api/me", source="...")))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from gateway.replay.replay import Outcome
from gateway.shadow.compare import Difference


def render_outcome(outcome: Outcome, *, backend: str = "new") -> list[str]:
    """One sample: a heading line, then one line per difference (JSON Pointer, legacy value,
    new value) or the reason it was skipped or failed."""
    request = outcome.sample.request
    target = request.path + (f"?{request.query}" if request.query else "")
    identity = request.identity
    who = f"as {identity.subject} ({identity.method})" if identity.subject else "anonymous"
    label = {"ok": "ok", "mismatch": "MISMATCH", "skipped": "skipped", "error": "ERROR"}
    heading = f"#{outcome.index} {request.method} {target} {who}: {label[outcome.status]}"
    if outcome.legacy_status is not None:
        heading += f" (legacy {outcome.legacy_status}, {backend} {outcome.new_status})"
    lines = [heading]
    lines.extend(f"    {_difference(d, backend)}" for d in outcome.differences)
    if outcome.reason is not None:
        lines.append(f"    {outcome.reason}")
    return lines


def render_report(
    outcomes: Sequence[Outcome], *, route: str, source: str, backend: str = "new"
) -> str:
    lines = [f"parity {route}: legacy vs {backend}, {len(outcomes)} samples from {source}"]
    for outcome in outcomes:
        lines.extend(f"  {line}" for line in render_outcome(outcome, backend=backend))
    lines.append(summary(outcomes))
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome]) -> str:
    counts = Counter(outcome.status for outcome in outcomes)
    parts = [f"{counts[s]} {s}" for s in ("ok", "mismatch", "error", "skipped") if counts[s]]
    verdict = "FAILED" if counts["mismatch"] or counts["error"] else "passed"
    if not counts["ok"] and verdict == "passed":
        verdict = "nothing compared"
    return f"{verdict}: {', '.join(parts) or 'no samples'}"


def report_json(outcomes: Sequence[Outcome], *, route: str, source: str) -> dict[str, Any]:
    return {
        "route": route,
        "samples": source,
        "passed": not any(o.status in ("mismatch", "error") for o in outcomes),
        "counts": dict(Counter(outcome.status for outcome in outcomes)),
        "outcomes": [
            {
                "index": outcome.index,
                "method": outcome.sample.request.method,
                "path": outcome.sample.request.path,
                "query": outcome.sample.request.query,
                "status": outcome.status,
                "reason": outcome.reason,
                "legacy_status": outcome.legacy_status,
                "new_status": outcome.new_status,
                "differences": [
                    {
                        "pointer": d.pointer,
                        "kind": d.kind,
                        "legacy": d.primary,
                        "new": d.candidate,
                    }
                    for d in outcome.differences
                ],
            }
            for outcome in outcomes
        ],
    }


def _difference(difference: Difference, backend: str) -> str:
    where = difference.pointer or "(root)"
    return (
        f"{where}: {difference.kind}: legacy {_value(difference.primary)}, "
        f"{backend} {_value(difference.candidate)}"
    )


def _value(value: str | None) -> str:
    return "(absent)" if value is None else value
