"""Write a small ONNX model (an MLP, 64 inputs -> 256 -> 10, batch 1) for the deploy examples to serve.

    python deploy/tiny_model.py model.onnx

Replace it with your own model, or point `mcbench load --url` at any KServe v2 server you already run.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_mlp(path: str) -> None:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
               for name, shape in (("W1", (64, 256)), ("B1", (256,)), ("W2", (256, 10)), ("B2", (10,)))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]), helper.make_node("Add", ["h0", "B1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["y0"]),
             helper.make_node("Add", ["y0", "B2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    tiny_mlp(sys.argv[1] if len(sys.argv) > 1 else "model.onnx")
