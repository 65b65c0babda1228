"""The recommendation's words: per hardware profile, which variant to ship under the quality budget, and why.

Which variant it is comes from `reports.decision` (the objective, the budget test, the frontier, the choice);
every sentence here is made from that Decision's objects and counts, so the words cannot disagree with the
table's marks or the chart's line. Computed in Python and unit-tested; the page only prints the sentences.
Where no compiled variant meets the budget, the nearest miss is named instead of nothing: how far it misses and
which layers were most sensitive, where the run recorded per-layer data (a pass record's `sensitivity` or
`layers_in_float`), never invented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcbench.base.text import first_line
from mcbench.reports.decision import (
    THIS_MACHINE,
    Decision,
    Objective,
    confirmed_ratio,
    decide,
    distance,
    objective_of,
    profile_names,
    profile_variants,
)
from mcbench.reports.formatting import finite, format_ms, format_rps
from mcbench.reports.load_view import peak_step
from mcbench.reports.quality import QualityMetric, quality_of, shortfall
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.reports.speedup import speedup_estimate, tail_text

__all__ = ["THIS_MACHINE", "Recommendation", "profile_names", "profile_variants", "recommend", "recommendations",
           "sensitive_layers", "variant_passes"]

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


def _count(n: int, one: str, many: str | None = None) -> str:
    """'1 compiled variant', '3 compiled variants'; `many` where the plural is not one + 's'."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def _objective_clause(objective: Objective, v: VariantResult) -> str:
    """For the load-based objectives, the figure that decided, in words; empty for the in-process ones."""
    cap = v.capacity
    if objective.key == "throughput" and cap is not None:
        return (f"; one replica serves {objective.text(objective.figure(v))} under the p99 budget of "
                f"{cap.budget_p99_ms:g} ms (basis: {cap.basis})")
    if objective.key == "cost" and cap is not None:
        return (f"; a million requests cost {cap.cost_per_million:,.4g} at {format_rps(cap.max_rps_under_budget)} "
                f"req/s a replica under the p99 budget of {cap.budget_p99_ms:g} ms")
    return ""


def _first_sentence(run: RunResult, chosen: VariantResult, d: Decision) -> str:
    """The quality against the baseline and the budget, then the speed: medians with their interval, and the tail
    with its sample count, never as a ratio (one outlier in the baseline's tail once made a 3.5x speedup read 57x)."""
    metric, base = d.metric, next((v for v in run.variants if v.name == run.baseline), None)
    lat = chosen.latency
    text = (f"Ship {chosen.name}: its {metric.label} is {metric.format(quality_of(chosen, metric), 2)}, "
            f"{_change_text(run, chosen, metric)} the baseline {run.baseline} (budget: {metric.budget_text()}), and "
            f"its in-process median latency is {format_ms(lat.p50_ms)} ms")
    confirmed = confirmed_ratio(d, chosen.name)
    estimate = speedup_estimate(base.latency, lat, confirmed) \
        if base is not None and chosen.name != run.baseline else None
    if estimate is not None and confirmed is not None:
        text += (f"; side by side with the baseline its median was {format_ms(confirmed.variant_ms)} ms, "
                 f"{estimate.versus(format_ms(confirmed.baseline_ms))}")
    elif estimate is not None:
        text += f", {estimate.versus(format_ms(base.latency.p50_ms))}"
    return text + f"; {tail_text(lat)}{_objective_clause(d.objective, chosen)}."


def _round_sentence(d: Decision) -> str:
    """What the final round did, and each tie it decided, in the words the record holds."""
    c = d.confirmation
    finalists = _count(len(c.finalists), "finalist")
    text = (f"The final round timed {finalists} ({', '.join(c.finalists)}) side by side with the baseline, "
            f"interleaved sample by sample over {c.rounds} rounds, and the recommendation rests on it alone")
    for tie in c.ties:
        text += f"; {tie.why}, so {tie.winner} wins the tie"
    return text + "."


def _others_text(d: Decision) -> str:
    """Why some compiled variants within the budget were not ranked: screened only, or no figure."""
    ranked = {v.name for v in d.compared}
    missing = [v for v in d.within if v.name not in ranked]
    screened = sum((v.search or {}).get("stage") == "screen" for v in missing)
    parts = ([f"{screened} stopped after screening"] if screened else []) + \
        ([f"{_count(len(missing) - screened, 'has', 'have')} no {d.objective.label}"] if len(missing) > screened
         else [])
    return f" ({' and '.join(parts)})" if parts else ""


def _rank_sentence(d: Decision) -> str:
    """Where the choice stands among the compiled variants, in counts taken from the Decision."""
    within, ranked, over = len(d.within), len(d.compared), len(d.over)
    label = f"{d.objective.best_word} {d.objective.label}"
    if within == 1:
        text = "It is the only compiled variant within the budget"
    elif ranked == within:
        text = f"It has the {label} of the {within} compiled variants within the budget"
    else:
        text = ("It is the only compiled variant within the budget ranked on it" if ranked == 1 else
                f"It has the {label} of the {ranked} compiled variants within the budget ranked on it")
        text += f"; {within - ranked} more {'is' if within - ranked == 1 else 'are'} within it but were not ranked"
        text += _others_text(d)
    if over:
        text += f", and {_count(over, 'more is', 'more are')} over it"
    return text


