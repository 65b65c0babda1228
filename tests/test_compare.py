"""mcbench compare: two runs side by side, with the significance of each change."""

from __future__ import annotations

import random

import pytest

from mcbench.cli import main
from mcbench.reports.compare import compare_runs, two_proportion_p
from mcbench.reports.schema import Accuracy, LatencyStats, RunResult, VariantResult, save_results

EVIL = "<script>alert(1)</script>"


def series(median_us: float, n: int = 400, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [median_us * 1e-6 * rng.lognormvariate(0, 0.05) for _ in range(n)]


def v(name: str, median_us: float, top1: float, seed: int, samples: int = 2000) -> VariantResult:
    return VariantResult(name, "onnxruntime", ["export.onnx"], "ok",
                         accuracy=Accuracy("digits", samples, top1, 1.0, 0.0, 0.0),
                         latency=LatencyStats.from_seconds(series(median_us, seed=seed)))


def two_runs() -> tuple[RunResult, RunResult]:
    a = RunResult("run-a", "2026-01-01T00:00:00+00:00", {"name": "m"}, {"quick": True},
                  {"cpu_model": "X", "libraries": {"onnxruntime": "1.20"}},
                  [v("steady", 100, 0.97, 1), v("slowed", 100, 0.97, 2), v("sped-up", 200, 0.97, 3),
                   v("worse", 100, 0.97, 4), v("gone", 100, 0.97, 5)], baseline="steady")
    b = RunResult("run-b", "2026-01-02T00:00:00+00:00", {"name": "m"}, {"quick": False},
                  {"cpu_model": "X", "libraries": {"onnxruntime": "1.21"}},
                  [v("steady", 100, 0.97, 11), v("slowed", 125, 0.97, 12), v("sped-up", 120, 0.971, 13),
                   v("worse", 100, 0.90, 14), v(EVIL, 100, 0.97, 15)], baseline="steady")
    return a, b


def verdicts(cmp, figure: str) -> dict[str, str]:
    return {x.name: c.verdict for x in cmp.variants for c in x.changes if c.figure == figure}


def test_compare_finds_what_got_faster_slower_and_less_accurate():
    cmp = compare_runs(*two_runs())
    latency = verdicts(cmp, "in-process p50 ms")
    assert latency == {"steady": "no change", "slowed": "slower", "sped-up": "faster", "worse": "no change"}
    accuracy = verdicts(cmp, "top-1 accuracy")
    assert accuracy == {"steady": "no significant change", "slowed": "no significant change",
                        "sped-up": "no significant change", "worse": "less accurate"}
    assert (cmp.faster, cmp.slower, cmp.less_accurate) == (["sped-up"], ["slowed"], ["worse"])
    assert cmp.only_a == ["gone"] and cmp.only_b == [EVIL]
    slowed = next(c for x in cmp.variants if x.name == "slowed" for c in x.changes if c.figure.startswith("in-proc"))
    assert slowed.change.startswith("+2")
    assert "Mann-Whitney p=" in slowed.significance and "n=400/400" in slowed.significance
    assert ("quick", "yes", "no") in cmp.config_diff
    assert ("libraries.onnxruntime", "1.20", "1.21") in cmp.environment_diff


def test_two_proportion_test():
    assert two_proportion_p(0.97, 2000, 0.90, 2000) < 1e-10
    assert two_proportion_p(0.97, 100, 0.96, 100) > 0.5
    assert two_proportion_p(0.5, 0, 0.5, 10) == 1.0


def test_compare_command_writes_an_escaped_side_by_side_page(tmp_path, capsys):
    a, b = two_runs()
    save_results(a, tmp_path / "a.json")
    save_results(b, tmp_path / "b.json")
    paths = [str(tmp_path / name) for name in ("a.json", "b.json", "ab.html")]
    assert main(["compare", paths[0], paths[1], "--out", paths[2]]) == 0
    out = capsys.readouterr().out
    assert "1 faster, 1 slower, 1 less accurate" in out and f"comparison: {tmp_path / 'ab.html'}" in out
    page = (tmp_path / "ab.html").read_text(encoding="utf-8")
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<td class="slower">slower</td>' in page and '<td class="less-accurate">less accurate</td>' in page
    assert "http://" not in page and "https://" not in page


def test_compare_refuses_a_broken_file(tmp_path, capsys):
    a, _ = two_runs()
    save_results(a, tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{}")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert "mcbench: " in capsys.readouterr().err

def test_compare_falls_back_to_agreement_where_one_run_has_no_labels():
    a, b = two_runs()
    for x in b.variants:
        x.accuracy.top1 = None  # B ran on generated inputs: fidelity only
    cmp = compare_runs(a, b)
    assert set(verdicts(cmp, "top-1 agreement with the baseline")) == {"steady", "slowed", "sped-up", "worse"}
    assert verdicts(cmp, "top-1 accuracy") == {}


@pytest.mark.parametrize("missing", ["latency", "accuracy"])
def test_compare_skips_figures_a_run_lacks(missing):
    a, b = two_runs()
    setattr(b.variants[0], missing, None)
    cmp = compare_runs(a, b)
    figures = [c.figure for x in cmp.variants if x.name == "steady" for c in x.changes]
    assert ("in-process p50 ms" in figures) == (missing != "latency")
    assert ("top-1 accuracy" in figures) == (missing != "accuracy")
