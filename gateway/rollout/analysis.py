"""Is the new side as healthy as legacy, for the same route in the same window?

Pure functions from outcomes to a verdict, as Kayenta judges a canary: a real statistical test
per metric, and an effect size the operator tolerates, so neither noise nor a handful of
requests decides. Error rates: Fisher's exact test (one-sided: is the new side's rate higher?).
Latency: the Mann-Whitney U test (one-sided: are new-side durations stochastically larger?),
which needs no normality and is robust to the long tails latencies have. Shadow mismatches: an
exact binomial test against the tolerated mismatch rate. Too few requests on either side:
"not enough data", never a decision::

    verdict = analyse(outcomes, Thresholds(min_requests=100))
    verdict.status   # "healthy", "breach" or "not-enough-data"
    verdict.reason   # "latency: new p50 41.0 ms vs legacy 8.2 ms (5.0x), Mann-Whitney U p=3e-12"
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["healthy", "breach", "not-enough-data"]
#: The checks a step can fail.
Check = Literal["error_rate", "latency", "mismatch", "breaker", "other"]
_CHECKS: dict[str, Check] = {
    "error_rate": "error_rate",
    "latency": "latency",
    "mismatch_rate": "mismatch",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    #: Requests each side needs in the step before anything is decided.
    min_requests: int = 100
    #: Significance level of every test: a breach needs p below it.
    alpha: float = 0.01
    #: Error-rate increase tolerated even when significant (0.01: one point).
    max_error_rate_increase: float = 0.01
    #: New-side median latency tolerated, as a multiple of legacy's (even when significant).
    max_latency_ratio: float = 1.5
    #: Shadow mismatch rate tolerated (after noise calibration).
    max_mismatch_rate: float = 0.01


@dataclass(slots=True)
class SideOutcomes:
    """One side's requests in one step, added up over every worker."""

    requests: int = 0
    #: 5xx answers and new-side failures (exceptions, timeouts, answers replaced by a fallback).
    errors: int = 0
    fallbacks: int = 0
    #: A sample of request durations in seconds (each worker keeps a bounded reservoir).
    durations: list[float] = field(default_factory=list)


@dataclass(slots=True)
class StepOutcomes:
    legacy: SideOutcomes = field(default_factory=SideOutcomes)
    new: SideOutcomes = field(default_factory=SideOutcomes)
    #: Shadow copies compared in the step, and how many differed (noise excluded).
    compared: int = 0
    mismatches: int = 0
    #: Times a breaker of the flag's routes opened during the step.
    breaker_opened: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str
    #: What was measured, for the audit line, ``gateway rollout status`` and the metrics.
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def check(self) -> Check | None:
        """Which check a breach failed (a bounded name, for the metrics); ``None`` otherwise."""
        if self.status != "breach":
            return None
        if "breaker_opened" in self.measured:
            return "breaker"
        test = self.measured.get("test")
        metric = test.get("metric") if isinstance(test, dict) else None
        return _CHECKS.get(str(metric), "other")


def analyse(outcomes: StepOutcomes, thresholds: Thresholds, *, shadow: bool = False) -> Verdict:
    """The verdict on a step: a canary step compares the sides, a shadow step the answers."""
    if outcomes.breaker_opened:
        return Verdict(
            "breach",
            f"breaker: opened {outcomes.breaker_opened} time(s) during the step",
            {"breaker_opened": outcomes.breaker_opened},
        )
    if shadow:
        return _shadow_verdict(outcomes, thresholds)
    new, legacy = outcomes.new, outcomes.legacy
    measured: dict[str, Any] = {
        "requests": {"legacy": legacy.requests, "new": new.requests},
        "error_rate": {"legacy": _rate(legacy), "new": _rate(new)},
        "fallbacks": new.fallbacks,
    }
    if new.durations and legacy.durations:
        measured["p50_ms"] = {"legacy": _ms(legacy.durations, 50), "new": _ms(new.durations, 50)}
        measured["p99_ms"] = {"legacy": _ms(legacy.durations, 99), "new": _ms(new.durations, 99)}
    if min(new.requests, legacy.requests) < thresholds.min_requests:
        return Verdict(
            "not-enough-data",
            f"not enough data: {new.requests} new and {legacy.requests} legacy requests "
            f"(each side needs {thresholds.min_requests})",
            measured,
        )
    breach = _error_breach(new, legacy, thresholds) or _latency_breach(new, legacy, thresholds)
    if breach is not None:
        reason, test = breach
        return Verdict("breach", reason, {**measured, "test": test})
    return Verdict(
        "healthy",
        f"healthy: error rate {_pct(_rate(new))} vs {_pct(_rate(legacy))}, "
        f"p50 {measured.get('p50_ms', {}).get('new', '-')} ms vs "
        f"{measured.get('p50_ms', {}).get('legacy', '-')} ms",
        measured,
    )


