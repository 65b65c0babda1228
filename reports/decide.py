"""The recommendation: per hardware profile, which variant to ship under the quality budget, and why.

Computed here, in Python, and unit-tested; the page only prints the sentences. Where no variant meets the
budget, the nearest miss is named instead of nothing: how far it misses and which layers were most sensitive,
where the run recorded per-layer data (a pass record's `sensitivity` or `layers_in_float`), never invented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcbench.reports.errors import first_line
from mcbench.reports.formatting import finite, format_ms, format_rps
from mcbench.reports.quality import (
    QualityMetric,
    baseline_quality,
    measured,
    quality_metric,
    quality_of,
    shortfall,
    within_budget,
)
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.reports.views import peak_step, speedup_estimate, tail_text

THIS_MACHINE = ""  # the profile key of a run that named no hardware profile


def profile_names(run: RunResult) -> list[str]:
    """The hardware profiles the run's variants belong to, in run order; [THIS_MACHINE] where it named none."""
    names: list[str] = []
    for v in run.variants:
        if v.profile and v.profile not in names:
            names.append(v.profile)
    return names or [THIS_MACHINE]


def profile_variants(run: RunResult, profile: str) -> list[VariantResult]:
    """A profile's own variants plus those no profile claims (the shared FP32 baseline)."""
    if profile == THIS_MACHINE:
        return list(run.variants)
    return [v for v in run.variants if v.profile in (profile, None)]


@dataclass(frozen=True)
class SensitiveLayers:
    layers: list[str]  # most sensitive first
    note: str  # where the figures come from, or that the run has none


def _layer_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """Per-layer sensitivity a pass recorded: a {layer: score} mapping or a list of {layer, score} records."""
    raw = record.get("sensitivity")
    if isinstance(raw, Mapping):
        return {str(k): s for k, v in raw.items() if (s := finite(v)) is not None}
    scores: dict[str, float] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping):
            name, score = item.get("layer") or item.get("name"), finite(item.get("score", item.get("drop")))
            if name is not None and score is not None:
                scores[str(name)] = score
    return scores


def variant_passes(variant: VariantResult) -> list[Mapping[str, Any]]:
    """The variant's pass records: VariantResult.passes, else the ones its artifact manifest carries."""
    records = variant.passes or variant.artifact.get("passes") or []
    return [r for r in records if isinstance(r, Mapping)] if isinstance(records, list) else []


def sensitive_layers(variant: VariantResult, limit: int = 3) -> SensitiveLayers:
    """The layers whose compression cost the most accuracy, from the variant's pass records."""
    scores: dict[str, float] = {}
    kept: list[str] = []
    for record in variant_passes(variant):
        scores.update(_layer_scores(record))
        kept += [str(x) for x in record.get("layers_in_float") or [] if str(x) not in kept]
    if scores:
        ranked = sorted(scores, key=lambda name: -scores[name])[:limit]
        return SensitiveLayers(ranked, "by the per-layer sensitivity the compression passes measured")
    if kept:
        return SensitiveLayers(kept[:limit], "the layers the quantizer kept in float as too sensitive")
    return SensitiveLayers([], "the run recorded no per-layer sensitivity for this variant")


@dataclass(frozen=True)
class Recommendation:
    """One profile's answer: "ship" a variant, the "nearest-miss" when none meets the budget, or "none"."""

    profile: str
    kind: str
    variant: str | None
    sentences: list[str]
    sensitive: SensitiveLayers | None = None
    skipped: list[tuple[str, str]] = ()  # (variant, reason) of the profile's skipped or failed variants


def _p99(variant: VariantResult) -> float | None:
    return finite(variant.latency.p99_ms) if variant.latency else None


def _candidates(run: RunResult, profile: str, metric: QualityMetric) -> list[VariantResult]:
    """Measured variants with a quality figure and a p99, the baseline only where nothing else was measured.

    The question is which compiled variant to ship; the baseline always meets the budget, so it would hide a
    nearest miss. In a profile run, only the profile's own variants count.
    """
    pool = [v for v in profile_variants(run, profile) if measured(v) and _p99(v) is not None
            and quality_of(v, metric) is not None]
    if (run.search or {}).get("searched"):  # a searched run: only what was timed in full (a screening's short
        # series is enough to rule a candidate out, not to pick it on its p99)
        pool = [v for v in pool if (v.search or {}).get("stage") in ("time", "load")] or pool
    if profile != THIS_MACHINE:  # only what was compiled and measured for this profile's hardware
        return [v for v in pool if v.profile == profile]
    return [v for v in pool if v.name != run.baseline] or pool


def _change_text(run: RunResult, variant: VariantResult, metric: QualityMetric) -> str:
    """'equal to', '0.52 points below' (a percent metric) or '0.0079 below' the baseline."""
    worse = shortfall(run, variant, metric)
    if worse is None:
        return "not comparable with"
    if worse == 0:
        return "equal to"
    lower = (worse > 0) == metric.higher_is_better
    amount = f"{abs(worse):.2f} points" if metric.percent else f"{abs(worse):.4f}"
    return f"{amount} {'below' if lower else 'above'}"


