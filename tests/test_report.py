"""The HTML report and the terminal summary, rendered from synthetic results: fast, offline, no model."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from mcbench.reports.decision import pareto
from mcbench.reports.formatting import format_ms, format_percent, format_size
from mcbench.reports.html import render_report, write_report
from mcbench.reports.page import report_view
from mcbench.reports.plots import pareto_latency_chart, plotly_js
from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import (
    Accuracy,
    LatencyStats,
    LoadResult,
    LoadStep,
    RunResult,
    VariantResult,
    load_results,
    save_results,
)
from mcbench.reports.summary import summary_rows
from mcbench.reports.text import summary_table

EVIL = "<script>alert(1)</script>"


def latency(p50: float, p99: float, count: int = 200) -> LatencyStats:
    return LatencyStats(count=count, p50_ms=p50, p90_ms=(p50 + p99) / 2, p99_ms=p99, mean_ms=p50 * 1.05,
                        stdev_ms=p50 * 0.1, min_ms=p50 * 0.8, max_ms=p99 * 1.3)


def load(rps_p99: list[tuple[int, float, float]], shared: bool = False, failures: int = 0) -> LoadResult:
    steps = [LoadStep(users=u, duration_s=10.0, requests=int(rps * 10), failures=failures if i == 0 else 0,
                      throughput_rps=rps, latency=latency(p99 / 2, p99, int(rps * 10)),
                      errors={"HTTPError 503: queue full": failures} if failures and i == 0 else {})
             for i, (u, rps, p99) in enumerate(rps_p99)]
    return LoadResult(steps=steps, server_cores=[0], loadgen_cores=[0] if shared else [1], cores_shared=shared,
                      server_threads=1, locust_total_requests=sum(s.requests for s in steps),
                      locust_total_failures=failures, loadgen_cpu_percent=42.0)


def variant(name: str, top1: float | None, agreement: float | None, p50: float, p99: float, size: int,
            recipe: list[str], runtime: str = "onnxruntime", **kw) -> VariantResult:
    passes = [{"pass": step, "weight_type": "QInt8"} if "quant" in step else {"pass": step} for step in recipe]
    return VariantResult(
        name, runtime, recipe, "ok",
        artifact={"path": f"/runs/r1/{name}.onnx", "format": "onnx", "sha256": "ab" * 32, "size_bytes": size,
                  "passes": passes},
        settings={"in_process": {"runtime": runtime, "device": "cpu", "threads": 2, "options": {}}},
        accuracy=Accuracy("digits", 360, top1, agreement, 0.0 if agreement == 1.0 else 0.02, 0.001),
        latency=latency(p50, p99), **kw,
    )


def sample_run(model_name: str = "digits-cnn") -> RunResult:
    """Five variants: a baseline, two on the frontier, one dominated, one that failed to build."""
    variants = [
        variant("torch-fp32", 0.975, 1.0, 0.400, 0.900, 240_000, [], runtime="torch",
                load=load([(1, 900.0, 2.1), (4, 1800.0, 4.5)])),
        variant("ort-fp32", 0.975, 1.0, 0.100, 0.300, 220_000, ["export.onnx"],
                load=load([(1, 1500.0, 1.2), (4, 3100.0, 2.6)], shared=True)),
        variant("ort-int8-dynamic", 0.961, 0.985, 0.250, 0.600, 70_000, ["export.onnx", "quant.int8_dynamic"],
                load=load([(1, 1100.0, 1.9), (4, 2000.0, 3.9)], failures=3)),
        variant("ort-int8-static", 0.969, 0.99, 0.080, 0.200, 68_000, ["export.onnx", "quant.int8_static"],
                warnings=["in-process median did not settle within 20 s (CV 31%): the machine is noisy"]),
        VariantResult("ov-fp32", "openvino", ["export.onnx"], "failed",
                      error="TargetError: openvino is not installed\n  pip install openvino"),
    ]
    return RunResult(
        run_id="20260101-120000-digits", created="2026-01-01T12:00:00+00:00",
        model={"name": model_name, "source": "built-in demo",
               "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32", "low": 0, "high": 100}]},
        config={"quick": True, "load": {"users": [1, 4], "step_seconds": 3.0, "warmup_s": 0.5}},
        environment={"cpu_model": "Test CPU", "isa": ["avx2", "fma"], "logical_cores": 2, "python": "3.12.1",
                     "libraries": {"onnxruntime": "1.20.0", "openvino": None}},
        variants=variants, baseline="torch-fp32",
        warnings=["no dataset: accuracy is not measured"],
    )


class TagCollector(HTMLParser):
    """The tags and attributes an HTML parser (not a regex) finds in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self.text: list[str] = []  # what a reader sees: not the style sheet, not the script
        self._in = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.script_text.append(data)
        elif self._in != "style":
            self.text.append(data)


