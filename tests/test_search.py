"""The search's decisions, on hand-made results: who is dominated, the frontier, the budget, the record."""

from __future__ import annotations

import math

from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import Accuracy, LatencyStats, RunResult, VariantResult
from mcbench.reports.sections import stopped_text
from mcbench.search import (
    TimeBudget,
    dominated_by,
    frontier,
    median_interval_ms,
    point_of,
    points,
    record,
)


def _variant(name: str, p50_us: float, top1: float, spread: float = 0.02) -> VariantResult:
    samples = [p50_us * (1 + spread * ((i % 21) - 10) / 10) for i in range(400)]
    return VariantResult(name, "onnxruntime", [], "ok", latency=LatencyStats.from_seconds([s / 1e6 for s in samples]),
                         accuracy=Accuracy("val.npz", 360, top1, 1.0, 0.0, 0.0))


def _run(*variants: VariantResult) -> RunResult:
    return RunResult("r", "2026-11-28T00:00:00", {}, {"accuracy_budget": 1.0}, {}, list(variants), baseline="base")


def test_median_interval_holds_the_median_and_narrows_with_samples():
    low, high = median_interval_ms([float(i) for i in range(1, 101)])
    assert 0.040 <= low < 0.0505 < high <= 0.061  # microseconds in, milliseconds out
    low_many, high_many = median_interval_ms([float(i % 100 + 1) for i in range(10_000)])
    assert high_many - low_many < high - low
    assert all(math.isnan(x) for x in median_interval_ms([]))


def test_a_surely_slower_candidate_at_no_better_quality_is_dominated():
    run = _run(_variant("base", 100, 0.96), _variant("fast", 20, 0.96), _variant("slow", 60, 0.955),
               _variant("close", 20.02, 0.96), _variant("better", 60, 0.97))
    metric = quality_metric(run)
    pts = points(run, metric)
    by = {p.name: dominated_by(p, pts) for p in pts}
    assert by["slow"].name == "fast"  # surely slower, no better
    assert by["close"] is None  # intervals overlap: timing it longer could change the order
    assert by["better"] is None  # slower but more accurate: it may be the answer under a tighter budget
    assert [p.name for p in frontier(pts)] == ["fast", "better"]  # close: a hair slower at the same quality


def test_over_the_quality_budget_is_no_candidate():
    run = _run(_variant("base", 100, 0.96), _variant("lossy", 10, 0.90))
    metric = quality_metric(run)
    assert point_of(run, run.variant("lossy"), metric) is None
    assert [p.name for p in frontier(points(run, metric))] == ["base"]


def test_time_budget_shares_and_none():
    budget = TimeBudget(100.0, started=0.0)
    assert budget.seconds == 100.0 and budget.text() == "the 100 s time budget"
    unlimited = TimeBudget(None)
    assert unlimited.allows(0.01) and unlimited.left() == math.inf and unlimited.text() == "no time budget"
    spent = TimeBudget(1.0, started=-10.0)
    assert not spent.allows(0.5) and spent.left() < 0


def test_the_record_says_the_stage_and_why():
    v = _variant("x", 10, 0.9)
    assert stopped_text(v) == "not recorded"
    record(v, "screen", "over the quality budget: -2.0 points")
    assert v.search == {"stage": "screen", "stopped": "over the quality budget: -2.0 points"}
    assert stopped_text(v) == "screen: over the quality budget: -2.0 points"
    record(v, "load")
    assert stopped_text(v) == "load: done"


def test_a_run_cut_by_its_budget_still_answers_and_says_what_it_did_not_try(tmp_path, linear_onnx):
    from mcbench.config import RunConfig
    from mcbench.pipeline import Pipeline
    from mcbench.reports.decide import recommend
    from mcbench.reports.text import summary_table

    config = RunConfig.quick_mode(model=str(linear_onnx), out_dir=tmp_path / "run", load=None, time_budget_s=0.01)
    run, _ = Pipeline(config, progress=lambda _: None).run()
    first, *rest = run.variants
    assert (first.name, first.status, first.search["stage"]) == ("ort-fp32", "ok", "time")  # the baseline always
    assert rest and all(v.status == "skipped" and v.search["stage"] == "plan" for v in rest)
    assert all(v.error == "not tried: the 0 s time budget was half spent before its turn" for v in rest)
    assert run.search["not_tried"] == [v.name for v in rest] and run.search["time_budget_s"] == 0.01
    assert recommend(run).variant == "ort-fp32"
    table = summary_table(run)
    assert f"{len(run.variants) - 1} not tried ({', '.join(v.name for v in rest)})" in table
    # the candidate list names the stage once: "not tried: the 0 s time budget ...", not "not tried: not tried: ..."
    assert f"{rest[0].name}" in table and "not tried: not tried" not in table
    assert "not tried: the 0 s time budget was half spent before its turn" in table


def test_resume_tries_what_the_budget_left_untried(tmp_path, linear_onnx):
    from mcbench.config import RunConfig
    from mcbench.pipeline import Pipeline

    cut = RunConfig.quick_mode(model=str(linear_onnx), out_dir=tmp_path / "run", load=None, time_budget_s=0.01)
    first, _ = Pipeline(cut, progress=lambda _: None).run()
    untried = first.search["not_tried"]
    assert untried
    again = RunConfig.quick_mode(model=str(linear_onnx), out_dir=tmp_path / "run", load=None, time_budget_s=None)
    second, _ = Pipeline(again, progress=lambda _: None).run(resume=first)
    assert second.search["not_tried"] == []
    assert all(second.variant(name).status == "ok" for name in untried)


def test_the_load_stage_takes_its_frontier_from_the_candidates_still_going(tmp_path, linear_onnx, monkeypatch):
    """A candidate stopped at screening (a short p50 that happens to beat a rival's full one) must not take the
    frontier's place, or nothing but the baseline is load-tested."""
    import mcbench.pipeline as pipeline_mod
    from mcbench.config import LoadPlan, RunConfig
    from mcbench.pipeline import Pipeline

    tested: list[str] = []
    monkeypatch.setattr(pipeline_mod.Pipeline, "load_test",
                        lambda self, spec, *args, **kwargs: tested.append(spec.name))
    config = RunConfig.quick_mode(model=str(linear_onnx), out_dir=tmp_path / "run", load=LoadPlan(),
                                  time_budget_s=None)
    run, _ = Pipeline(config, progress=lambda _: None).run()
    going = [v.name for v in run.variants if v.search["stage"] == "load"]
    assert sorted(tested) == sorted(going) and run.baseline in tested
    stopped_early = {v.name for v in run.variants if v.search["stage"] == "screen"}
    assert not stopped_early & set(tested)
