import json
import math

import pytest

from reports.schema import (
    SCHEMA_VERSION,
    Accuracy,
    LatencyStats,
    RunResult,
    SchemaError,
    VariantResult,
    load_results,
    percentile,
    save_results,
)


def test_percentile_matches_linear_interpolation():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0


def test_latency_stats_from_seconds_keeps_microsecond_samples():
    stats = LatencyStats.from_seconds([0.001, 0.002, 0.003])
    assert stats.count == 3
    assert stats.p50_ms == pytest.approx(2.0)
    assert stats.samples_us == [1000, 2000, 3000]
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(3.0)


def _run() -> RunResult:
    v = VariantResult("ort-fp32", "onnxruntime", ["export.onnx"], "ok",
                      accuracy=Accuracy("digits", 10, 0.9, 1.0, float("nan"), 0.0),
                      latency=LatencyStats.from_seconds([0.001, 0.002]))
    return RunResult("r1", "2026-01-01T00:00:00+00:00", {"name": "m"}, {}, {}, [v], baseline="ort-fp32")


def test_results_round_trip_and_nan_becomes_null(tmp_path):
    path = tmp_path / "results.json"
    save_results(_run(), path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["variants"][0]["accuracy"]["max_abs_diff"] is None
    back = load_results(path)
    assert back.variant("ort-fp32").latency.samples_us == [1000, 2000]
    assert back.variant("ort-fp32").accuracy.top1 == 0.9
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_load_results_rejects_other_schema_version(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 99, "variants": []}))
    with pytest.raises(SchemaError, match="schema_version 99 is not supported"):
        load_results(path)


def test_load_results_rejects_non_json(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{oops")
    with pytest.raises(SchemaError, match="results.json: not JSON"):
        load_results(path)


def test_latency_cv():
    stats = LatencyStats.from_seconds([0.001, 0.003])
    assert math.isclose(stats.cv, stats.stdev_ms / stats.mean_ms)