def _error_breach(
    new: SideOutcomes, legacy: SideOutcomes, thresholds: Thresholds
) -> tuple[str, dict[str, Any]] | None:
    new_rate, legacy_rate = _rate(new), _rate(legacy)
    if new_rate - legacy_rate <= thresholds.max_error_rate_increase:
        return None
    import numpy  # scipy's, imported late: a worker that never leads a rollout never loads them
    from scipy.stats import fisher_exact

    table = numpy.array(
        [
            [new.errors, new.requests - new.errors],
            [legacy.errors, legacy.requests - legacy.errors],
        ]
    )
    p = float(fisher_exact(table, alternative="greater").pvalue)
    if p >= thresholds.alpha:
        return None
    return (
        f"error rate: new {_pct(new_rate)} vs legacy {_pct(legacy_rate)} "
        f"({new.errors}/{new.requests} vs {legacy.errors}/{legacy.requests}), "
        f"Fisher's exact test p={p:.2g}",
        {"metric": "error_rate", "test": "fisher-exact", "p": p},
    )


def _latency_breach(
    new: SideOutcomes, legacy: SideOutcomes, thresholds: Thresholds
) -> tuple[str, dict[str, Any]] | None:
    if len(new.durations) < 2 or len(legacy.durations) < 2:
        return None
    new_median, legacy_median = (
        statistics.median(new.durations),
        statistics.median(legacy.durations),
    )
    ratio = new_median / legacy_median if legacy_median > 0 else float("inf")
    if ratio <= thresholds.max_latency_ratio:
        return None
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(new.durations, legacy.durations, alternative="greater").pvalue)
    if p >= thresholds.alpha:
        return None
    return (
        f"latency: new p50 {new_median * 1000:.1f} ms vs legacy {legacy_median * 1000:.1f} ms "
        f"({ratio:.1f}x), Mann-Whitney U p={p:.2g}",
        {"metric": "latency", "test": "mann-whitney-u", "p": p, "ratio": round(ratio, 2)},
    )


def _shadow_verdict(outcomes: StepOutcomes, thresholds: Thresholds) -> Verdict:
    compared, mismatches = outcomes.compared, outcomes.mismatches
    measured: dict[str, Any] = {"compared": compared, "mismatches": mismatches}
    if compared < thresholds.min_requests:
        return Verdict(
            "not-enough-data",
            f"not enough data: {compared} shadow comparisons (needs {thresholds.min_requests})",
            measured,
        )
    rate = mismatches / compared
    if rate > thresholds.max_mismatch_rate:
        from scipy.stats import binomtest

        test = binomtest(mismatches, compared, thresholds.max_mismatch_rate, alternative="greater")
        p = float(test.pvalue)
        if p < thresholds.alpha:
            return Verdict(
                "breach",
                f"shadow mismatches: {mismatches}/{compared} ({_pct(rate)}, tolerated "
                f"{_pct(thresholds.max_mismatch_rate)}), binomial test p={p:.2g}",
                {**measured, "test": {"metric": "mismatch_rate", "test": "binomial", "p": p}},
            )
    return Verdict("healthy", f"healthy: {mismatches}/{compared} shadow mismatches", measured)


def _rate(side: SideOutcomes) -> float:
    return side.errors / side.requests if side.requests else 0.0


def _ms(durations: Sequence[float], percentile: int) -> float:
    ordered = sorted(durations)
    index = min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 2)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"
