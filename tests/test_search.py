"""The search's decisions, on hand-made results: who is dominated, the frontier, the budget, the record."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import Accuracy, LatencyStats, RunResult, VariantResult
from mcbench.search import (
    TimeBudget,
    dominated_by,
    frontier,
    median_interval_ms,
    point_of,
    points,
    record,
    stopped_side_by_side,
    suspects,
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
    assert [p.name for p in frontier(pts)] == ["fast", "close", "better"]  # close: within the 10% noise margin


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
    assert v.search is None
    record(v, "screen", "over the quality budget: -2.0 points")
    assert v.search == {"stage": "screen", "stopped": "over the quality budget: -2.0 points"}
    record(v, "load")
    assert v.search == {"stage": "load", "stopped": None}


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
    import mcbench.load_stage as load_stage
    from mcbench.config import LoadPlan, RunConfig
    from mcbench.pipeline import Pipeline

    tested: list[str] = []
    monkeypatch.setattr(load_stage, "load_test",
                        lambda state, candidate, *args, **kwargs: tested.append(candidate.spec.name))
    config = RunConfig.quick_mode(model=str(linear_onnx), out_dir=tmp_path / "run", load=LoadPlan(),
                                  time_budget_s=None)
    run, _ = Pipeline(config, progress=lambda _: None).run()
    going = [v.name for v in run.variants if v.search["stage"] == "load"]
    assert sorted(tested) == sorted(going) and run.baseline in tested
    stopped_early = {v.name for v in run.variants if v.search["stage"] == "screen"}
    assert not stopped_early & set(tested)
    # the same run's confirmation round (mcbench/confirm.py) on its real artifacts. Which candidates the search timed
    # in full depends on the machine's load, and on this tiny model all are about as fast as the baseline; so every
    # candidate counts as timed in full and the stored baseline is made 100x slower: the frontier's compiled
    # candidates become the finalists, and side by side the round finds none of them anywhere near 100x faster
    from dataclasses import replace

    from mcbench.confirm import confirmation, finalists
    from mcbench.reports.decide import recommend

    for v in run.variants:
        record(v, "time")
    base = run.variant(run.baseline)
    base.latency = replace(base.latency, p50_ms=base.latency.p50_ms * 100, p99_ms=base.latency.p99_ms * 100)
    c = run.confirmation = confirmation(run, quick=True)
    assert c is not None and not c.note and c.baseline == "ort-fp32" and c.rounds == 10
    assert c.finalists == [v.name for v in finalists(run)] == [r.name for r in c.ratios] and len(c.finalists) <= 4
    assert all(r.rounds == 10 and r.samples >= 100 and 0 < r.low <= r.ratio <= r.high for r in c.ratios)
    assert all(r.threads for r in c.ratios if run.variant(r.name).runtime == "onnxruntime")
    assert all(0.2 < r.ratio < 5 for r in c.ratios)  # a linear layer: no variant is 100x faster side by side
    assert c.pick in [run.baseline, *c.finalists] and recommend(run).variant == c.pick
    assert [t.loser for t in c.ties] == ([min(c.ratios, key=lambda r: r.ratio).name] if c.ties else [])


# --- lossless first, priced before it starts ---------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "from_torch", "can_train"),
                         [("cnn", False, False), ("cnn", True, True), ("transformer", True, False),
                          ("transformer", False, False), ("other", False, False)])
def test_the_search_screens_every_lossless_candidate_before_any_lossy_one(kind, from_torch, can_train):
    from mcbench.optimizer.recipes import keeps_fp32, search_space

    space = search_space(kind, from_torch, can_train)
    lossless = [keeps_fp32(s) for s in space]
    assert space[0].baseline and lossless[0]
    assert lossless == sorted(lossless, reverse=True)  # every True before the first False
    names = {s.name for s, keeps in zip(space, lossless, strict=True) if keeps}
    assert {"ov-fp32", "ort-fp32-t1", "ov-fp32-throughput"} <= names
    assert not names & {"ov-int8", "ort-int8-dynamic", "ort-int8-static", "ort-pruned-fp32"}
    assert ("ov-static-fp32" in names) == (kind == "cnn") and ("ort-fused-fp32" in names) == (kind == "transformer")


def test_a_run_files_added_lossless_candidate_goes_before_the_lossy_ones():
    from mcbench.config import RunConfig
    from mcbench.optimizer.recipes import search_space
    from mcbench.plan import narrowed

    config = RunConfig(model="m.onnx", search_add=("folded=fuse.conv_affine",))
    names = [s.name for s in narrowed(config, search_space("cnn", False, False))]
    assert names.index("ort-folded") < names.index("ov-int8") and names.index("ov-folded") < names.index("ov-int8")


def test_a_pass_is_priced_by_its_factor_of_the_baseline_screening_until_the_run_has_built_it():
    from mcbench.search import Prices

    prices = Prices()
    prices.saw({}, 10.0)  # the baseline: nothing built, screened in 10 s
    assert prices.of(["nncf.int8"]).parts == (("nncf.int8", 20.0), ("screening", 10.0))
    assert prices.of(["quant.int8_dynamic(per_channel=true)", "fuse.conv_affine"]).seconds == 5.0 + 2.0 + 10.0
    assert prices.of(["mystery.pass"]).seconds == 30.0  # an unknown pass: twice a screening
    prices.saw({"nncf.int8": 4.0}, 6.0)
    price = prices.of(["nncf.int8(preset=mixed)"])
    assert price.parts == (("nncf.int8(preset=mixed)", 4.0), ("screening", 8.0))
    assert price.text() == "nncf.int8(preset=mixed) ~4 s + screening ~8 s"


def test_a_candidate_starts_only_if_its_price_ends_it_before_the_timing_share():
    from mcbench.search import Price, TimeBudget, not_started

    budget = TimeBudget(100.0)  # just started: 70 s left before 70%
    assert not_started(budget, Price((("screening", 5.0),))) is None
    reason = not_started(budget, Price((("nncf.int8", 60.0), ("screening", 15.0))))
    assert reason.startswith("not tried: priced at about 75 s (nncf.int8 ~60 s + screening ~15 s), more than the ")
    assert reason.endswith(" s left before 70% of the 100 s time budget")
    assert not_started(TimeBudget(None), Price((("prune.structured", 1e6),))) is None
    assert not_started(budget, Price((("screening", 5.0),)), lossless_untried="ov-static-fp32") == (
        "not tried: ov-static-fp32, which keeps FP32 numerics, did not fit the 100 s time budget, and a lossy "
        "candidate is never built while a lossless one is untried")
    half_spent = TimeBudget(10.0, started=-6.0)
    assert not_started(half_spent, Price(())) == "not tried: the 10 s time budget was half spent before its turn"


def test_the_builder_says_which_steps_a_build_would_run(tmp_path, linear_onnx):
    from mcbench.optimizer.artifact import Artifact, InputSpec
    from mcbench.optimizer.build import BuildData, Builder

    base = Artifact(linear_onnx, "onnx", (InputSpec("x", (1, 4)),))
    data = BuildData([{"x": np.ones((1, 4), np.float32)}], "generated")
    builder = Builder(base, data, lambda prefix: tmp_path / "out" / "+".join(prefix), tmp_path / "cache",
                      say=lambda _: None)
    recipe = ("export.onnx", "quant.int8_dynamic")
    assert builder.pending(recipe) == ["quant.int8_dynamic"]  # an ONNX file's export is free
    builder.build(recipe)
    assert builder.pending(recipe) == [] and set(builder.seconds) == {recipe}
    again = Builder(base, data, lambda prefix: tmp_path / "again", tmp_path / "cache", say=lambda _: None)
    assert again.pending(recipe) == []  # in the cache
    assert again.pending(recipe + ("quant.fp16",)) == ["quant.fp16"]


@pytest.mark.slow
def test_quick_on_a_cnn_onnx_file_screens_every_lossless_candidate_before_a_lossy_one(tmp_path):
    """The order is the search record's: results.json lists the candidates as they were screened; a lossy candidate
    is tried only once every lossless one was, whatever the machine's speed leaves of the quick budget."""
    import json
    import subprocess
    import sys

    from mcbench.optimizer.recipes import keeps_fp32, search_space
    from tests.test_quant import make_conv_onnx

    model, out = make_conv_onnx(tmp_path / "conv.onnx"), tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--quick", "--no-load",
                           "--no-cache", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["kind"]["kind"] == "cnn"
    lossless = {s.name: keeps_fp32(s) for s in search_space("cnn", from_torch=False, can_train=False)}
    order = [(v["name"], lossless[v["name"]], v["search"]["stage"] != "plan") for v in results["variants"]]
    assert [name for name, _, _ in order] == list(lossless)  # every candidate has its record, in screening order
    tried_lossy = [i for i, (_, keeps, tried) in enumerate(order) if tried and not keeps]
    untried_lossless = [name for name, keeps, tried in order if keeps and not tried]
    assert not (tried_lossy and untried_lossless), order
    first_lossy = min(i for i, (_, keeps, _) in enumerate(order) if not keeps)
    # ort-fp32, ov-fp32 and ov-fp32-pinned, one thread, the throughput hint, static shapes
    assert all(keeps for _, keeps, _ in order[:first_lossy]) and first_lossy == 6


