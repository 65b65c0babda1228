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
from optimizer.passes import PassContext, PassError, register
from optimizer.targets import load_factory, require


@register("export.onnx")
def export_onnx(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Export with torch.export (the current exporter); fall back to TorchScript tracing, saying so."""
    if artifact.format == "onnx":
        return artifact
    torch = require("torch")
    module = load_factory(artifact.factory)()
    module.load_state_dict(torch.load(artifact.path, map_location="cpu", weights_only=True))
    module.eval()
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
        record["fallback_reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            _export(torch, module, example, names, out, dynamo=False)
        except Exception as exc2:
            raise PassError(f"ONNX export failed with both exporters: {exc2}") from exc2
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log(f"exported to ONNX with {record['exporter']} in {record['seconds']:.1f} s")
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


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