def parsed(page: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(page)
    return collector


def test_report_names_every_variant_and_has_each_section():
    page = render_report(sample_run())
    for name in ("torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-fp32"):
        assert name in page
    for section in ("recommendation", "charts", "capacity", "summary", "load", "failed", "details", "environment",
                    "warnings"):
        assert f'id="{section}"' in page
    assert page.count('class="chart"') == 3 and 'id="profiles"' not in page  # one profile: no comparison
    assert "20260101-120000-digits" in page and "quick" in page


def test_report_escapes_a_hostile_model_and_variant_name():
    run = sample_run(model_name=EVIL)
    run.variants[1].name = EVIL
    run.variants[4].error = f"boom {EVIL}"
    run.baseline = "torch-fp32"
    page = render_report(run)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tags = parsed(page)
    scripts = [attrs for tag, attrs in tags.tags if tag == "script"]
    assert len(scripts) == 4 and not any("src" in a for a in scripts)  # chart data, plotly.js, charts, sorting
    data = page.split('<script type="application/json" id="mcbench-charts">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data  # nothing in the JSON can close its element
    traces = json.loads(data)["pareto-latency"]["data"]
    evil = next(t for t in traces if t.get("meta", {}).get("variant") == EVIL)  # the data keep the name
    assert evil["name"].startswith("&lt;script&gt;alert(1)&lt;/script&gt;")  # plotly is given it escaped


def test_report_loads_nothing_from_outside():
    full = render_report(sample_run())
    library = plotly_js()
    assert full.count(library) == 1  # plotly.js inlined, once, as the package ships it
    page = full.replace(library, "")  # its code names URLs (map tiles) that no chart here uses; the CSP blocks them
    lowered = page.lower()
    for pattern in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "//cdn"):
        assert pattern not in lowered
    assert "http://" not in page and "https://" not in page
    for tag, attrs in parsed(page).tags:
        for attr in ("src", "href"):
            assert not (attrs.get(attr) or "#").strip().lower().startswith(("http", "//")), (tag, attrs)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src 'none'" in csp.group(1) and "img-src data:" in csp.group(1)


def test_pareto_frontier_marks_the_non_dominated_set():
    points = [
        ("a", 0.90, 10.0),  # frontier: the most accurate
        ("b", 0.85, 5.0),  # frontier
        ("c", 0.85, 6.0),  # dominated by b (same accuracy, slower)
        ("d", 0.80, 5.0),  # dominated by b (same latency, less accurate)
        ("e", 0.70, 1.0),  # frontier: the fastest
        ("f", 0.70, 1.0),  # a tie with e: both stay
        ("g", 0.60, 12.0),  # dominated by everything
    ]
    front = pareto(points, quality=lambda p: p[1], cost=lambda p: p[2])
    assert [p[0] for p in front] == ["a", "b", "e", "f"]
    assert pareto([], quality=abs, cost=abs) == []


def test_frontier_uses_top1_and_excludes_failed_variants():
    run = sample_run()
    run.variants.append(VariantResult("broken-fast", "onnxruntime", [], "failed",
                                      accuracy=Accuracy(None, 1, 0.99, 1.0, 0, 0), latency=latency(0.01, 0.02)))
    rows = {r.name: r for r in summary_rows(run)}
    assert quality_metric(run).key == "top1"
    assert {n for n, r in rows.items() if r.on_frontier} == {"ort-fp32", "ort-int8-static"}


def test_frontier_falls_back_to_agreement_when_no_variant_has_top1():
    run = sample_run()
    for v in run.variants:
        if v.accuracy:
            v.accuracy.top1 = None
    assert quality_metric(run).key == "agreement"
    chart = pareto_latency_chart(run)
    marks = [t for t in chart.figure["data"] if t["mode"] == "markers"]
    diamonds = {t["meta"]["variant"] for t in marks if t["marker"]["symbol"] == "diamond"}
    assert diamonds == {"ort-fp32", "ort-int8-static"}
    assert "agreement" in chart.figure["layout"]["yaxis"]["title"]["text"] and "ov-fp32" in chart.note


def test_failed_variant_appears_with_its_full_error():
    page = render_report(sample_run())
    failed = page.split('id="failed"')[1].split("</section>")[0]
    assert "ov-fp32" in failed and "TargetError: openvino is not installed\n  pip install openvino" in failed


def test_nan_and_none_figures_render_as_na():
    run = sample_run()
    run.variants[2].accuracy = Accuracy(None, 0, float("nan"), None, float("inf"), None)
    run.variants[2].latency = None
    row = summary_rows(run)[2]
    assert [row.accuracy.text, row.agreement.text, row.max_abs_diff.text, row.p50.text, row.speedup.text] == ["n/a"] * 5
    assert row.accuracy.sort == ""
    page = render_report(run)
    words = set(re.findall(r"[\w.]+", " ".join(parsed(page).text)))
    assert not words & {"nan", "NaN", "inf", "Infinity", "None", "null"}
    assert ">n/a<" in page


def test_formatters_keep_precision_and_units():
    assert format_ms(0.0123) == "0.012" and format_ms(12.345) == "12.3" and format_ms(1234.5) == "1,234"
    assert format_percent(0.9751) == "97.5%" and format_percent(None) == "n/a"
    assert format_size(2048) == "2.0 KiB" and format_size(3 * 1024 * 1024) == "3.0 MiB" and format_size(12) == "12 B"


def test_summary_rows_compute_speedup_size_and_peak():
    rows = {r.name: r for r in summary_rows(sample_run())}
    assert rows["torch-fp32"].speedup.text == "1.00×" and rows["torch-fp32"].is_baseline
    assert rows["ort-fp32"].speedup.text == "4.00×"  # 0.400 / 0.100
    assert rows["ort-int8-static"].speedup.text == "5.00×"
    assert rows["ort-fp32"].peak_rps.text == "3,100" and rows["ort-fp32"].peak_p99.text == "2.60"
    assert rows["ort-int8-dynamic"].http_failures.text == "3"
    assert rows["ort-int8-static"].peak_rps.text == "n/a"
    assert rows["ov-fp32"].status == "failed" and rows["ov-fp32"].error == "TargetError: openvino is not installed"
    assert rows["ort-fp32"].size.text == "214.8 KiB"


def test_warnings_include_run_variant_and_derived_ones():
    warnings = [(w.scope, w.text) for w in report_view(sample_run()).warnings]
    assert ("run", "no dataset: accuracy is not measured") in warnings
    assert any(s == "ort-fp32" and "share CPU cores" in t for s, t in warnings)
    assert any(s == "ort-int8-dynamic" and "3 of" in t and "failed" in t for s, t in warnings)
    assert any(s == "ort-int8-static" and "noisy" in t for s, t in warnings)
    run = sample_run()
    run.variants[4].status = "skipped"
    skipped = [(w.scope, w.text) for w in report_view(run).warnings if w.scope == "ov-fp32"]
    assert skipped == [("ov-fp32", "skipped: TargetError: openvino is not installed")]


def test_text_summary_has_one_line_per_variant_with_its_figures():
    run = sample_run()
    lines = summary_table(run).splitlines()
    assert lines[0].split()[:3] == ["variant", "status", "top-1"]
    assert lines[-1] == "quality: top-1 accuracy; budget at most 1 point below the baseline"
    assert lines[-2] == "objective: in-process p99 latency (p99); ship ort-int8-static"  # p99: no objective recorded
    lines = lines[:-2]
    assert set(lines[1]) <= {"-", " "}
    body = lines[2:]
    assert len(body) == len(run.variants)
    by_name = {line.split()[0]: line.split() for line in body}
    assert by_name["ort-fp32"][:8] == ["ort-fp32", "ok", "97.5%", "0.100", "0.300", "4.00×", "3,100", "214.8"]
    assert by_name["ov-fp32"][:8] == ["ov-fp32", "failed", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
    assert "baseline" in by_name["torch-fp32"] and "frontier" in " ".join(by_name["ort-int8-static"])
    ort = body[[line.split()[0] for line in body].index("ort-fp32")]
    for heading, figure in (("p50 ms", "0.100"), ("p99 ms", "0.300"), ("rps@peak", "3,100")):
        assert lines[0].index(heading) + len(heading) == ort.index(figure) + len(figure)  # right-aligned under it


def test_round_trip_through_results_file_then_render(tmp_path: Path):
    run = sample_run()
    run.variants[0].accuracy.max_abs_diff = float("nan")
    results = tmp_path / "results.json"
    save_results(run, results)
    back = load_results(results)
    assert back.variant("ort-fp32").load.steps[1].throughput_rps == 3100.0
    out = write_report(back, tmp_path / "out" / "report.html")
    page = out.read_text(encoding="utf-8")
    assert out.name == "report.html" and "ort-int8-static" in page and page.rstrip().endswith("</html>")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_report_renders_a_run_with_no_variants():
    run = RunResult("empty", "not a date", {}, {}, {}, [])
    page = render_report(run)
    assert "empty" in page and "not a date" in page
    assert "Nothing to draw." in page and "No variant was load-tested" in page
    assert "No recommendation: the baseline (none) has no top-1 accuracy" not in page
    assert "No recommendation" in page
    assert summary_table(run).count("\n") == 1




def test_pareto_keeps_items_within_near_of_each_other_at_equal_quality():
    points = [("ort-fp32", 0.97, 0.0127), ("ort-fp32-t1", 0.97, 0.0131), ("pruned", 0.97, 0.0140),
              ("int8", 0.96, 0.0120), ("better", 0.98, 0.0135)]
    near = pareto(points, quality=lambda p: p[1], cost=lambda p: p[2], near=0.10)
    assert [p[0] for p in near] == ["ort-fp32", "ort-fp32-t1", "int8", "better"]  # pruned: 10.2% slower
    exact = pareto(points, quality=lambda p: p[1], cost=lambda p: p[2])
    assert [p[0] for p in exact] == ["ort-fp32", "int8", "better"]  # better: more accurate at no higher cost
