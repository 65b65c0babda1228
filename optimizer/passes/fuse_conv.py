"""Fold the per-channel affine ops that follow a convolution into its weights and bias.

Some exporters write a batch norm as elementwise ops after the Conv: `Conv -> Sub(mean) -> Mul(scale) ->
Add(shift)` (Yahoo's Open-NSFW ResNet, from Caffe through TensorFlow, has 52 such chains). onnxruntime's
graph optimiser fuses `Conv -> Add`, `Conv -> Mul` and `Conv -> BatchNormalization`, but not a chain that
starts with a Sub, nor does `quant_pre_process`; static INT8 then puts a QuantizeLinear/DequantizeLinear
pair around every one of those ops, which costs more than the quantized convolutions save.

The pass first runs onnxruntime's basic (portable, standard-operator) optimisation, which drops no-op
Casts, cancels Transpose pairs and folds constants, so the chains sit right after their Conv. Then each
chain of constant per-channel Add / Sub / Mul / Div (and an inference BatchNormalization) whose input is a
Conv's only consumer is folded into that Conv:

    (W x + b - m) * s + a  =  (s W) x + (b - m) s + a

The result is checked against the source graph on generated inputs before it is kept.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.passes.fuse import output_difference
from mcbench.optimizer.passes.prepare import _ort_basic
from mcbench.optimizer.targets import Target, open_session

AFFINE_OPS = ("Add", "Sub", "Mul", "Div", "BatchNormalization")
FOLD_TOLERANCE = 1e-3  # max |folded - source|, relative to max(1, max |source output|)


@register("fuse.conv_affine", takes=("onnx",), libraries=("onnx", "onnxruntime"))
def conv_affine(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Fold constant per-channel Add/Sub/Mul/Div and BatchNormalization after a Conv into its weights and bias."""
    require("onnx")
    import onnx

    start = time.perf_counter()
    out_dir = Path(out_dir)
    before = len(onnx.load(str(artifact.path), load_external_data=False).graph.node)
    basic = out_dir / "model.basic.onnx"
    try:
        _ort_basic(artifact.path, basic)  # no-op Casts dropped, Transposes cancelled, constants folded
    except Exception as exc:
        raise PassError(f"cannot fuse.conv_affine: onnxruntime cannot load the graph ({first_line(exc)})") from exc
    model = onnx.load(str(basic))
    basic.unlink()
    graph = model.graph
    after_basic = len(graph.node)
    folded, convs = fold_conv_affine(graph)
    if convs == 0 and not folded:
        raise PassError("cannot fuse.conv_affine: the graph has no Conv with constant weights")
    out = out_dir / "model.conv_affine.onnx"
    onnx.save(model, str(out))
    record: dict[str, Any] = {"pass": "fuse.conv_affine", "folded": dict(folded), "convs": convs,
                              "nodes_before": before,
                              "nodes_after_basic_optimisation": after_basic, "nodes_after": len(graph.node)}
    if not folded:
        record["note"] = "no constant per-channel op follows a Conv: only onnxruntime's basic optimisation ran"
    result = Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
    record["max_abs_diff_vs_source"] = _check(artifact, result)
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log("fuse.conv_affine: " + (", ".join(f"{op} x{n}" for op, n in folded.items()) or "nothing to fold")
            + f" into {convs} convolutions ({before} -> {len(graph.node)} nodes)")
    return result


def fold_conv_affine(graph) -> tuple[Counter[str], int]:
    """Rewrite `graph` in place; (ops folded by type, convolutions with constant weights)."""
    from onnx import numpy_helper

    consts = _constants(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded: Counter[str] = Counter()
    removed: set[int] = set()
    convs = 0
    for conv in list(graph.node):
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in consts:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in consts:
            continue
        convs += 1
        if consts[conv.input[1]].dtype != np.float32:
            continue
        weight = consts[conv.input[1]].astype(np.float64)
        channels, rank = weight.shape[0], weight.ndim
        bias = consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 and conv.input[2] \
            else np.zeros(channels)
        tail, chain = conv.output[0], []
        while tail not in outputs and len(consumers.get(tail, [])) == 1:
            node = consumers[tail][0]
            step = _affine(node, tail, consts, channels, rank)
            if step is None:
                break
            scale, shift = step
            weight = weight * scale.reshape((channels,) + (1,) * (rank - 1))
            bias = bias * scale + shift
            chain.append(node)
            tail = node.output[0]
        if not chain:
            continue
        w_name, b_name = f"{conv.name or conv.output[0]}_folded_W", f"{conv.name or conv.output[0]}_folded_B"
        graph.initializer.extend([numpy_helper.from_array(weight.astype(np.float32), w_name),
                                  numpy_helper.from_array(bias.astype(np.float32), b_name)])
        data = conv.input[0]
        del conv.input[:]
        conv.input.extend([data, w_name, b_name])
        conv.output[0] = tail
        for node in chain:
            folded[node.op_type] += 1
            removed.add(id(node))
    if removed:
        kept = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused(graph)
    return folded, convs


def _constants(graph) -> dict[str, np.ndarray]:
    """Initializers and the outputs of Constant nodes (a Paddle export keeps its weights in Constant nodes)."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def _per_channel(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`value` as one number a channel, where it broadcasts against (N, C, ...) only along C; else None."""
    if value.ndim > rank or not np.issubdtype(value.dtype, np.floating):
        return None
    shape = (1,) * (rank - value.ndim) + tuple(value.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,)).copy()


def _affine(node, x: str, consts: dict[str, np.ndarray], channels: int,
            rank: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The (scale, shift) per channel that `node` applies to x, or None where it is not such an op."""
    if node.op_type == "BatchNormalization":
        if len(node.output) != 1 or node.input[0] != x or any(i not in consts for i in node.input[1:5]):
            return None
        gamma, beta, mean, var = (consts[i].astype(np.float64) for i in node.input[1:5])
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        return (scale, beta - mean * scale) if scale.shape == (channels,) else None
    if node.op_type not in AFFINE_OPS or len(node.input) != 2 or x not in node.input:
        return None
    other = node.input[1] if node.input[0] == x else node.input[0]
    if other == x or other not in consts:
        return None
    if node.op_type in ("Sub", "Div") and node.input[0] != x:  # c - x, c / x: not affine in the same way
        return None
    value = _per_channel(consts[other], channels, rank)
    if value is None:
        return None
    ones, zeros = np.ones(channels), np.zeros(channels)
    if node.op_type == "Add":
        return ones, value
    if node.op_type == "Sub":
        return ones, -value
    if node.op_type == "Mul":
        return value, zeros
    if np.any(value == 0):
        return None
    return 1.0 / value, zeros


def _drop_unused(graph) -> None:
    """Remove the initializers and Constant nodes nothing reads any more."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)


def _check(source: Artifact, folded: Artifact) -> float:
    """Run both graphs on the same generated inputs; refuse a folded graph that disagrees with its source."""
    try:
        a, b = open_session(source, Target("onnxruntime")), open_session(folded, Target("onnxruntime"))
    except Exception as exc:
        raise PassError(f"cannot fuse.conv_affine: onnxruntime cannot run the graph ({first_line(exc)})") from exc
    worst, scale = output_difference(a, b, source)
    if worst > FOLD_TOLERANCE * scale:
        raise PassError(f"cannot fuse.conv_affine: the folded graph differs from its source by {worst:.3g} "
                        f"(tolerance {FOLD_TOLERANCE * scale:.3g}) on generated inputs")
    return worst
