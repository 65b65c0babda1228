"""The confirmation round's rule and record, on synthetic timings: the median per-round ratio and its interval, the
tie rule (lossless over lossy, fewer passes, smaller file, the baseline simplest of all), and the recommendation,
its speedup and the terminal and report words drawn from the recorded round only."""

from __future__ import annotations

from pathlib import Path

from mcbench.confirm import Entry, confirmation, confirmed_ratio, entry_of, finalists, pick_with_ties
from mcbench.reports.decide import recommend
from mcbench.reports.decision import decide
from mcbench.reports.gate_stats import median_round_ratio
from mcbench.reports.html import render_report
from mcbench.reports.schema import Confirmation, RunResult, load_results, save_results
from mcbench.reports.text import summary_table
from tests.test_decision import disagreeing_run


def test_one_slow_round_moves_the_median_ratio_by_one_rank_only():
    base = [[100.0] * 10 for _ in range(10)]
    cand = [[50.0 + i] * 10 for i in range(10)]  # per-round ratios 0.50, 0.51, ... 0.59
    base[3] = [100.0 * 400] * 10  # a burst of other work slowed one baseline round 400x
    ratio, low, high = median_round_ratio(base, cand, 0.95)
    # sorted ratios: 0.53/400, 0.50, 0.51, 0.52, 0.54 ... 0.59; median of 10 = (0.54 + 0.55) / 2; ranks 2 and 9
    assert round(ratio, 6) == 0.545 and low == 0.50 and high == 0.58


def test_the_record_of_one_finalist_holds_its_rounds_samples_and_medians():
    base = [[200.0] * 10 for _ in range(10)]
    cand = [[50.0] * 10 for _ in range(10)]
    r = confirmed_ratio("ort-fp32", base, cand, "one shared onnxruntime thread pool", 0.95)
    assert (r.ratio, r.low, r.high, r.rounds, r.samples) == (0.25, 0.25, 0.25, 10, 100)
    assert (r.baseline_ms, r.variant_ms) == (0.2, 0.05)


def _entry(name, ratio, low, high, lossy=False, passes=1, size=1000):
    return Entry(name, ratio, low, high, lossy, passes, size)


BASE = _entry("base", 1.0, 1.0, 1.0, passes=-1)


def test_a_lossy_finalist_not_surely_faster_than_a_lossless_one_loses_the_tie():
    fp32 = _entry("ort-fp32", 0.50, 0.45, 0.55)
    int8 = _entry("ort-int8", 0.45, 0.40, 0.52, lossy=True, passes=2)
    pick, ties = pick_with_ties([BASE, fp32, int8])
    assert pick == "ort-fp32"
    assert [(t.winner, t.loser) for t in ties] == [("ort-fp32", "ort-int8")]
    assert ties[0].why == ("ort-int8 (ratio 0.450, interval 0.400-0.520) is not surely faster than ort-fp32 (ratio "
                           "0.500, interval 0.450-0.550), which is simpler: it keeps FP32 numerics")


def test_a_surely_faster_finalist_keeps_its_place_and_fewer_passes_or_a_smaller_file_break_ties():
    fp32 = _entry("ort-fp32", 0.50, 0.45, 0.55)
    assert pick_with_ties([BASE, fp32, _entry("ort-int8", 0.30, 0.25, 0.35, lossy=True)]) == ("ort-int8", [])
    fused = _entry("ort-fused", 0.48, 0.44, 0.53, passes=2)
    pick, ties = pick_with_ties([BASE, fp32, fused])
    assert pick == "ort-fp32" and ties[0].why.endswith("which is simpler: 1 pass fewer")
    small = _entry("ort-small", 0.49, 0.44, 0.56, size=400_000)
    big = _entry("ort-big", 0.47, 0.44, 0.56, size=1_600_000)
    pick, ties = pick_with_ties([BASE, small, big])
    assert pick == "ort-small" and ties[0].why.endswith("which is simpler: its file is 1.2 MB smaller")


def test_a_finalist_whose_interval_reaches_the_baseline_loses_to_the_baseline():
    pick, ties = pick_with_ties([BASE, _entry("ort-fp32", 0.95, 0.90, 1.02)])
    assert pick == "base" and ties[0].why.endswith("(the baseline itself), which is simpler: 2 passes fewer")


def _round(run: RunResult, ratios: dict[str, tuple[float, float, float]]) -> Confirmation:
    """A recorded round over the decision's finalists, with the given (ratio, low, high), decided by the tie rule."""
    from mcbench.reports.schema import ConfirmedRatio

    records = [ConfirmedRatio(name, r, lo, hi, 10, 100, 0.4, 0.4 * r, "") for name, (r, lo, hi) in ratios.items()]
    contenders = [entry_of(run.variant(run.baseline), None)] + [entry_of(run.variant(r.name), r) for r in records]
    pick, ties = pick_with_ties(contenders)
    return Confirmation(run.objective, "", run.baseline, list(ratios), 10, 10, 0.95, records, ties, pick)


