"""Tiny models built at test time: nothing is downloaded, nothing large is committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def save_graph(graph, path: Path, opset: int = 17) -> Path:
    """An ONNX graph saved as a model of this opset, IR version 8 (what onnxruntime here reads); returns `path`."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_linear_onnx(path: Path, batch: int | str = 1, features: int = 4, classes: int = 3) -> Path:
    """y = x @ W + b with fixed weights; `batch` may be a symbolic name such as "batch"."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])],
        initializer=[w, b],
    )
    return save_graph(graph, path)


@pytest.fixture
def linear_onnx(tmp_path: Path) -> Path:
    return make_linear_onnx(tmp_path / "linear.onnx")


@pytest.fixture(scope="session", autouse=True)
def _session_artifact_cache(tmp_path_factory):
    """Module- and session-scoped fixtures build too: they get a cache outside the checkout."""
    import os

    before = os.environ.get("MCBENCH_CACHE")
    os.environ["MCBENCH_CACHE"] = str(tmp_path_factory.mktemp("session-cache"))
    yield
    if before is None:
        os.environ.pop("MCBENCH_CACHE", None)
    else:
        os.environ["MCBENCH_CACHE"] = before


@pytest.fixture(autouse=True)
def _private_artifact_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own artifact cache, so no test reads another's builds or writes runs/.cache here."""
    monkeypatch.setenv("MCBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
