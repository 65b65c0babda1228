"""Conversion passes: a PyTorch module to ONNX."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.artifact import Artifact
from optimizer.errors import first_line
from optimizer.passes import PassContext, PassError, register
from optimizer.targets import Target, open_session, require

EXPORT_TOLERANCE = 1e-3  # max |onnx - module|, relative to max(1, max |module output|)
CHECK_SAMPLES = 4


@register("export.onnx")
def export_onnx(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Export with torch.export (the current exporter); fall back to TorchScript tracing, saying so."""
    if artifact.format == "onnx":
        return artifact
    from optimizer.intake_torch import load_torch_module

    torch = require("torch")
    module = load_torch_module(artifact)
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in artifact.inputs)
    names = [s.name for s in artifact.inputs]
    out = Path(out_dir) / "model.onnx"
    start = time.perf_counter()
    record: dict[str, Any] = {"pass": "export.onnx"}
    try:
        _export(torch, module, example, names, out, dynamo=True)
        record["exporter"] = "torch.export (dynamo)"
    except Exception as exc:  # the new exporter fails on some models: the legacy one is the stated fallback
        record["exporter"] = "torchscript (fallback)"
        record["fallback_reason"] = f"{type(exc).__name__}: {first_line(exc)}"
        try:
            _export(torch, module, example, names, out, dynamo=False)
        except Exception as exc2:
            raise PassError(f"ONNX export failed with both exporters: {exc2}") from exc2
    record["seconds"] = round(time.perf_counter() - start, 3)
    exported = Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
    record["max_abs_diff_vs_module"] = _check_export(torch, module, exported)
    ctx.log(f"exported to ONNX with {record['exporter']} in {record['seconds']:.1f} s, "
            f"max |onnx - module| = {record['max_abs_diff_vs_module']:.2e}")
    return exported


def _check_export(torch: Any, module: Any, exported: Artifact) -> float:
    """Run the module and the ONNX file on the same generated inputs; refuse an export that disagrees."""
    session = open_session(exported, Target("onnxruntime"))
    rng = np.random.default_rng(1)
    worst, scale = 0.0, 1.0
    for _ in range(CHECK_SAMPLES):
        feeds = {s.name: s.sample(rng) for s in exported.inputs}
        with torch.inference_mode():
            ref = module(*(torch.from_numpy(feeds[s.name]) for s in exported.inputs))
        refs = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
        for r, o in zip(refs, session.run(feeds), strict=False):
            worst = max(worst, float(np.max(np.abs(r - o))))
            scale = max(scale, float(np.max(np.abs(r))))
    if worst > EXPORT_TOLERANCE * scale:
        raise PassError(f"the exported ONNX model differs from the module by {worst:.3g} "
                        f"(tolerance {EXPORT_TOLERANCE * scale:.3g}) on generated inputs")
    return worst


def _export(torch: Any, module: Any, example: tuple, names: list[str], out: Path, dynamo: bool) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs: dict[str, Any] = {"input_names": names, "output_names": ["output"], "dynamo": dynamo}
        if dynamo:
            kwargs["verbose"] = False
            kwargs["external_data"] = False
        else:
            kwargs["opset_version"] = 17
        torch.onnx.export(module, example, str(out), **kwargs)
