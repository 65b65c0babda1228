"""Two runs side by side (A then B): what got faster, slower, less accurate, and whether each change is significant.

Latency: the ratio of medians of the raw in-process samples (B over A) with a bootstrap confidence interval and a
Mann-Whitney U p-value, from `reports.gate_stats`, the same statistics as the CI gate. Accuracy: a two-proportion
z-test on top-1 (or agreement) over the samples each run scored. Throughput is one figure per load step with no
repeats, so its change is shown without a significance claim, and the page says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mcbench.reports.formatting import finite, flattened_items, format_ms, format_rps
from mcbench.reports.gate_stats import MIN_SAMPLES, compare, mann_whitney_p, thin
from mcbench.reports.load_view import peak_step
from mcbench.reports.quality import QualityMetric, quality_metric, quality_of, within_budget
from mcbench.reports.schema import RunResult, VariantResult

ALPHA = 0.05  # significance level for every test on the page
MIN_EFFECT = 0.03  # a latency change under 3% is "no change" however significant: a shared runner moves that much
CONFIDENCE = 0.95
MAX_CV = 0.25
RESAMPLES = 1000  # bootstrap resamples per variant; with BOOTSTRAP_SAMPLES, about a second per variant
BOOTSTRAP_SAMPLES = 1000  # longer series are thinned evenly for the bootstrap (Mann-Whitney uses them all)


@dataclass(frozen=True)
class Change:
    """One figure of one variant in A and in B, the relative or absolute change, and what it means."""

    figure: str
    a: str
    b: str
    change: str
    verdict: str  # "faster" | "slower" | "more accurate" | "less accurate" | "no significant change" | ...
    significance: str


def two_proportion_p(p1: float, n1: int, p2: float, n2: int) -> float:
    """Two-sided p-value that two proportions differ (pooled normal approximation)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return 1.0 if p1 == p2 else 0.0
    z = abs(p2 - p1) / math.sqrt(var)
    return math.erfc(z / math.sqrt(2))


def latency_change(a: VariantResult, b: VariantResult) -> Change | None:
    if a.latency is None or b.latency is None:
        return None
    la, lb = a.latency, b.latency
    pa, pb = finite(la.p50_ms), finite(lb.p50_ms)
    ratio_text = f"{(pb / pa - 1) * 100:+.1f}%" if pa and pb else "n/a"
    sa, sb = ([float(x) if isinstance(x, int | float) else math.nan for x in s] for s in (la.samples_us, lb.samples_us))
    if not all(math.isfinite(x) and x > 0 for x in sa + sb):
        return Change("in-process p50 ms", format_ms(la.p50_ms), format_ms(lb.p50_ms), ratio_text, "not tested",
                      "raw samples that are not finite positive latencies in one of the runs")
    if len(sa) < MIN_SAMPLES or len(sb) < MIN_SAMPLES:
        return Change("in-process p50 ms", format_ms(la.p50_ms), format_ms(lb.p50_ms), ratio_text, "not tested",
                      f"fewer than {MIN_SAMPLES} raw samples kept in one of the runs")
    c = compare(thin(sa, BOOTSTRAP_SAMPLES), thin(sb, BOOTSTRAP_SAMPLES), min_effect=MIN_EFFECT,
                confidence=CONFIDENCE, max_cv=MAX_CV, resamples=RESAMPLES)
    c = replace(c, p_value=mann_whitney_p(sa, sb), n_base=len(sa), n_cand=len(sb))
    verdict = {"regression": "slower", "improvement": "faster"}.get(c.verdict, c.verdict)
    significance = (f"median ratio {c.ratio:.3f}, {c.confidence:.0%} CI {c.ci_low:.3f}–{c.ci_high:.3f}, "
                    f"Mann-Whitney p={c.p_value:.2g}, n={c.n_base}/{c.n_cand}")
    return Change("in-process p50 ms", format_ms(la.p50_ms), format_ms(lb.p50_ms), f"{(c.ratio - 1) * 100:+.1f}%",
                  verdict, significance)


def p99_change(a: VariantResult, b: VariantResult) -> Change | None:
    pa, pb = (finite(v.latency.p99_ms) if v.latency else None for v in (a, b))
    if pa is None or pb is None or pa <= 0:
        return None
    return Change("in-process p99 ms", format_ms(pa), format_ms(pb), f"{(pb / pa - 1) * 100:+.1f}%",
                  "see p50", "a tail percentile has no test here; the p50 row carries the significance")


