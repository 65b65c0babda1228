"""The CI gate: budgets, baseline statistics, exit codes, JUnit and Markdown, all on synthetic results."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mcbench.cli import main
from mcbench.reports.gate import evaluate
from mcbench.reports.gate_budgets import GateConfig, GateConfigError, parse_budgets
from mcbench.reports.gate_output import junit_xml, markdown_summary
from mcbench.reports.gate_stats import compare, compare_rounds, mann_whitney_p, sign_test_p, t_quantile
from mcbench.reports.schema import Accuracy, LatencyStats, LoadResult, LoadStep, RunResult, VariantResult, save_results

STRICT = dict(min_effect=0.05, confidence=0.95, max_cv=0.5)


def _lognormal(seed: int, n: int = 300, scale: float = 1.0, sigma: float = 0.1) -> list[float]:
    rng = random.Random(seed)
    return [1e-3 * scale * rng.lognormvariate(0, sigma) for _ in range(n)]


def _step(users: int, rps: float, p99_s: float) -> LoadStep:
    return LoadStep(users, 10.0, int(rps * 10), 0, rps, LatencyStats.from_seconds([p99_s * 0.5] * 99 + [p99_s]))


def _variant(name: str = "ort-fp32", seconds: list[float] | None = None, **kw) -> VariantResult:
    load = LoadResult([_step(1, 300.0, 0.004), _step(4, 900.0, 0.012)], [0], [1], False, 1, 12000, 0)
    return VariantResult(
        name, "onnxruntime", ["export.onnx"], kw.pop("status", "ok"),
        artifact={"size_bytes": 500_000},
        accuracy=Accuracy("digits", 360, 0.95, 1.0, 0.0, 0.0),
        latency=LatencyStats.from_seconds(seconds if seconds is not None else _lognormal(0)),
        load=load, **kw,
    )


def _run(*variants: VariantResult) -> RunResult:
    return RunResult("r", "2026-01-01T00:00:00+00:00", {"name": "m"}, {}, {}, list(variants or [_variant()]))


def _config(text: str) -> GateConfig:
    return parse_budgets(text, "budgets.toml")


def _statuses(run: RunResult, text: str) -> dict[str, str]:
    return {c.name: c.status for c in evaluate(run, _config(text)).checks}


# --- budgets -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "ok", "broken"), [
    ("p50_ms", 1.5, 0.5),
    ("p99_ms", 2.0, 1.0),
    ("min_accuracy", 0.9, 0.99),
    ("max_size_bytes", 1_000_000, 100_000),
    ("min_throughput_rps", 800, 1000),
])
def test_each_budget_kind_passes_and_fails(metric, ok, broken):
    run = _run()
    assert list(_statuses(run, f'[[budget]]\nvariant = "ort-*"\n{metric} = {ok}\n').values()) == ["pass"]
    assert list(_statuses(run, f'[[budget]]\nvariant = "ort-*"\n{metric} = {broken}\n').values()) == ["fail"]


def test_load_p99_applies_to_the_named_step_and_bounds_throughput():
    run = _run()
    text = '[[budget]]\nvariant = "ort-fp32"\nusers = 4\nload_p99_ms = {p99}\nmin_throughput_rps = 500\n'
    assert _statuses(run, text.format(p99=15)) == {
        "ort-fp32: load_p99_ms <= 15": "pass", "ort-fp32: min_throughput_rps >= 500": "pass"}
    # under a 5 ms p99 only the 1-user step (300 req/s) counts, so 500 req/s is not reached
    assert set(_statuses(run, text.format(p99=5)).values()) == {"fail"}


def test_missing_data_is_an_error_not_a_pass():
    run = _run()
    run.variants[0].latency = None
    checks = evaluate(run, _config('[[budget]]\nvariant = "*"\np99_ms = 9\n')).checks
    assert [c.status for c in checks] == ["error"] and "no in-process latency" in checks[0].message
    missing_step = evaluate(_run(), _config('[[budget]]\nvariant = "*"\nusers = 8\nload_p99_ms = 9\n')).checks
    assert missing_step[0].status == "error" and "no load step with 8 users (steps: 1, 4)" in missing_step[0].message


def test_pattern_matching_nothing_and_profile_filter():
    run = _run(_variant("ort-fp32", profile="cpu-small"), _variant("ov-fp32", profile="cpu-big"))
    assert _statuses(run, '[[budget]]\nvariant = "trt-*"\np99_ms = 9\n') == {
        "[[budget]] #1 variant='trt-*'": "error"}
    assert list(_statuses(run, '[[budget]]\nvariant = "*"\nprofile = "cpu-big"\np99_ms = 9\n')) == [
        "ov-fp32: p99_ms <= 9"]


def test_bad_budgets_file_errors_name_file_key_and_problem():
    cases = {
        '[[budget]]\nvariant = "x"\np95_ms = 1\n': "budgets.toml: [[budget]] #1: unknown metric 'p95_ms' (known: "
                                                   "variant, profile, users, p50_ms, p99_ms, load_p99_ms, "
                                                   "min_throughput_rps, min_accuracy, max_size_bytes)",
        '[[budget]]\nvariant = "x"\np99_ms = "fast"\n': "budgets.toml: [[budget]] #1: key 'p99_ms': expected a "
                                                         "number, got 'fast'",
        '[[budget]]\nvariant = "x"\np99_ms = -1\n': "budgets.toml: [[budget]] #1: key 'p99_ms': must not be "
                                                     "negative, got -1",
        '[defaults]\nmin_efect = 0.1\n': "budgets.toml: [defaults]: unknown key 'min_efect' (known: min_effect, "
                                         "confidence, max_cv, resamples, seed, max_rounds_factor)",
        '[defaults]\nmax_rounds_factor = 0\n': "budgets.toml: [defaults]: key 'max_rounds_factor': at least 1 (1: "
                                               "never add rounds), got 0",
        '[defaults]\nconfidence = 1.5\n': "budgets.toml: [defaults]: key 'confidence': must be between 0 and 1, "
                                          "got 1.5",
        '[[budget]]\nvariant = "x"\nload_p99_ms = 5\n': "budgets.toml: [[budget]] #1: key 'load_p99_ms': needs "
                                                         "'users', the load step it applies to",
        '[[budget]]\np99_ms = 5\n': "budgets.toml: [[budget]] #1: key 'variant': required, a name or fnmatch "
                                    "pattern such as \"ort-*\"",
        '[budgets]\n': "budgets.toml: unknown key 'budgets' (known: [defaults], [[budget]])",
    }
    for text, message in cases.items():
        with pytest.raises(GateConfigError) as info:
            _config(text)
        assert str(info.value) == message


# --- statistics --------------------------------------------------------------------------------------------------

def test_known_shift_is_a_regression_and_same_distribution_is_not():
    base = _lognormal(1)
    slower = compare(base, _lognormal(2, scale=1.2), **STRICT)
    assert slower.verdict == "regression" and slower.ci_low > 1.1 and slower.p_value < 1e-6
    same = compare(base, _lognormal(3), **STRICT)
    assert same.verdict == "no change" and same.ci_low < 1 < same.ci_high
    assert compare(base, _lognormal(4, scale=0.8), **STRICT).verdict == "improvement"
    small = compare(base, _lognormal(5, scale=1.03, n=3000), **STRICT)  # significant but under min_effect
    assert small.verdict == "no change"


def test_very_noisy_data_is_inconclusive_and_deterministic():
    base, cand = _lognormal(6, n=40, sigma=1.0), _lognormal(7, n=40, scale=1.1, sigma=1.0)
    first = compare(base, cand, **STRICT)
    assert first.verdict == "inconclusive" and first.noise > 0.5
    assert compare(base, cand, **STRICT) == first


def _rounds(factors: list[float], seed: int) -> list[list[float]]:
    """One 50-sample series per round, each round's level set by its factor (the machine's state in that round)."""
    return [_lognormal(seed + i, n=50, scale=f, sigma=0.05) for i, f in enumerate(factors)]


def test_rounds_not_samples_are_the_unit_of_an_interleaved_comparison():
    # A/A, but each round caught the machine in another state: B's level over A's varies round to round. Pooled,
    # 400 correlated samples a side look like 400 independent ones and the bootstrap calls it a regression; round
    # by round, eight paired ratios that disagree are no evidence (issue 19's A/A false alarms).
    base = _rounds([1.0] * 8, 100)
    cand = _rounds([1.25, 0.97, 1.12, 0.94, 1.22, 1.08, 1.15, 0.96], 200)
    pooled = compare([x for r in base for x in r], [x for r in cand for x in r], **STRICT)
    assert pooled.verdict == "regression"
    by_round = compare_rounds(base, cand, **STRICT)
    assert by_round.verdict == "no change" and by_round.ci_low < 1 < by_round.ci_high and by_round.rounds == 8
    assert "geometric mean of 8 per-round ratios" in by_round.describe()
    # a slowdown every round shows is a regression, however the rounds' levels wander
    levels = [1.0, 1.3, 0.9, 1.1, 1.0, 1.2, 0.95, 1.05]
    slower = compare_rounds(_rounds(levels, 300), _rounds([1.2 * f for f in levels], 400), **STRICT)
    assert slower.verdict == "regression" and 1.15 < slower.ratio < 1.25 and slower.ci_low > 1.1
    with pytest.raises(ValueError, match="at least 5 paired rounds"):
        compare_rounds(base[:4], cand[:4], **STRICT)


def test_t_quantile_and_sign_test_match_tables():
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=0.01)
    assert t_quantile(0.975, 19) == pytest.approx(2.093, abs=0.001)
    assert t_quantile(0.95, 7) == pytest.approx(1.895, abs=0.001)
    assert sign_test_p([1.0] * 8) == pytest.approx(2 / 256)
    assert sign_test_p([1, -1] * 4) == 1.0


def test_mann_whitney_matches_known_values():
    assert mann_whitney_p([1.0] * 20, [1.0] * 20) == 1.0
    assert mann_whitney_p(list(range(20)), list(range(100, 120))) < 1e-6
    # scipy.stats.mannwhitneyu([1,2,3,4,5],[6,7,8,9,10], method="asymptotic") -> p = 0.0121858
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(0.0121858, rel=1e-5)


# --- outputs and exit codes --------------------------------------------------------------------------------------

def test_junit_counts_and_markdown_content():
    run = _run(_variant("ort-fp32"), _variant("ov-fp32", seconds=_lognormal(8, scale=3)))
    baseline = _run(_variant("ort-fp32", seconds=_lognormal(9, n=40, sigma=1.0)),
                    _variant("ov-fp32", seconds=_lognormal(10)))
    outcome = evaluate(run, _config('[[budget]]\nvariant = "*"\np50_ms = 2\nmin_accuracy = 0.5\n'), baseline)
    suite = ET.fromstring(junit_xml(outcome))
    assert suite.get("tests") == "6" and len(suite.findall("testcase")) == 6
    assert suite.get("failures") == "2"  # ov-fp32 p50 budget and its regression
    assert len(suite.findall("testcase/failure")) == 2 and suite.get("errors") == "0"
    assert suite.get("skipped") == "1"  # the noisy ort-fp32 baseline: inconclusive
    assert "noise CV" in suite.find("testcase/skipped").get("message")
    assert outcome.exit_code == 1  # a failure outranks an inconclusive comparison
    md = markdown_summary(outcome)
    assert md.startswith("## mcbench gate: fail (exit 1)")
    assert "| ❌ fail | ov-fp32: p50_ms <= 2 | p50_ms = 3" in md
    assert "ov-fp32: latency vs baseline | regression (stored samples): median +" in md


def _files(tmp_path: Path, run: RunResult, budgets: str, baseline: RunResult | None = None) -> list[str]:
    save_results(run, tmp_path / "results.json")
    (tmp_path / "budgets.toml").write_text(budgets)
    argv = ["gate", str(tmp_path / "results.json"), "--budgets", str(tmp_path / "budgets.toml"),
            "--junit", str(tmp_path / "junit.xml"), "--markdown", str(tmp_path / "summary.md")]
    if baseline is not None:
        save_results(baseline, tmp_path / "baseline.json")
        argv += ["--baseline", str(tmp_path / "baseline.json")]
    return argv


def test_exit_codes(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    ok = '[[budget]]\nvariant = "*"\np99_ms = 5\n'
    assert main(_files(tmp_path, _run(), ok)) == 0
    assert "## mcbench gate: pass (exit 0)" in summary.read_text()
    assert ET.parse(tmp_path / "junit.xml").getroot().get("tests") == "1"
    assert main(_files(tmp_path, _run(), '[[budget]]\nvariant = "*"\np99_ms = 0.5\n')) == 1
    assert main(_files(tmp_path, _run(), ok, baseline=_run(_variant(seconds=_lognormal(11, scale=0.7))))) == 1
    capsys.readouterr()
    assert main(_files(tmp_path, _run(), '[[budget]]\nvariant = "*"\np95_ms = 1\n')) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcbench: ") and "unknown metric 'p95_ms'" in err
    assert main(_files(tmp_path, _run(), '[[budget]]\nvariant = "nope"\np99_ms = 1\n')) == 2
    (tmp_path / "results.json").write_text("{")
    assert main(["gate", str(tmp_path / "results.json"), "--budgets", str(tmp_path / "budgets.toml")]) == 2


def test_inconclusive_exits_3(tmp_path):
    base = _run(_variant(seconds=_lognormal(6, n=40, sigma=1.0)))
    cand = _run(_variant(seconds=_lognormal(7, n=40, scale=1.1, sigma=1.0)))
    argv = _files(tmp_path, cand, '[[budget]]\nvariant = "*"\nmin_accuracy = 0.5\n', base)
    assert main(argv) == 3
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("skipped") == "1" and "noise CV" in suite.find("testcase/skipped").get("message")


def test_remeasure_with_missing_artifacts_exits_2(tmp_path, capsys):
    run = _run(_variant(settings={"in_process": {"runtime": "onnxruntime", "device": "cpu", "threads": 1}}))
    run.variants[0].artifact = {"path": str(tmp_path / "gone.onnx"), "format": "onnx",
                                "inputs": [{"name": "x", "shape": [1, 4]}], "size_bytes": 10}
    argv = _files(tmp_path, run, '[[budget]]\nvariant = "*"\np99_ms = 5\n', run) + ["--remeasure", "5"]
    assert main(argv) == 2
    assert "gone.onnx is gone" in capsys.readouterr().err


def test_remeasure_times_both_runs_interleaved(tmp_path, linear_onnx):
    artifact = {"path": str(linear_onnx), "format": "onnx", "inputs": [{"name": "x", "shape": [1, 4]}],
                "size_bytes": linear_onnx.stat().st_size}
    run = _run(_variant(settings={"in_process": {"runtime": "onnxruntime", "device": "cpu", "threads": 1}}))
    run.variants[0].artifact = artifact
    argv = _files(tmp_path, run, '[[budget]]\nvariant = "*"\nmax_size_bytes = 1e6\n', run) + ["--remeasure", "5"]
    assert main(argv) in (0, 1, 3)  # an A/A comparison: the verdict is chance, the path is what is tested
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("errors") == "0"
    # the ORT pair ran on one process-wide pool, and the message says so; a noisy machine may add "; 10 rounds, not 5"
    assert re.search(r"\(re-measured interleaved, one shared onnxruntime thread pool, 1 intra-op thread[;)]",
                     (tmp_path / "summary.md").read_text())