def _ship_sentences(run: RunResult, chosen: VariantResult, eligible: int, metric: QualityMetric) -> list[str]:
    """Two sentences. A speed claim compares medians with their interval; the tail is given with its sample
    count and never as a ratio (one outlier in the baseline's tail once made a 3.5x speedup read 57x)."""
    base = next((v for v in run.variants if v.name == run.baseline), None)
    quality = metric.format(quality_of(chosen, metric), 2)
    lat = chosen.latency
    first = (f"Ship {chosen.name}: its {metric.label} is {quality}, {_change_text(run, chosen, metric)} the "
             f"baseline {run.baseline} (budget: {metric.budget_text()}), and its in-process median latency is "
             f"{format_ms(lat.p50_ms)} ms")
    estimate = speedup_estimate(base.latency, lat) if base is not None and chosen.name != run.baseline else None
    if estimate is not None:
        first += f", {estimate.versus(format_ms(base.latency.p50_ms))}"
    first += f"; {tail_text(lat)}"
    second = ("It is the only variant within the budget" if eligible == 1
              else f"It is the fastest at p99 of the {eligible} variants within the budget")
    peak = peak_step(chosen.load)
    if peak is not None:
        second += f"; under HTTP load it reached {format_rps(peak.throughput_rps)} req/s at {peak.users} users"
    cap = chosen.capacity
    if cap is not None and cap.replicas is not None and finite(cap.target_rps) is not None:
        second += f", and serving {format_rps(cap.target_rps)} req/s under a p99 of {cap.budget_p99_ms:g} ms takes "
        second += f"{cap.replicas} replica{'s' if cap.replicas != 1 else ''}"
        if finite(cap.cost_per_hour) is not None:
            second += f" at {cap.cost_per_hour:,.2f} per hour"
    return [first + ".", second + "."]


def _miss_sentences(run: RunResult, nearest: VariantResult, metric: QualityMetric,
                    sensitive: SensitiveLayers) -> list[str]:
    over = _distance(run, nearest, metric) - (0 if metric.bound else metric.budget)
    over_text = f"{over:.2f} points" if metric.percent and not metric.bound else f"{over:.4f}"
    first = (f"No variant meets the quality budget ({metric.budget_text()}); the nearest miss is {nearest.name}, "
             f"{_change_text(run, nearest, metric)} the baseline {run.baseline} "
             f"({metric.format(quality_of(nearest, metric), 2)} {metric.label}), {over_text} over the budget.")
    if sensitive.layers:
        second = f"The most sensitive layers are {', '.join(sensitive.layers)} ({sensitive.note}); keeping them in "
        second += "float or relaxing the budget are the levers."
    else:
        second = f"Which layers cost the accuracy is unknown: {sensitive.note}."
    return [first, second]


def _skipped(run: RunResult, profile: str) -> list[tuple[str, str]]:
    return [(v.name, first_line(v.error) or "(no reason recorded)")
            for v in profile_variants(run, profile) if v.status != "ok"]


def recommend(run: RunResult, profile: str = THIS_MACHINE) -> Recommendation:
    """The fastest (in-process p99) variant within the budget; else the one that misses it by the least."""
    metric = quality_metric(run)
    skipped = _skipped(run, profile)
    pool = _candidates(run, profile, metric)
    if baseline_quality(run, metric) is None and not metric.bound:
        why = f"the baseline {run.baseline or '(none)'} has no {metric.label}, so the quality budget cannot be applied"
        return Recommendation(profile, "none", None, [f"No recommendation: {why}.",
                                                      "Re-run with a baseline that is measured."], None, skipped)
    if not pool:
        return Recommendation(profile, "none", None, ["No recommendation: no variant of this profile was measured.",
                                                      "See the skipped and failed variants below."], None, skipped)
    eligible = [v for v in pool if within_budget(run, v, metric)]
    if eligible:
        chosen = min(eligible, key=lambda v: (_p99(v), -(quality_of(v, metric) or 0.0), v.name))
        return Recommendation(profile, "ship", chosen.name, _ship_sentences(run, chosen, len(eligible), metric),
                              None, skipped)
    nearest = min(pool, key=lambda v: (_distance(run, v, metric), _p99(v), v.name))
    sensitive = sensitive_layers(nearest)
    return Recommendation(profile, "nearest-miss", nearest.name, _miss_sentences(run, nearest, metric, sensitive),
                          sensitive, skipped)


def _distance(run: RunResult, variant: VariantResult, metric: QualityMetric) -> float:
    """How far the variant is from meeting the budget (smaller is nearer), for naming the nearest miss."""
    if metric.bound:
        value = quality_of(variant, metric) or 0.0
        return metric.budget - value if metric.higher_is_better else value - metric.budget
    return shortfall(run, variant, metric) or 0.0


def recommendations(run: RunResult) -> list[Recommendation]:
    """One recommendation per hardware profile of the run (one for this machine where it named none)."""
    return [recommend(run, p) for p in profile_names(run)]
