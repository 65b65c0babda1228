"""What an ONNX model is: opset, inputs, outputs, parameters, file size and the FLOPs of one inference.

FLOPs are counted from the graph with every input at its static shape: 2 x multiply-adds for Conv,
Gemm and MatMul (attention's Q·K^T and scores·V are MatMuls and counted as such). Other operators
are left out, so the figure is a lower bound dominated by what dominates the run time.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def model_stats(path: Path, shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Opset, outputs, parameters, size on disk and FLOPs of an ONNX file, its inputs fixed to `shapes` (name ->
    shape, as an Artifact's InputSpecs give them)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    size = Path(path).stat().st_size + sum(_external_size(path, t) for t in external)
    return {
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "outputs": [o.name for o in model.graph.output],
        "parameters": params,
        "size_bytes": size,
        "flops": count_flops(model, shapes),
    }


def _external_size(path: Path, tensor) -> int:
    length = next((int(e.value) for e in tensor.external_data if e.key == "length"), None)
    if length is not None:
        return length
    return int(np.prod(tensor.dims)) * 4


def count_flops(model, shapes: Mapping[str, Sequence[int]]) -> int:
    """2 x MACs of Conv, Gemm and MatMul nodes, from shapes inferred with the inputs fixed to `shapes`."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]  # stale entries (FP16 conversion leaves some without shapes) block inference
    ordered = _topological(fixed.graph)
    del fixed.graph.node[:]
    fixed.graph.node.extend(ordered)  # FP16 conversion appends its input Casts last; inference needs graph order
    for value in fixed.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name], strict=False):
                dim.Clear()
                dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(fixed)
    found = {v.name: _dims(v) for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    found.update({t.name: list(t.dims) for t in inferred.graph.initializer})
    return sum(_node_flops(node, found) for node in inferred.graph.node)


def _topological(graph) -> list:
    """The nodes in an order where each comes after the producers of its inputs (Kahn's algorithm, linear time;
    among the ready nodes the one first in the file goes first, so a sorted graph keeps its order)."""
    nodes = list(graph.node)
    produced_by = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    consumers: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for i, node in enumerate(nodes):
        for producer in {produced_by[x] for x in node.input if x in produced_by}:
            consumers[producer].append(i)
            waiting[i] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in consumers[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    if len(order) < len(nodes):  # a cycle: leave the rest as they were
        placed = set(order)
        order += [i for i in range(len(nodes)) if i not in placed]
    return [nodes[i] for i in order]


def _dims(value) -> list[int] | None:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    return None if any(d is None for d in dims) else dims


def _node_flops(node, shapes: dict[str, list[int] | None]) -> int:
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        weight_index = 3 if node.op_type == "QLinearConv" else 1
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[weight_index])
        if not out or not weight:
            return 0
        # each output element: Cin/groups x kH x kW multiply-adds; the weight is (Cout, Cin/groups, kH, kW)
        return 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
    if node.op_type in ("MatMul", "Gemm", "MatMulInteger", "QLinearMatMul"):
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not a or not out:
            return 0
        k = a[0] if node.op_type == "Gemm" and _attr(node, "transA") else a[-1]
        return 2 * int(np.prod(out)) * k
    return 0


def _attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


def fixed_batch_inputs(path: Path, axes: dict[str, int | None] | None = None) -> list[str]:
    """The inputs of an ONNX model whose batch axis (`axes`, by input name: the input specs' batch_axis; the first
    axis where not given; None: no batch axis, as a 0-d input's) is a fixed number rather than a named dimension.

    Such a model runs only at the batch size it was exported with; batch sizes above it are skipped.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    axes = axes or {}
    fixed = []
    for value in model.graph.input:
        axis = axes.get(value.name, 0)
        if value.name in initializers or axis is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) > axis and dims[axis].HasField("dim_value") and not dims[axis].dim_param:
            fixed.append(value.name)
    return fixed
