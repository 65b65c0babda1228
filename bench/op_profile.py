"""Why a variant is (not) faster: a few inferences profiled per operator, summarised in plain data.

onnxruntime's profiler (SessionOptions.enable_profiling, a JSON trace of kernel times) and
OpenVINO's performance counters (PERF_COUNT, `profiling_info` with each node's executed kernel)
say where the time goes by operator type, whether quantized operators really ran in integer
kernels, and which quantizable layers stayed in float. `explain` turns that, the CPU's ISA flags
and the variant's passes into one sentence for the report.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import cpu_info
from mcbench.optimizer.targets import Target, openvino_config, ort_providers, ort_session_options

PROFILE_RUNS = 10  # per-node medians over these runs: a shared machine's stalls hit single runs
WARMUP_RUNS = 2
TOP_OPS = 12
ORT_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                   "QAttention", "MatMulNBits", "DynamicQuantizeLSTM"}
ORT_CONVERT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast"}
ORT_COMPUTE_OPS = {"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "ConvTranspose"}
OV_CONVERT_OPS = {"FakeQuantize", "Convert", "Reorder"}
OV_COMPUTE_OPS = {"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution", "Gemm",
                  "FullyConnectedCompressed", "FullyConnectedQuantized", "FullyConnectedQuantizedLegacy"}


def profile_ops(artifact: Artifact, target: Target, feeds: dict[str, np.ndarray], runs: int = PROFILE_RUNS
                ) -> dict[str, Any]:
    """The operator profile of `runs` inferences; a profiler failure is recorded, never raised."""
    try:
        if target.runtime == "onnxruntime":
            ops = _ort_ops(artifact, target, feeds, runs)
        elif target.runtime == "openvino":
            ops = _ov_ops(artifact, target, feeds, runs)
        else:
            return {"runtime": target.runtime, "error": "operator profiling covers onnxruntime and OpenVINO only"}
    except Exception as exc:  # profiling is advice: it must never lose the measured variant
        return {"runtime": target.runtime, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    summary = summarise(ops, runs)
    summary["runtime"] = target.runtime
    summary["isa"] = list(cpu_info()["isa"])  # type: ignore[call-overload]
    summary["sentence"] = explain(summary, list(artifact.passes))
    return summary


def _ort_ops(artifact: Artifact, target: Target, feeds: dict[str, np.ndarray], runs: int) -> list[dict[str, Any]]:
    """One record per executed kernel, from onnxruntime's JSON trace (the warm-up run left out)."""
    ort = require("onnxruntime")
    opts = ort_session_options(ort, target)
    with tempfile.TemporaryDirectory(prefix="mcbench-prof-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(artifact.path), opts, providers=ort_providers(target))
        for _ in range(runs + WARMUP_RUNS):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in trace if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    per_node = defaultdict(list)
    for event in kernels:
        per_node[event["name"]].append(event)
    ops = []
    for name, events in per_node.items():
        timed = events[-runs:] if len(events) > runs else events  # the first runs warm up
        args = events[0].get("args", {})
        op_type = args.get("op_name", "?")
        ops.append({"name": name.removesuffix("_kernel_time"), "op_type": op_type,
                    "us": float(np.median([e.get("dur", 0) for e in timed])),
                    "kind": _ort_kind(op_type, args), "kernel": args.get("provider", "")})
    return ops


def _ort_kind(op_type: str, args: dict[str, Any]) -> str:
    if op_type in ORT_INTEGER_OPS or op_type.startswith("QLinear"):
        return "integer"
    if op_type in ORT_CONVERT_OPS:
        return "convert"
    types = {k for shape in args.get("input_type_shape", []) for k in shape}
    if op_type in ORT_COMPUTE_OPS:
        return "float16" if "float16" in types else "float"
    return "other"


def _ov_ops(artifact: Artifact, target: Target, feeds: dict[str, np.ndarray], runs: int) -> list[dict[str, Any]]:
    """One record per executed node from OpenVINO's performance counters, averaged over `runs`."""
    ov = require("openvino")
    config = {**openvino_config(target), "PERF_COUNT": True}
    compiled = ov.Core().compile_model(str(artifact.path), target.device.upper(), config)
    request = compiled.create_infer_request()
    for _ in range(WARMUP_RUNS):
        request.infer(feeds)
    totals: dict[str, dict[str, Any]] = {}
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            if str(info.status).rsplit(".", 1)[-1] != "EXECUTED":
                continue
            rec = totals.setdefault(info.node_name, {"name": info.node_name, "op_type": info.node_type,
                                                     "kernel": info.exec_type, "times": []})
            rec["times"].append(info.real_time.total_seconds() * 1e6)
    for rec in totals.values():
        rec["us"] = float(np.median(rec.pop("times")))
        rec["kind"] = _ov_kind(rec["op_type"], rec["kernel"])
    return list(totals.values())


def _ov_kind(node_type: str, exec_type: str) -> str:
    precision = exec_type.rsplit("_", 1)[-1].upper()
    if node_type in OV_CONVERT_OPS:
        return "convert"
    if precision in ("I8", "U8", "I4", "U4"):
        return "integer"
    if node_type in OV_COMPUTE_OPS or node_type == "Subgraph":
        return {"BF16": "bfloat16", "F16": "float16", "FP16": "float16"}.get(precision, "float")
    return "other"


def summarise(ops: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    """Time shares by operator type and by kind of kernel, and the compute layers that ran in float."""
    total = sum(op["us"] for op in ops) or 1e-9
    by_type: dict[tuple[str, str], dict[str, Any]] = {}
    for op in ops:
        entry = by_type.setdefault((op["op_type"], op["kind"]), {"op_type": op["op_type"], "kind": op["kind"],
                                                                 "ms": 0.0, "count": 0, "kernels": set()})
        entry["ms"] += op["us"] / 1000
        entry["count"] += 1
        entry["kernels"].add(op["kernel"])
    table = sorted(by_type.values(), key=lambda e: -e["ms"])
    kinds: dict[str, float] = defaultdict(float)
    for op in ops:
        kinds[op["kind"]] += op["us"] / total
    compute = ORT_COMPUTE_OPS | OV_COMPUTE_OPS
    return {
        "runs": runs,
        "total_ms": round(total / 1000, 4),
        "by_op_type": [{**e, "ms": round(e["ms"], 4), "share": round(e["ms"] * 1000 / total, 4),
                        "kernels": sorted(e["kernels"])} for e in table[:TOP_OPS]],
        "share_by_kind": {k: round(v, 4) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "integer_share": round(kinds.get("integer", 0.0), 4),
        "convert_share": round(kinds.get("convert", 0.0), 4),
        "integer_ops": sorted({op["op_type"] for op in ops if op["kind"] == "integer"}),
        "float_compute_layers": [op["name"] for op in ops
                                 if op["op_type"] in compute and op["kind"] in ("float", "float16", "bfloat16")],
    }


def _pass_names(passes: list[dict[str, Any]]) -> list[str]:
    return [str(p.get("pass", "")) for p in passes]


def explain(summary: dict[str, Any], passes: list[dict[str, Any]], ratio: float | None = None,
            reference: str | None = None) -> str:
    """One plain sentence: how the variant compares with FP32 and why, from its profile and this CPU."""
    isa = set(summary.get("isa", []))
    vnni = bool(isa & {"avx512_vnni", "avx_vnni", "amx_int8"})
    arch = ("AVX-512" if "avx512f" in isa else "AVX2" if "avx2" in isa else "this") + " CPU"
    cpu = arch + (" with VNNI" if vnni else " without VNNI")
    names = _pass_names(passes)
    top = summary["by_op_type"][0] if summary.get("by_op_type") else None
    speed = _speed(ratio, reference)
    sparsity = next((p.get("sparsity") for p in passes if str(p.get("pass", "")).startswith("prune.unstructured")),
                    None)
    int_share, conv_share = summary.get("integer_share", 0.0), summary.get("convert_share", 0.0)
    quantized = any(n.startswith(("quant.int8", "nncf.int8")) for n in names)
    if sparsity is not None:
        return (f"{speed}sparsity {float(sparsity):.0%} but the runtime uses dense kernels: "
                f"the zeroed weights are multiplied like any others")
    if quantized and int_share == 0:
        return (f"{speed}quantized, but no operator ran in an integer kernel: "
                f"{len(summary.get('float_compute_layers', []))} compute layer(s) stayed in float "
                f"and (de)quantize ops add {conv_share:.0%} of the time")
    if quantized:
        int_ops = "/".join(summary.get("integer_ops", [])[:3]) or "integer"
        text = f"{speed}{int_share:.0%} of the time in INT8 {int_ops} kernels, {conv_share:.0%} in (de)quantize ops"
        if "quant.int8_dynamic" in names and any(o in summary.get("integer_ops", []) for o in ("ConvInteger",)):
            text += f"; dynamic INT8 ConvInteger kernels are slow on this {cpu} (no fused INT8 convolution)"
        elif not vnni and (ratio is None or ratio >= 0.95):
            text += f"; on this {cpu} INT8 dot products take several instructions, so INT8 gains little over FP32"
        elif not vnni:
            text += f"; this {cpu} has no INT8 dot-product instructions: a VNNI CPU would gain more"
        floats = summary.get("float_compute_layers", [])
        if floats:
            text += f"; {len(floats)} compute layer(s) stayed in float"
        return text
    if "quant.fp16" in names:
        return (f"{speed}FP16 model on a CPU: {conv_share:.0%} of the time in Cast ops; this {arch} has no FP16 "
                "arithmetic, so FP16 pays off on GPUs, not here")
    if "nncf.weight_compression" in names:
        return (f"{speed}weights stored compressed and expanded to float at run time: the arithmetic stays "
                f"float ({top['op_type'] if top else 'compute'} {top['share'] if top else 0:.0%} of the time)")
    if top is None:
        return f"{speed}no operator timings were recorded"
    return f"{speed}float kernels; {top['op_type']} takes {top['share']:.0%} of the operator time"


def _speed(ratio: float | None, reference: str | None) -> str:
    if ratio is None or not reference:
        return ""
    if ratio > 1.05:
        return f"{ratio:.2f}x slower than {reference}: "
    if ratio < 0.95:
        return f"{1 / ratio:.2f}x faster than {reference}: "
    return f"as fast as {reference} (within 5%): "


def with_comparison(op_profile: dict[str, Any] | None, passes: list[dict[str, Any]], p50_ms: float,
                    reference: str | None, reference_p50_ms: float | None) -> dict[str, Any] | None:
    """The profile with its sentence rewritten against the FP32 reference measured in the same run."""
    if not op_profile or "error" in op_profile or not reference or not reference_p50_ms:
        return op_profile
    ratio = p50_ms / reference_p50_ms
    return {**op_profile, "vs_fp32": {"reference": reference, "p50_ratio": round(ratio, 4)},
            "sentence": explain(op_profile, passes, ratio, reference)}