def test_the_recommendation_its_speedup_and_the_words_come_from_the_recorded_round(tmp_path: Path):
    run = disagreeing_run("p99")
    assert decide(run).chosen.name == "ort-int8"  # on the stored timings: the thinner tail
    # side by side, the INT8 variant is not surely faster than the FP32 one: the lossless one wins the tie
    run.confirmation = _round(run, {"ort-int8": (0.24, 0.20, 0.30), "ort-fp32": (0.25, 0.22, 0.28)})
    save_results(run, tmp_path / "results.json")  # checked against results.schema.json on the way
    run = load_results(tmp_path / "results.json")
    assert run.confirmation.pick == "ort-fp32" and run.confirmation.ties[0].loser == "ort-int8"
    rec = recommend(run)
    assert rec.variant == "ort-fp32"
    assert ("side by side with the baseline its median was 0.100 ms, 4.00× faster than the baseline's 0.400 ms "
            "(10 interleaved rounds, 95% CI 3.57×-4.55×)") in rec.sentences[0]
    assert rec.sentences[-1].startswith("The final round timed 2 finalists (ort-int8, ort-fp32) side by side")
    assert rec.sentences[-1].endswith("which is simpler: it keeps FP32 numerics, so ort-fp32 wins the tie.")
    table = summary_table(run)
    assert "; ship ort-fp32 (4.00× the baseline's speed side by side, 95% CI 3.57×-4.55×)" in table
    assert "  ort-fp32: 4.00× (95% CI 3.57×-4.55×), medians 0.100 vs 0.400 ms  <- pick" in table
    assert "  tie: ort-fp32 over ort-int8: ort-int8 (ratio 0.240" in table
    html = render_report(run)
    assert "Confirmation round" in html and "come from this round only" in html


def test_no_round_for_the_load_objectives_and_a_round_for_another_objective_is_ignored():
    assert confirmation(disagreeing_run("throughput")) is None and confirmation(disagreeing_run("cost")) is None
    assert [v.name for v in finalists(disagreeing_run("p99"))] == ["ort-int8", "ort-fp32"]  # best p99 first
    profiled = disagreeing_run("p99")
    for v in profiled.variants[1:]:
        v.profile = "x86-avx512"  # compiled for a hardware profile, maybe not this machine's: no round
    assert finalists(profiled) == [] and confirmation(profiled) is None
    run = disagreeing_run("p99")
    run.confirmation = _round(run, {"ort-int8": (0.24, 0.20, 0.30), "ort-fp32": (0.25, 0.22, 0.28)})
    run.objective = run.confirmation.objective = "p50"
    run.confirmation.objective = "p99"  # held for another objective: the decision does not read it
    assert decide(run).chosen.name == "ort-fp32" and decide(run).confirmation is None


def test_a_finalist_that_moves_a_runtime_setting_loses_the_tie_to_one_that_keeps_the_default():
    """The demo's ort-fp32 and ort-fp32-t1 (one thread on two cores) time alike: the pick must not follow the noise."""
    default = _entry("ort-fp32", 0.200, 0.190, 0.215)
    one_thread = Entry("ort-fp32-t1", 0.195, 0.185, 0.210, False, 1, 1000, knobs=1)
    pick, ties = pick_with_ties([BASE, one_thread, default])
    assert pick == "ort-fp32" and [(t.winner, t.loser) for t in ties] == [("ort-fp32", "ort-fp32-t1")]
    assert ties[0].why.endswith("which is simpler: it keeps the runtime's default settings")
    surely = Entry("ort-fp32-t1", 0.150, 0.140, 0.160, False, 1, 1000, knobs=1)
    assert pick_with_ties([BASE, surely, default]) == ("ort-fp32-t1", [])


def test_knobs_counts_the_settings_moved_off_the_runtime_default():
    from mcbench.confirm import knobs
    from mcbench.optimizer.hardware import usable_cores
    from mcbench.optimizer.targets import Target

    cores = len(usable_cores())
    assert knobs(Target("onnxruntime", threads=cores)) == 0 and knobs(Target("onnxruntime")) == 0
    # mcbench leaves OpenVINO's threads unpinned under the latency hint; OpenVINO's own default pins them
    assert knobs(Target("openvino", options={"hint": "LATENCY", "precision": "f32"})) == 1
    assert knobs(Target("openvino", options={"hint": "LATENCY", "precision": "f32", "pin_threads": True})) == 0
    assert knobs(Target("openvino", "gpu", options={"hint": "LATENCY"})) == 0
    assert knobs(Target("openvino", options={"hint": "THROUGHPUT", "streams": 2})) == 2
    assert knobs(Target("onnxruntime", threads=1)) == (1 if cores > 1 else 0)


def test_the_search_screens_each_openvino_default_variant_pinned_beside_unpinned():
    from mcbench.optimizer.recipes import search_space

    for kind in ("cnn", "transformer", "other"):
        names = [s.name for s in search_space(kind, from_torch=False, can_train=False)]
        for twin in ("ov-fp32", "ov-bf16"):
            assert names[names.index(twin) + 1] == f"{twin}-pinned"
        spec = search_space(kind, False, False)[names.index("ov-bf16-pinned")]
        assert spec.target.options == {"hint": "LATENCY", "precision": "bf16", "pin_threads": True}
