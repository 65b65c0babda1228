"""What a run is logged to MLflow as: plain dicts of params, tags and metrics, built from the results schema alone.

`mcbench.tracking` writes them; nothing here imports MLflow. Per record of results.json:

- parent run (named by the run id): the model and the run's config as params; the primary quality metric's name
  and budget (reports/quality.py) and the objective that decided (reports/decision.py); tags for the status
  (`ok`, or `failed` where a variant failed), the objective, the recommended variant(s), the baseline, the
  environment; counts of ok, failed and skipped variants as metrics; results.json and report.html as artifacts.
- nested run per variant (named by the variant, `profile:variant` under a hardware profile): params recipe,
  runtime, profile, batch size, device, threads, runtime options, each pass's knobs; metrics `quality` (the
  run's primary metric, named by the `quality_metric` param), `quality_shortfall` (points worse than the
  baseline), every accuracy figure as `accuracy.NAME`, in-process `p50_ms` `p90_ms` `p99_ms` `mean_ms`, load
  `peak_rps` (and `peak_rps_batched`), capacity `capacity_rps` (replicas, costs), `size_bytes`, `parameters`,
  `flops`; tags `status`, `reason` (why it was skipped or failed), `recommendation`, `frontier` ("true" on the
  objective's Pareto frontier, the report's mark); the model file(s) under
  `model/` only with `log_models`. A failed variant's run ends FAILED.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcbench.base.text import clip
from mcbench.reports.schema import RunResult, VariantResult

# MLflow's own limits (mlflow.utils.validation): longer values are refused, so they are cut here.
MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY = 6000, 8000, 250


def parent_record(run: RunResult) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """The parent run's params, tags and metrics."""
    from mcbench.reports.decide import recommendations
    from mcbench.reports.decision import objective_of
    from mcbench.reports.quality import quality_metric

    metric, objective = quality_metric(run), objective_of(run)
    params = {"model": run.model.get("name"), "model.source": run.model.get("source"),
              "quality_metric": metric.key, "quality_budget": metric.budget_text(), "objective": objective.key}
    params.update(_flat("config", {k: v for k, v in run.config.items() if k != "cache_dir"}))
    counts = {s: sum(v.status == s for v in run.variants) for s in ("ok", "failed", "skipped")}
    shipped = [r.variant for r in recommendations(run) if r.kind == "ship" and r.variant]
    tags = {"status": "failed" if counts["failed"] else "ok", "model": run.model.get("name"),
            "baseline": run.baseline, "recommended": ", ".join(shipped) or None, "objective": objective.key,
            "mlflow.note.content": _note(run, counts, shipped)}
    env = run.environment or {}
    tags.update({f"env.{k}": v for k, v in env.items() if _scalar(v)})
    tags.update({f"env.{k}": ", ".join(map(str, v)) for k, v in env.items() if k == "isa" and isinstance(v, list)})
    tags.update(_flat("env.lib", env.get("libraries") or {}))
    metrics = {f"variants_{s}": float(n) for s, n in counts.items()}
    return _params(params), _tags(tags), _metrics(metrics)


