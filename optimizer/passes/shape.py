"""Fix a graph's input shapes, so a runtime compiles it for the one shape it will be fed.

An exported graph usually keeps its batch (and often its height and width) symbolic. OpenVINO then
compiles a dynamic model, whose CPU kernels choose their blocking at run time: on PaddleOCR's text-direction
classifier (a 1 ms MobileNetV3, 1x3x48x192) the same graph ran in about 0.8x the time once its input was static
(measured, one thread, interleaved; benchmarks/peers.py). onnxruntime also folds the shape computations
that depend only on the input's dims. The price: the model takes only that shape, so batches larger than
the run's batch are refused (optimizer.targets.batch_skip_reason says so before measuring).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mcbench.base.imports import require
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.passes import PassContext, PassError, register


@register("shape.static", takes=("onnx",), libraries=("onnx",))
def static_shape(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Fix every graph input's dims, the batch included, to the run's input shapes."""
    onnx = require("onnx")
    start = time.perf_counter()
    model = onnx.load(str(artifact.path))
    initializers = {i.name for i in model.graph.initializer}
    specs = {s.name: s for s in artifact.inputs}
    fixed: dict[str, list[int]] = {}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        spec = specs.get(graph_input.name)
        if spec is None:
            raise PassError(f"cannot shape.static: the graph's input {graph_input.name!r} has no shape in the run "
                            f"(inputs known: {', '.join(specs) or 'none'})")
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) != len(spec.shape):
            raise PassError(f"cannot shape.static: input {spec.name!r} has rank {len(dims)} in the graph, the run's "
                            f"shape {list(spec.shape)} has rank {len(spec.shape)}")
        for dim, value in zip(dims, spec.shape, strict=True):
            if dim.dim_value > 0 and dim.dim_value != value:
                raise PassError(f"cannot shape.static: input {spec.name!r} is {_shape(dims)} in the graph, the run "
                                f"feeds {list(spec.shape)}")
        if any(not d.dim_value for d in dims):
            fixed[spec.name] = list(spec.shape)
        for dim, value in zip(dims, spec.shape, strict=True):
            dim.Clear()
            dim.dim_value = value
    out = Path(out_dir) / "model.static.onnx"
    onnx.save(model, str(out))
    record: dict[str, Any] = {"pass": "shape.static", "fixed": fixed,
                              "seconds": round(time.perf_counter() - start, 3)}
    if not fixed:
        record["note"] = "every input was already static"
    ctx.log("shape.static: " + (", ".join(f"{n} {s}" for n, s in fixed.items()) or "every input was already static"))
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


def _shape(dims: Any) -> list[int | str]:
    return [d.dim_value or d.dim_param or "?" for d in dims]