def _load_clause(chosen: VariantResult) -> str:
    text, peak, cap = "", peak_step(chosen.load), chosen.capacity
    if peak is not None:
        text += f"; under HTTP load it reached {format_rps(peak.throughput_rps)} req/s at {peak.users} users"
    if cap is not None and cap.replicas is not None and finite(cap.target_rps) is not None:
        text += f", and serving {format_rps(cap.target_rps)} req/s under a p99 of {cap.budget_p99_ms:g} ms takes "
        text += f"{cap.replicas} replica{'s' if cap.replicas != 1 else ''}"
        if finite(cap.cost_per_hour) is not None:
            text += f" at {cap.cost_per_hour:,.2f} per hour"
    return text


def _ship_sentences(run: RunResult, d: Decision) -> list[str]:
    words = [_first_sentence(run, d.chosen, d), _rank_sentence(d) + _load_clause(d.chosen) + "."]
    return words + ([_round_sentence(d)] if d.confirmation else [])


def _keep_sentences(run: RunResult, d: Decision) -> list[str]:
    """The baseline wins: no compiled variant within the budget beats its figure."""
    o, best, metric = d.objective, d.runner_up, d.metric
    if d.confirmation is not None and best is not None:
        return [f"Keep the baseline {run.baseline}: timed side by side with it, no finalist was surely faster.",
                _round_sentence(d)]
    if best is None and d.within:
        within = _count(len(d.within), "compiled variant is", "compiled variants are")
        them = "it" if len(d.within) == 1 else "each"
        return [f"Keep the baseline {run.baseline}: its {o.label} is {o.text(o.figure(d.chosen))}; {within} within "
                f"the budget, and the search stopped {them} before its full timing, as one it had timed was surely "
                "faster.", "See the search and the skipped variants below for why."]
    if best is None:
        return [f"Keep the baseline {run.baseline}: no compiled variant was measured; its {o.label} is "
                f"{o.text(o.figure(d.chosen))}.", "See the search and the skipped variants below for why."]
    ranked = len(d.compared)
    rivals = "the one compiled variant" if ranked == 1 else f"all {ranked} compiled variants"
    first = (f"Keep the baseline {run.baseline}: its {o.label} is {o.text(o.figure(d.chosen))}, better than "
             f"{rivals} within the budget ranked on it; the best of them, {best.name}, has "
             f"{o.text(o.figure(best))} ({metric.format(quality_of(best, metric), 2)} {metric.label}).")
    second = f"{_count(len(d.within), 'compiled variant is', 'compiled variants are')} within the budget"
    if d.over:
        second += f" and {len(d.over)} over it"
    return [first, second + _load_clause(d.chosen) + "."]


def _miss_sentences(run: RunResult, d: Decision, sensitive: SensitiveLayers) -> list[str]:
    metric, nearest = d.metric, d.chosen
    over = distance(run, nearest, metric) - (0 if metric.bound else metric.budget)
    over_text = f"{over:.2f} points" if metric.percent and not metric.bound else f"{over:.4f}"
    measured = ("the one compiled variant measured misses it" if len(d.over) == 1
                else f"all {len(d.over)} compiled variants measured miss it")
    first = (f"No compiled variant meets the quality budget ({metric.budget_text()}): {measured}; the nearest miss "
             f"is {nearest.name}, {_change_text(run, nearest, metric)} the baseline {run.baseline} "
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


def recommendation_of(run: RunResult, d: Decision) -> Recommendation:
    """The Decision in words: what to ship and why, the nearest miss, or why there is no answer."""
    skipped = _skipped(run, d.profile)
    if d.kind == "ship":
        words = _keep_sentences(run, d) if d.chosen.name == run.baseline else _ship_sentences(run, d)
        return Recommendation(d.profile, "ship", d.chosen.name, words, None, skipped)
    if d.kind == "nearest-miss":
        sensitive = sensitive_layers(d.chosen)
        return Recommendation(d.profile, "nearest-miss", d.chosen.name, _miss_sentences(run, d, sensitive),
                              sensitive, skipped)
    advice = ("Re-run with a baseline that is measured." if "baseline" in d.why
              else f"Choose another --objective (p50 ranks on what every measured variant has), or re-run so that they "
                   f"get a {d.objective.label}." if d.within else "See the skipped and failed variants below.")
    return Recommendation(d.profile, "none", None, [f"No recommendation: {d.why}.", advice], None, skipped)


def recommend(run: RunResult, profile: str = THIS_MACHINE, objective: Objective | None = None) -> Recommendation:
    """The variant with the objective's best figure within the quality budget; else the nearest miss."""
    return recommendation_of(run, decide(run, profile, objective or objective_of(run)))


def recommendations(run: RunResult) -> list[Recommendation]:
    """One recommendation per hardware profile of the run (one for this machine where it named none)."""
    return [recommend(run, p) for p in profile_names(run)]
