import json
import math

import pytest

from mcbench.reports.schema import (
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


# ---------------------------------------------------------------- the JSON Schema file


def test_committed_json_schema_matches_the_dataclasses():
    from mcbench.reports.schema_check import REGENERATE, SCHEMA_PATH
    from mcbench.reports.schema_json import schema_text

    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA_PATH.name} is out of date with reports/schema.py: regenerate it with `{REGENERATE}` and commit it")


def test_json_schema_accepts_a_good_file_and_rejects_broken_ones(tmp_path):
    from mcbench.reports.schema_check import schema_errors

    good = _run()
    good.variants[0].accuracy.per_class = {"0": 1.0, "1": 0.8}
    path = tmp_path / "results.json"
    save_results(good, path)
    data = json.loads(path.read_text())
    assert schema_errors(data) == []

    wrong_type = json.loads(path.read_text())
    wrong_type["variants"][0]["latency"]["count"] = "many"
    assert schema_errors(wrong_type) == ["$.variants[0].latency.count: 'many' is not of type 'integer'"]

    missing = json.loads(path.read_text())
    del missing["variants"][0]["status"]
    assert schema_errors(missing) == ["$.variants[0]: 'status' is a required property"]

    extra = json.loads(path.read_text())
    extra["variants"][0]["latency_ms"] = 3
    assert "Additional properties are not allowed ('latency_ms' was unexpected)" in schema_errors(extra)[0]


def test_load_results_rejects_a_file_that_breaks_the_json_schema(tmp_path):
    path = tmp_path / "results.json"
    save_results(_run(), path)
    data = json.loads(path.read_text())
    data["variants"][0]["accuracy"]["per_class"] = {"0": "high"}
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"results.json: reading results: does not match results.schema.json: "
                       r"\$.variants\[0\].accuracy.per_class\['0'\]: 'high' is not of type 'number', 'null'"):
        load_results(path)


def test_save_results_refuses_to_write_a_broken_record(tmp_path):
    run = _run()
    run.variants[0].status = None  # type: ignore[assignment]
    path = tmp_path / "results.json"
    with pytest.raises(SchemaError, match=r"writing results: .*\$.variants\[0\].status: None is not of type 'string'"):
        save_results(run, path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_missing_jsonschema_is_said_once_not_passed_silently(monkeypatch, capsys):
    import builtins

    from mcbench.reports import schema_check

    real_import = builtins.__import__

    def no_jsonschema(name, *args, **kwargs):
        if name == "jsonschema":
            raise ImportError("no jsonschema")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    monkeypatch.setattr(schema_check, "_said_missing", False)
    schema_check._validator.cache_clear()
    try:
        assert schema_check.schema_errors({}) is None
        assert schema_check.schema_errors({}) is None
    finally:
        schema_check._validator.cache_clear()
    err = capsys.readouterr().err
    assert err.count("jsonschema is not installed") == 1 and "pip install jsonschema" in err


def test_latency_samples_keep_sub_microsecond_resolution():
    from mcbench.reports.schema import LatencyStats

    stats = LatencyStats.from_seconds([15.234e-6, 15.678e-6, 16.001e-6])
    assert stats.samples_us == [15.23, 15.68, 16.0]  # whole microseconds made a 15 us median step by 7%
