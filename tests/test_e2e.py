"""The quick demo, end to end, through the real command line."""

import json
import subprocess
import sys

import pytest

from mcbench.bench.load import UNSENT_KINDS

# the demo is a CNN with training data: its kind adds NNCF INT8, folded static INT8, static-shape NNCF INT8 and
# pruning + static INT8, and the search adds settings and parameters around them (optimizer.recipes.search_space)
VARIANTS = {"torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-fp32", "ov-int8",
            "ort-fused-int8-static", "ov-static-int8", "ov-static-fp32", "ort-pruned-int8-static", "ort-fp32-t1",
            "ort-int8-static-pt", "ov-fp32-throughput",
            "ort-pruned50-int8-static", "ort-pruned-fp32", "ov-pruned-int8", "ov-bf16", "ov-fp32-pinned",
            "ov-bf16-pinned", "ov-static-bf16"}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    proc = subprocess.run(
        # no time budget: on a loaded machine the quick budget may leave candidates untried (tests/test_search.py
        # covers that); here every candidate of the demo's space goes as far as the search takes it
        [sys.executable, "-m", "mcbench.cli", "run", "--quick", "--time-budget", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_every_variant_has_a_record(quick_demo):
    _, _, results = quick_demo
    assert {v["name"] for v in results["variants"]} == VARIANTS
    # ov-bf16 is skipped, with its reason, on a CPU without bf16 arithmetic
    assert all(v["status"] == "ok" or (v["name"] == "ov-bf16" and v["status"] == "skipped" and v["error"])
               for v in results["variants"]), [v["error"] for v in results["variants"]]
    assert results["baseline"] == "torch-fp32"


@pytest.mark.slow
def test_accuracy_on_digits(quick_demo):
    _, _, results = quick_demo
    acc = {v["name"]: v["accuracy"] for v in results["variants"]}
    fp32 = acc["torch-fp32"]["top1"]
    assert fp32 >= 0.9
    assert acc["torch-fp32"]["samples"] == 360
    for name in ("ort-int8-dynamic", "ort-int8-static"):
        assert abs(acc[name]["top1"] - fp32) <= 0.05, name
        assert 0.9 <= acc[name]["agreement"] <= 1.0
    assert acc["ort-fp32"]["max_abs_diff"] < 1e-3 and acc["ov-fp32"]["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_latency_figures_are_positive_with_counts(quick_demo):
    _, _, results = quick_demo
    for v in (v for v in results["variants"] if v["status"] == "ok"):
        lat = v["latency"]
        assert lat["count"] >= 30 and len(lat["samples_us"]) == lat["count"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        for step in (v["load"] or {}).get("steps", []):
            assert step["latency"]["count"] > 0 and step["latency"]["p50_ms"] > 0


@pytest.mark.slow
def test_the_search_records_every_candidate_and_load_tests_only_the_frontier(quick_demo):
    _, proc, results = quick_demo
    assert results["search"]["searched"] is True and results["search"]["time_budget_s"] is None
    assert results["search"]["not_tried"] == []
    stages = {v["name"]: v["search"] for v in results["variants"]}
    assert set(stages) == VARIANTS and all(s["stage"] in ("plan", "screen", "time", "load") for s in stages.values())
    loaded = {v["name"] for v in results["variants"] if v["load"] is not None}
    assert loaded and loaded == {name for name, s in stages.items() if s["stage"] == "load"}
    assert len(loaded) < len(VARIANTS)  # the search load-tests the frontier and the baseline, not everything
    for name, s in stages.items():  # every candidate that went no further says why
        assert s["stage"] == "load" or s["stopped"], (name, s)
    assert f"Searched {len(VARIANTS)} candidates in" in proc.stdout


@pytest.mark.slow
def test_locust_results_have_requests_and_no_failures(quick_demo):
    _, _, results = quick_demo
    for v in (v for v in results["variants"] if v["load"] is not None):
        load = v["load"]
        assert [s["users"] for s in load["steps"]] == [1, 4]
        assert all(s["requests"] > 0 and s["failures"] == 0 for s in load["steps"])
        # Locust's own counts agree with the per-step records; open-loop 503s on a busy machine are data
        opened = load["open_steps"]
        assert len(opened) == 1 and opened[0]["mode"] == "open" and opened[0]["requests"] > 0
        assert load["locust_total_requests"] == load["recorded_requests"] > 0
        # a request still out when its step ends, or one the generator could not send, is a failure of the
        # step (no coordinated omission) that Locust itself never completes, so never counts
        unsent = sum(s["errors"].get(kind, 0) for s in load["steps"] + opened for kind in UNSENT_KINDS)
        assert load["locust_total_failures"] >= sum(s["failures"] for s in load["steps"] + opened) - unsent
        assert v["capacity"]["budget_p99_ms"] == 100.0 and v["capacity"]["basis"]
        assert load["server_cores"] and load["loadgen_cores"]


@pytest.mark.slow
def test_report_names_every_variant_and_the_table_is_printed(quick_demo):
    out, proc, _ = quick_demo
    html = (out / "report.html").read_text()
    for name in VARIANTS:
        assert name in html
        assert name in proc.stdout
    assert str(out / "report.html") in proc.stdout


@pytest.mark.slow
def test_the_headline_speedup_is_the_confirmation_rounds(quick_demo):
    """The finalists were timed side by side with the baseline; the recommendation, its speedup and its interval are
    that round's, never a screening p50 over a baseline timed minutes later (issue 29)."""
    from pathlib import Path

    from mcbench.reports.decide import recommend
    from mcbench.reports.formatting import format_speedup
    from mcbench.reports.schema import load_results

    out, proc, results = quick_demo
    c = results["confirmation"]
    assert c["objective"] == results["objective"] == "p50" and c["baseline"] == "torch-fp32"
    assert 1 <= len(c["finalists"]) <= 4 and c["rounds"] == 10 and c["pick"] and not c["note"]
    assert [r["name"] for r in c["ratios"]] == c["finalists"]
    for r in c["ratios"]:
        assert r["rounds"] == 10 and r["samples"] >= 100 and 0 < r["low"] <= r["ratio"] <= r["high"]
    rec = recommend(load_results(Path(out) / "results.json"))
    assert rec.variant == c["pick"]
    if c["pick"] != "torch-fp32":
        mine = next(r for r in c["ratios"] if r["name"] == c["pick"])
        assert (f"{format_speedup(1 / mine['ratio'])} faster than the baseline's" in rec.sentences[0]
                or "within noise" in rec.sentences[0])
        assert f"95% CI {format_speedup(1 / mine['high'])}-{format_speedup(1 / mine['low'])}" in rec.sentences[0]
    assert "The finalists timed side by side with the baseline torch-fp32" in proc.stdout
