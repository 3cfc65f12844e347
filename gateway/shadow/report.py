"""The shadow report as text: what ``gateway shadow report`` prints.

::

    from gateway.reports import combine_reports

    print(render_report(combine_reports(reports)["shadow"], workers=["web-1:4242"]))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def render_table(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns, two spaces apart."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def render_report(shadow: dict[str, Any], *, workers: Sequence[str], recent: int = 10) -> str:
    lines = [f"workers reporting: {len(workers)}"]
    routes: dict[str, dict[str, Any]] = shadow.get("routes", {})
    if not routes:
        lines.append("no shadowed requests yet (is a flag in 'shadow' mode?)")
        return "\n".join(lines)
    table = [("ROUTE", "SAMPLED", "MATCH", "MISMATCH", "ERRORS", "SKIPPED", "NOISE FIELDS")]
    for route, row in routes.items():
        skipped = ", ".join(f"{reason}={n}" for reason, n in sorted(row["skipped"].items()))
        table.append(
            (
                route,
                str(row["sampled"]),
                _share(row["matches"], row["sampled"]),
                _share(row["mismatches"], row["sampled"]),
                str(row["candidate_errors"]),
                skipped or "0",
                ", ".join(row["noise"]) or "-",
            )
        )
    lines.extend(render_table(table))
    mismatches: list[dict[str, Any]] = shadow.get("recent", [])
    if mismatches:
        lines.append("")
        lines.append(f"recent mismatches (newest first, {min(recent, len(mismatches))} shown):")
        for mismatch in mismatches[:recent]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mismatch["at"]))
            lines.append(
                f"  {when}  {mismatch['method']} {mismatch['path']}  "
                f"{mismatch['primary']} {mismatch['primary_status']} vs "
                f"{mismatch['candidate']} {mismatch['candidate_status']}  "
                f"request {mismatch['request_id']}"
            )
            for difference in mismatch["differences"]:
                lines.append(
                    f"    {difference['kind']:<8} {difference['pointer'] or '(root)'}: "
                    f"{_value(difference['primary'])} -> {_value(difference['candidate'])}"
                )
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.0%})" if whole else str(part)


def _value(value: str | None) -> str:
    return "(absent)" if value is None else value