def accuracy_change(a: VariantResult, b: VariantResult, metric: QualityMetric,
                    b_within: bool | None = None) -> Change | None:
    """The primary quality metric in A and B; a proportion gets a two-proportion test, other metrics none."""
    qa, qb = quality_of(a, metric), quality_of(b, metric)
    if qa is None or qb is None:
        return None
    na, nb = a.accuracy.samples, b.accuracy.samples
    better = (qb - qa) if metric.higher_is_better else (qa - qb)
    budget = "" if b_within is None else f"; B {'within' if b_within else 'OVER'} the budget ({metric.budget_text()})"
    if metric.percent:
        p = two_proportion_p(qa, na, qb, nb)
        significant = p < ALPHA and better != 0
        note = f"two-proportion z-test p={p:.2g}, n={na}/{nb}"
        change = f"{(qb - qa) * 100:+.2f} points"
    else:
        significant = better != 0
        note = f"n={na}/{nb}; no significance test for a non-proportion metric"
        change = f"{qb - qa:+.4f}"
    verdict = ("less accurate" if better < 0 else "more accurate") if significant else "no significant change"
    return Change(metric.label, metric.format(qa), metric.format(qb), change, verdict, note + budget)


def throughput_change(a: VariantResult, b: VariantResult) -> Change | None:
    ka, kb = peak_step(a.load), peak_step(b.load)
    if ka is None or kb is None or not ka.throughput_rps:
        return None
    change = (kb.throughput_rps / ka.throughput_rps - 1) * 100
    return Change("peak HTTP req/s", format_rps(ka.throughput_rps), format_rps(kb.throughput_rps), f"{change:+.1f}%",
                  "higher" if change > 0 else "lower" if change < 0 else "same",
                  "one measurement per run: no significance claimed")


@dataclass(frozen=True)
class VariantComparison:
    name: str
    status: str  # "A: ok, B: failed" where they differ, else the shared status
    changes: list[Change]


@dataclass(frozen=True)
class RunComparison:
    a_label: str
    b_label: str
    metric: QualityMetric
    variants: list[VariantComparison]
    only_a: list[str]
    only_b: list[str]
    faster: list[str]
    slower: list[str]
    less_accurate: list[str]
    config_diff: list[tuple[str, str, str]]  # key, A, B for config values that differ
    environment_diff: list[tuple[str, str, str]]
    headline: str


def _diff(a: dict, b: dict) -> list[tuple[str, str, str]]:
    fa = {kv.key: kv.value for kv in flattened_items(a)}
    fb = {kv.key: kv.value for kv in flattened_items(b)}
    return [(k, fa.get(k, "(absent)"), fb.get(k, "(absent)")) for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)]


def _run_label(run: RunResult, side: str) -> str:
    return f"{side}: {run.run_id} ({run.created})"


def compare_runs(a: RunResult, b: RunResult) -> RunComparison:
    """Every variant both runs have, in A's order, with its changes; and what only one of them has."""
    metric = quality_metric(b)
    if quality_metric(a).key != metric.key:  # one metric both runs have: fidelity to each run's own baseline
        metric = QualityMetric("agreement", "top-1 agreement with the baseline")
    names_b = {v.name for v in b.variants}
    comparisons, faster, slower, worse = [], [], [], []
    for va in a.variants:
        if va.name not in names_b:
            continue
        vb = b.variant(va.name)
        status = va.status if va.status == vb.status else f"A: {va.status}, B: {vb.status}"
        changes = []
        if va.status == vb.status == "ok":
            quality = accuracy_change(va, vb, metric, within_budget(b, vb, metric))
            changes = [c for c in (latency_change(va, vb), p99_change(va, vb), quality,
                                   throughput_change(va, vb)) if c is not None]
        for c in changes:
            if c.verdict == "faster":
                faster.append(va.name)
            elif c.verdict == "slower":
                slower.append(va.name)
            elif c.verdict == "less accurate":
                worse.append(va.name)
        comparisons.append(VariantComparison(va.name, status, changes))
    only_a = [v.name for v in a.variants if v.name not in names_b]
    only_b = [v.name for v in b.variants if v.name not in {x.name for x in a.variants}]
    parts = [f"{len(faster)} faster", f"{len(slower)} slower", f"{len(worse)} less accurate"]
    headline = (f"B against A, {len(comparisons)} variants in both: " + ", ".join(parts)
                + f" (significant at p<{ALPHA:g}; latency changes under {MIN_EFFECT:.0%} count as no change).")
    return RunComparison(_run_label(a, "A"), _run_label(b, "B"), metric, comparisons, only_a, only_b, faster, slower,
                         worse, _diff(a.config, b.config), _diff(a.environment, b.environment), headline)


def comparison_text(cmp: RunComparison) -> str:
    """The comparison for the terminal: the headline, then one line per change."""
    lines = [cmp.a_label, cmp.b_label, cmp.headline]
    for v in cmp.variants:
        for c in v.changes:
            lines.append(f"  {v.name}: {c.figure} {c.a} -> {c.b} ({c.change}): {c.verdict} [{c.significance}]")
        if not v.changes:
            lines.append(f"  {v.name}: {v.status}, nothing to compare")
    for label, names in (("only in A", cmp.only_a), ("only in B", cmp.only_b)):
        if names:
            lines.append(f"{label}: {', '.join(names)}")
    return "\n".join(lines)
