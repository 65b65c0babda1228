"""The one way the benchmarks time things side by side: the gate's interleaved rounds, for any number of calls.

`side_by_side` hands named zero-argument calls to `mcbench.remeasure.interleaved_calls`, the loop `mcbench gate
--remeasure` and the run's confirmation round time with (sample by sample, the order rotated every turn, a warm-up
call at every switch), and reads ratios with the confirmation round's statistic (`median_round_ratio`: the median
of the per-round ratios, with its order-statistic interval). RESULTS.md records that the method changes the answer:
on a loaded machine peers.py's 7 rounds of 10 calls a variant gave the peers' variants 1.5-2x the time of mcbench's
equivalent graphs, where one call of each in turn did not, and the gate's one series a side per round read 0.7 or 1.4
for an A/A pair. One loop for the gate and every benchmark means a figure here is measured the way mcbench measures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import cycle
from typing import Any

from mcbench.remeasure import MIN_SERIES_NS, Interleaved, Rounds, interleaved_calls
from mcbench.reports.gate_stats import median_round_ratio

SAMPLES = 10  # a side's samples in one round, at least (the confirmation round's figure)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Ratio:
    """median(name) / median(reference) per round, the median of those with its interval."""

    ratio: float
    low: float
    high: float
    per_round: list[float]

    def text(self) -> str:
        """'0.52x (0.50-0.55)'"""
        return f"{self.ratio:.2f}x ({self.low:.2f}-{self.high:.2f})"


@dataclass(frozen=True)
class SideBySide:
    """What side_by_side timed: every name's rounds (float microseconds a call), in the order they were given."""

    names: list[str]
    timed: Interleaved
    confidence: float = CONFIDENCE

    def round_medians_ms(self, name: str) -> list[float]:
        return [statistics.median(r) / 1e3 for r in self.timed.rounds[name]]

    def median_ms(self, name: str) -> float:
        """The median of every sample of `name`, in milliseconds a call."""
        return statistics.median(x for r in self.timed.rounds[name] for x in r) / 1e3

    def ratio(self, name: str, reference: str) -> Ratio:
        return ratio_of(self.timed.rounds[reference], self.timed.rounds[name], self.confidence)


def ratio_of(base: Rounds, mine: Rounds, confidence: float = CONFIDENCE) -> Ratio:
    """`mine` over `base`, two sides of the same interleaved rounds: the median of the per-round ratios of medians
    with its order-statistic interval (reports.gate_stats.median_round_ratio)."""
    ratio, low, high = median_round_ratio(base, mine, confidence)
    per_round = [statistics.median(m) / statistics.median(b) for b, m in zip(base, mine, strict=True)]
    return Ratio(ratio, low, high, per_round)


def side_by_side(calls: Mapping[str, Callable[[], Any]], rounds: int, samples: int = SAMPLES,
                 seconds: float = MIN_SERIES_NS / 1e9) -> SideBySide:
    """Time every call against the others in `rounds` interleaved rounds. Every name gets the same number of samples
    of the same number of calls, planned on the first call's time (the gate plans on its baseline's): at least
    `samples` a round, and enough that the first call's samples last at least `seconds` a round."""
    if not calls or rounds < 1:
        raise ValueError("side_by_side needs at least one call and one round")
    timed = interleaved_calls(dict(calls), rounds, samples, int(seconds * 1e9))
    return SideBySide(list(calls), timed)


def session_call(session: Any, feeds: dict[str, Any] | list[dict[str, Any]]) -> Callable[[], Any]:
    """A call of `session.run` on `feeds`; on each of a list of feeds in turn when given a list."""
    if isinstance(feeds, dict):
        return partial(session.run, feeds)
    turns = cycle(feeds)
    return lambda: session.run(next(turns))