def variant_record(run: RunResult, v: VariantResult) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """A variant's params, tags and metrics."""
    from mcbench.reports.decide import recommendations
    from mcbench.reports.decision import frontier_names
    from mcbench.reports.quality import quality_metric, quality_of, shortfall

    metric = quality_metric(run)
    in_process = v.settings.get("in_process") or {}
    params: dict[str, Any] = {
        "variant": v.name, "recipe": " + ".join(v.recipe) or "(the source model)", "runtime": v.runtime,
        "profile": v.profile, "batch_size": v.settings.get("batch_size"), "device": in_process.get("device"),
        "threads": in_process.get("threads"), "format": v.artifact.get("format"), "quality_metric": metric.key,
    }
    params.update(_flat("option", in_process.get("options") or {}))
    seen: dict[str, int] = {}
    for record in v.passes or v.artifact.get("passes") or []:
        name = str(record.get("pass", "pass"))
        seen[name] = seen.get(name, 0) + 1
        name += f".{seen[name]}" if seen[name] > 1 else ""  # a pass twice in one recipe: quant.x, then quant.x.2
        knobs = {k: val for k, val in record.items() if k not in ("pass", "seconds") and _scalar(val)}
        params.update({f"pass.{name}.{k}": val for k, val in knobs.items()} or {f"pass.{name}": "(no settings)"})
    chosen = {r.variant: r.kind for r in recommendations(run) if r.variant}
    tags = {"status": v.status, "reason": v.error if v.status != "ok" else None,
            "exit_status": v.exit_status, "recommendation": chosen.get(v.name),
            "frontier": "true" if v.name in frontier_names(run) else None,
            "baseline": "true" if v.name == run.baseline else None, "warnings": " | ".join(v.warnings) or None,
            "mlflow.note.content": v.settings.get("why")}
    metrics: dict[str, Any] = {"quality": quality_of(v, metric), "quality_shortfall": shortfall(run, v, metric)}
    if v.accuracy is not None:
        acc = v.accuracy
        figures = {"top1": acc.top1, "agreement": acc.agreement, "max_abs_diff": acc.max_abs_diff,
                   "mean_abs_diff": acc.mean_abs_diff, **acc.metrics}
        metrics.update({f"accuracy.{k}": val for k, val in figures.items()})
    if v.latency is not None:
        lat = v.latency
        metrics.update({"p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "mean_ms": lat.mean_ms})
    if v.load is not None:
        load = v.load
        if load.steps or load.open_steps:
            metrics["peak_rps"] = load.peak_throughput_rps
        batched = load.batched_steps + load.batched_open_steps
        if batched:
            metrics["peak_rps_batched"] = max(s.throughput_rps for s in batched)
    if v.capacity is not None:
        cap = v.capacity
        metrics.update({"capacity_rps": cap.max_rps_under_budget, "capacity_budget_p99_ms": cap.budget_p99_ms,
                        "capacity_replicas": cap.replicas, "cost_per_hour": cap.cost_per_hour,
                        "cost_per_million": cap.cost_per_million})
    metrics.update({k: v.artifact.get(k) for k in ("size_bytes", "parameters", "flops")})
    return _params(params), _tags(tags), _metrics(metrics)


def model_files(v: VariantResult) -> tuple[list[Path], list[Path]]:
    """The files that make up a variant's model (an IR's .bin, an ONNX file's external data), and those gone."""
    path = Path(v.artifact["path"])
    files = [path]
    if v.artifact.get("format") == "openvino":
        files.append(path.with_suffix(".bin"))
    elif path.suffix == ".onnx" and path.is_file():
        files += _external_data(path)
    present = [p for p in files if p.exists()]
    return present, [p for p in files if not p.exists()]


def _external_data(path: Path) -> list[Path]:
    """The external-data files an ONNX model names (intake checked they stay inside the model's folder)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a model the run measured loads; anything else is logged as the one file it is
        return []
    names = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location and location not in names:
                names.append(location)
    return [path.parent / n for n in names]


def _note(run: RunResult, counts: dict[str, int], shipped: list[str]) -> str:
    """The parent run's description in the MLflow UI."""
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    text = f"mcbench run {run.run_id} of {run.model.get('name')}: {len(run.variants)} variants ({done})."
    return text + (f" Recommended: {', '.join(shipped)}." if shipped else "")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _flat(prefix: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts as dotted keys; lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out.update(_flat(name, value) if value else {name: "{}"})
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


_BAD_KEY = re.compile(r"[^\w.\- ]")


def _key(name: str) -> str:
    """A name MLflow takes as a param, tag or metric key: word characters, '.', '-', ' ' and '_' only."""
    key = _BAD_KEY.sub("_", name).strip() or "_"
    return ("_" + key if key.startswith(".") else key)[:MAX_KEY]


def _text(value: Any, limit: int) -> str:
    text = json.dumps(value) if isinstance(value, bool) else str(value)  # true/false, as results.json has them
    return clip(text, limit)


def _params(data: dict[str, Any]) -> dict[str, str]:
    return {_key(k): _text(v, MAX_PARAM_VALUE) for k, v in data.items() if v is not None}


def _tags(data: dict[str, Any]) -> dict[str, str]:
    keep = ("mlflow.note.content", "mlflow.parentRunId")
    return {(k if k in keep else _key(k)): _text(v, MAX_TAG_VALUE) for k, v in data.items() if v is not None}


def _metrics(data: dict[str, Any]) -> dict[str, float]:
    """Finite numbers only: a figure the run does not have is left out, never logged as 0 or NaN."""
    return {_key(k): float(v) for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