def test_a_searched_run_that_left_candidates_untried_exits_0_and_says_so(tmp_path, linear_onnx):
    """docs/cli.md#exit-codes: untried candidates are the budget's choice, not a failure."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(linear_onnx), "--quick",
                           "--no-load", "--time-budget", "0.01", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mcbench.reports.schema import load_results

    untried = load_results(out / "results.json").search["not_tried"]
    assert untried
    assert (f"not tried: {len(untried)} candidate(s) the time budget left ({', '.join(untried)}); the exit code "
            f"counts them as skipped; `mcbench run --resume {out}` tries them") in proc.stdout


def _on_disk(name: str, model: Path, p50_us: float) -> VariantResult:
    """A candidate whose screening said `p50_us` (made up), with a real ONNX file to time it side by side."""
    from mcbench.optimizer.artifact import Artifact, InputSpec
    from mcbench.optimizer.targets import Target

    v = _variant(name, p50_us, 0.96)
    v.artifact = Artifact(model, "onnx", (InputSpec("x", (64, 512)),)).to_dict()
    v.settings = {"in_process": Target("onnxruntime", "cpu", threads=1).to_dict()}
    return v


def test_a_candidate_stops_only_where_side_by_side_rounds_say_it_is_slower(tmp_path: Path):
    """Made-up screenings say both candidates are surely slower than another; timed side by side, the big model is
    (it stops, the interleaved figure in its record) and the small one, screened slow as a burst of other work
    would leave it, is not (it goes on)."""
    from tests.conftest import make_linear_onnx

    small = make_linear_onnx(tmp_path / "small.onnx", batch=64, features=512, classes=3)  # 0.1 M multiply-adds
    big = make_linear_onnx(tmp_path / "big.onnx", batch=64, features=512, classes=1024)  # 34 M
    run = _run(_on_disk("base", small, 10), _on_disk("fast", big, 20), _on_disk("unlucky", small, 60),
               _on_disk("big-slow", big, 200))
    for v in run.variants:
        record(v, "screen")
    metric, said = quality_metric(run), []
    named = suspects(run, run.variants, points(run, metric), metric)
    assert named == {"fast": "base", "unlucky": "base", "big-slow": "base"}
    del named["fast"]
    assert stopped_side_by_side(run, named, said.append) == {"big-slow"}
    assert run.variant("unlucky").search["stopped"] is None
    assert said[0].startswith("  unlucky: its screening was slower than base's, side by side not surely (median ")
    stopped = run.variant("big-slow").search["stopped"]
    assert stopped.startswith("cannot reach the frontier: base is surely faster at no lower quality, timed side by "
                              "side (this one's median "), stopped
    assert stopped.endswith(", 6 interleaved rounds)") and said[1] == f"  big-slow: stops here, {stopped}"
