"""Conversion passes: a PyTorch module to ONNX, or straight to OpenVINO IR."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.targets import Target, open_session

EXPORT_TOLERANCE = 1e-3  # max |onnx - module|, relative to max(1, max |module output|)
CHECK_SAMPLES = 4
Exporter = Literal["auto", "dynamo", "torchscript"]


@register("export.onnx", takes=("torch", "pt2"), makes="onnx", libraries=("torch", "onnx", "onnxscript"))
def export_onnx(artifact: Artifact, ctx: PassContext, out_dir: Path, dynamic_batch: bool = True,
                exporter: Exporter = "auto") -> Artifact:
    """Export with torch.export (the current exporter); fall back to TorchScript tracing, saying so.

    `exporter=torchscript` asks for the TorchScript exporter outright: onnxruntime's transformer
    fusions (fuse.transformer) match its graph of a BERT encoder, not the torch.export one.

    The batch axis is exported dynamic, so one file serves every batch size a profile asks for and
    the server can batch requests; a model that cannot export that way is exported at its fixed
    batch size, and the record says why.
    """
    from mcbench.optimizer.intake_torch import load_torch_module, output_names_of

    torch = require("torch")
    module = load_torch_module(artifact)
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in artifact.inputs)
    names = [s.name for s in artifact.inputs]
    outputs = output_names_of(module, artifact.inputs)  # the torch session's names, so both runtimes answer alike
    out = Path(out_dir) / "model.onnx"
    start = time.perf_counter()
    record: dict[str, Any] = {"pass": "export.onnx"}
    fixed = _fixed_batch(torch, module, example) if dynamic_batch else None
    record["batch"] = "dynamic" if dynamic_batch and not fixed else f"static ({fixed})" if fixed else "static"
    try:
        _export_either(torch, module, example, (names, outputs), out, record, record["batch"] == "dynamic", exporter)
    except Exception as exc:
        if record["batch"] != "dynamic":
            raise
        record["batch"] = f"static (dynamic batch export failed: {type(exc).__name__}: {first_line(exc)})"
        _export_either(torch, module, example, (names, outputs), out, record, False, exporter)
    record["seconds"] = round(time.perf_counter() - start, 3)
    exported = Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
    record["max_abs_diff_vs_module"] = _check_export(torch, module, exported, batched=record["batch"] == "dynamic")
    ctx.log(f"exported to ONNX with {record['exporter']} in {record['seconds']:.1f} s, "
            f"max |onnx - module| = {record['max_abs_diff_vs_module']:.2e}")
    return exported


def _fixed_batch(torch: Any, module: Any, example: tuple) -> str | None:
    """Why the module cannot run a batch of three (a torch.export program exported at batch 1 guards it), or None."""
    try:
        with torch.inference_mode():
            module(*(torch.cat([e, e, e]) for e in example))
    except Exception as exc:
        return f"the module does not run a batch of 3: {type(exc).__name__}: {first_line(exc)}"
    return None


def _export_either(torch: Any, module: Any, example: tuple, names: tuple[list[str], list[str]], out: Path,
                   record: dict[str, Any], dynamic: bool, exporter: Exporter = "auto") -> None:
    record.pop("fallback_reason", None)  # a failed dynamic-batch attempt's reason is not this attempt's
    if exporter == "torchscript":
        _export(torch, module, example, names, out, dynamo=False, dynamic=dynamic)
        record["exporter"] = "torchscript"
        return
    try:
        _export(torch, module, example, names, out, dynamo=True, dynamic=dynamic)
        record["exporter"] = "torch.export (dynamo)"
    except Exception as exc:  # the new exporter fails on some models: the legacy one is the stated fallback
        if exporter == "dynamo":
            raise PassError(f"ONNX export with torch.export failed: {first_line(exc)}") from exc
        record["exporter"] = "torchscript (fallback)"
        record["fallback_reason"] = f"{type(exc).__name__}: {first_line(exc)}"
        try:
            _export(torch, module, example, names, out, dynamo=False, dynamic=dynamic)
        except Exception as exc2:
            raise PassError(f"ONNX export failed with both exporters: {exc2}") from exc2


@register("export.openvino", takes=("torch", "pt2"), makes="openvino", libraries=("torch", "openvino"))
def export_openvino(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """OpenVINO IR straight from the PyTorch module (`openvino.convert_model` with example inputs, or the
    torch.export program of a .pt2), no ONNX between.

    OpenVINO's PyTorch frontend sees the module's own operations, so it can keep patterns an ONNX
    export splits up; the IR is checked against the module like an ONNX export.
    """
    from mcbench.optimizer.intake_torch import load_torch_module, output_names_of

    torch = require("torch")
    ov = require("openvino")
    module = load_torch_module(artifact)
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in artifact.inputs)
    outputs = output_names_of(module, artifact.inputs)
    out = Path(out_dir) / "model.xml"
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if artifact.format == "pt2":  # the program itself: its module is not traceable by TorchScript
                model = ov.convert_model(torch.export.load(str(artifact.path)))
            else:
                model = ov.convert_model(module, example_input=example)
        for port, spec in zip(model.inputs, artifact.inputs, strict=True):
            port.get_tensor().set_names({spec.name})
        for i, port in enumerate(model.outputs):  # the ONNX route's names, so a server answers the same
            port.get_tensor().set_names({outputs[i] if i < len(outputs) else f"output_{i}"})
        ov.save_model(model, str(out))
    except Exception as exc:
        raise PassError(f"cannot export.openvino: openvino.convert_model failed: {first_line(exc)}") from exc
    record: dict[str, Any] = {"pass": "export.openvino", "converter": "openvino.convert_model (PyTorch frontend)"}
    exported = Artifact(out, "openvino", artifact.inputs, passes=artifact.passes + (record,))
    record["max_abs_diff_vs_module"] = _check_export(torch, module, exported, batched=False,
                                                     target=Target("openvino", options={"precision": "f32"}))
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log(f"converted to OpenVINO IR from PyTorch in {record['seconds']:.1f} s, "
            f"max |ir - module| = {record['max_abs_diff_vs_module']:.2e}")
    return exported


def _check_export(torch: Any, module: Any, exported: Artifact, batched: bool,
                  target: Target | None = None) -> float:
    """Run the module and the ONNX file on the same generated inputs; refuse an export that disagrees.

    A dynamic-batch export is also checked on a batch of three, so a graph that baked in batch 1
    is caught here rather than at serving time.
    """
    session = open_session(exported, target or Target("onnxruntime"))
    rng = np.random.default_rng(1)
    worst, scale = 0.0, 1.0
    for i in range(CHECK_SAMPLES):
        feeds = {s.name: s.sample(rng) for s in exported.inputs}
        if batched and i == CHECK_SAMPLES - 1:
            feeds = {s.name: np.concatenate([feeds[s.name], s.sample(rng), s.sample(rng)]) for s in exported.inputs}
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


def _export(torch: Any, module: Any, example: tuple, names: tuple[list[str], list[str]], out: Path, dynamo: bool,
            dynamic: bool) -> None:
    """Export with these (input names, output names)."""
    names, outputs = names
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs: dict[str, Any] = {"input_names": names, "output_names": outputs, "dynamo": dynamo}
        if dynamo:
            kwargs["verbose"] = False
            kwargs["external_data"] = False
            if dynamic:
                batch = torch.export.Dim("batch", min=1, max=4096)
                kwargs["dynamic_shapes"] = tuple({0: batch} for _ in names)
        else:
            kwargs["opset_version"] = 17
            if dynamic:
                kwargs["dynamic_axes"] = {n: {0: "batch"} for n in [*names, *outputs]}
        torch.onnx.export(module, example, str(out), **kwargs)
