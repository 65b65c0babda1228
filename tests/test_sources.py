"""Model intake from every source, and every bad input with its exact error."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mcbench.bench.datasets import DatasetError, load_npz
from mcbench.bench.metrics import task_metrics
from mcbench.optimizer.artifact import InputSpec
from mcbench.optimizer.intake import InputOverride, IntakeError, load_onnx
from mcbench.optimizer.intake_torch import from_factory, from_pickle, from_pt2, load_torch_module
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.targets import Target, open_session
from tests import zoo

IMAGE = {"x": InputOverride((1, 3, 16, 16))}


def _outputs(module, *arrays):
    with torch.inference_mode():
        return module(*(torch.from_numpy(a) for a in arrays)).numpy()


def test_factory_with_safetensors_weights_matches_the_module(tmp_path):
    from safetensors.torch import save_file

    reference = zoo.conv_net()
    torch.nn.init.constant_(reference.head.bias, 0.5)
    save_file(reference.state_dict(), tmp_path / "w.safetensors")
    artifact = from_factory("tests.zoo:conv_net", tmp_path / "w.safetensors", IMAGE, tmp_path / "src")
    assert artifact.format == "torch" and artifact.inputs == (InputSpec("x", (1, 3, 16, 16)),)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_outputs(load_torch_module(artifact), x), _outputs(reference, x), rtol=1e-6)


def test_factory_with_two_inputs_and_token_ids(tmp_path):
    two = from_factory("tests.zoo:two_inputs", None, {"left": InputOverride((1, 4)), "right": InputOverride((1, 6))},
                       tmp_path / "a")
    assert [s.name for s in two.inputs] == ["left", "right"]
    ids = from_factory("tests.zoo:token_model", None, {"ids": InputOverride((1, 6), "int64", 0, 50)}, tmp_path / "b")
    spec = ids.inputs[0]
    assert (spec.dtype, spec.low, spec.high) == ("int64", 0, 50)
    assert spec.sample(np.random.default_rng(0)).max() < 50


def test_export_of_token_model_is_checked_against_the_module(tmp_path):
    artifact = from_factory("tests.zoo:token_model", None, {"ids": InputOverride((1, 6), "int64", 0, 50)}, tmp_path)
    exported = apply_passes(artifact, ("export.onnx",), PassContext(), tmp_path / "onnx")
    record = exported.passes[-1]
    assert record["pass"] == "export.onnx" and record["max_abs_diff_vs_module"] < 1e-4
    feeds = {"ids": np.arange(6, dtype=np.int64)[None]}
    np.testing.assert_allclose(open_session(exported, Target("onnxruntime")).run(feeds)[0],
                               _outputs(zoo.token_model(), feeds["ids"]), atol=1e-5)


def test_factory_needs_every_forward_input(tmp_path):
    with pytest.raises(IntakeError, match=r"cannot load tests.zoo:two_inputs: give the shape of each forward\(\) "
                                          r"input with --input NAME=D1,D2,...\[:DTYPE\]; missing: right"):
        from_factory("tests.zoo:two_inputs", None, {"left": InputOverride((1, 4))}, tmp_path)


@pytest.mark.parametrize("ref, message", [
    ("tests.zoo:raises", "cannot load tests.zoo:raises: the factory raised ValueError: no checkpoint here"),
    ("tests.zoo:not_a_module", "cannot load tests.zoo:not_a_module: the factory returned int, not a torch.nn.Module"),
    ("tests.zoo:nothing", "cannot load tests.zoo:nothing: 'tests.zoo' has no attribute 'nothing'"),
])
def test_factory_errors(tmp_path, ref, message):
    with pytest.raises(IntakeError) as exc:
        from_factory(ref, None, IMAGE, tmp_path)
    assert str(exc.value) == message


def test_weights_that_do_not_fit_the_module(tmp_path):
    torch.save(zoo.two_inputs().state_dict(), tmp_path / "other.pt")
    with pytest.raises(IntakeError, match=r"cannot load weights .*other.pt into tests.zoo:conv_net: Error"):
        from_factory("tests.zoo:conv_net", tmp_path / "other.pt", IMAGE, tmp_path / "src")


class _Pwned:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_pickle_with_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weights": _Pwned()}, tmp_path / "evil.pt")
    with pytest.raises(IntakeError) as exc:
        from_pickle(tmp_path / "evil.pt", {}, trust=False, out_dir=tmp_path / "src")
    assert "it is a pickle that imports" in str(exc.value) and "loading it would run code" in str(exc.value)
    assert str(exc.value).endswith("pass --trust-model only if you trust its source")
    assert not (tmp_path / "PWNED").exists()


def test_pickled_module_needs_trust_then_becomes_an_export_archive(tmp_path):
    module = zoo.conv_net()
    torch.save(module, tmp_path / "full.pt")
    with pytest.raises(IntakeError, match="tests.zoo.ConvNet"):
        from_pickle(tmp_path / "full.pt", IMAGE, trust=False, out_dir=tmp_path / "src")
    artifact = from_pickle(tmp_path / "full.pt", IMAGE, trust=True, out_dir=tmp_path / "src")
    assert artifact.format == "pt2" and artifact.path.suffix == ".pt2"
    x = np.ones((1, 3, 16, 16), np.float32)
    np.testing.assert_allclose(_outputs(load_torch_module(artifact), x), _outputs(module, x), rtol=1e-5)


def test_state_dict_given_as_model_points_to_weights(tmp_path):
    torch.save(zoo.conv_net().state_dict(), tmp_path / "sd.pt")
    expected = r"it holds a OrderedDict \(weights, not a module\); .* pass this file as --weights"
    with pytest.raises(IntakeError, match=expected):
        from_pickle(tmp_path / "sd.pt", IMAGE, trust=False, out_dir=tmp_path)


def test_pt2_archive_reads_input_specs(tmp_path):
    program = torch.export.export(zoo.token_model(), (torch.zeros(1, 6, dtype=torch.int64),))
    torch.export.save(program, tmp_path / "tok.pt2")
    artifact = from_pt2(tmp_path / "tok.pt2", {})
    assert artifact.inputs == (InputSpec("ids", (1, 6), "int64"),)
    out = open_session(artifact, Target("torch")).run({"ids": np.zeros((1, 6), np.int64)})[0]
    assert out.shape == (1, 3)


def test_a_pt2_exported_at_batch_one_exports_to_onnx_at_that_batch_and_says_why(tmp_path):
    """A program exported at batch 1 guards its batch: the ONNX export is static rather than a crash."""
    torch.export.save(torch.export.export(zoo.conv_net(), (torch.zeros(1, 3, 8, 8),)), tmp_path / "cnn.pt2")
    artifact = from_pt2(tmp_path / "cnn.pt2", {})
    exported = apply_passes(artifact, ("export.onnx",), PassContext(), tmp_path / "onnx")
    record = exported.passes[-1]
    assert record["batch"].startswith("static (the module does not run a batch of 3: AssertionError: Guard failed")
    assert record["max_abs_diff_vs_module"] < 1e-4
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(open_session(exported, Target("onnxruntime")).run({"x": x})[0],
                               _outputs(zoo.conv_net(), x), atol=1e-5)


@pytest.mark.openvino
def test_a_pt2_program_converts_straight_to_openvino(tmp_path):
    pytest.importorskip("openvino")
    torch.export.save(torch.export.export(zoo.conv_net(), (torch.zeros(1, 3, 8, 8),)), tmp_path / "cnn.pt2")
    ir = apply_passes(from_pt2(tmp_path / "cnn.pt2", {}), ("export.openvino",), PassContext(), tmp_path / "ir")
    assert ir.format == "openvino" and ir.passes[-1]["max_abs_diff_vs_module"] < 1e-3
    x = np.ones((1, 3, 8, 8), np.float32)
    out = open_session(ir, Target("openvino", options={"precision": "f32"})).run({"x": x})[0]
    np.testing.assert_allclose(out, _outputs(zoo.conv_net(), x), atol=1e-3)


def test_onnx_with_external_data_loads_and_counts_its_size(tmp_path):
    import onnx

    from mcbench.optimizer.artifact import input_shapes
    from mcbench.optimizer.graph_stats import model_stats
    from tests.conftest import make_linear_onnx

    path = make_linear_onnx(tmp_path / "m.onnx", features=64, classes=32)
    model = onnx.load(str(path))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin", size_threshold=0)
    artifact = load_onnx(tmp_path / "ext.onnx")
    stats = model_stats(artifact.path, input_shapes(artifact.inputs))
    assert stats["parameters"] == 64 * 32 + 32
    assert stats["flops"] == 2 * 64 * 32
    assert stats["size_bytes"] >= (64 * 32 + 32) * 4


def test_onnx_model_with_no_inputs_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Constant", [], ["y"], value=helper.make_tensor(
        "c", TensorProto.FLOAT, [1], [1.0]))], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "none.onnx"))
    with pytest.raises(IntakeError, match="none.onnx: the model has no inputs"):
        load_onnx(tmp_path / "none.onnx")


def test_truncated_onnx_is_refused(tmp_path, linear_onnx):
    (tmp_path / "cut.onnx").write_bytes(linear_onnx.read_bytes()[:40])
    with pytest.raises(IntakeError, match="cut.onnx: not a readable ONNX model"):
        load_onnx(tmp_path / "cut.onnx")


SPECS = (InputSpec("x", (1, 3, 16, 16)),)


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "d.npz", **arrays)
    return tmp_path / "d.npz"


def test_dataset_splits_samples_by_batch(tmp_path):
    data = load_npz(_npz(tmp_path, x=np.zeros((7, 3, 16, 16), np.float32), labels=np.arange(7)), SPECS)
    assert len(data.samples) == 7 and data.samples[0]["x"].shape == (1, 3, 16, 16)
    assert list(data.labels) == list(range(7))


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros((2, 3, 16, 16), np.float32)}, r"no array for input\(s\) x \(arrays: y\)"),
    ({"x": np.zeros((2, 3, 8, 8), np.float32)}, r"array 'x' has shape \[2, 3, 8, 8\], expected \[N, 3, 16, 16\]"),
    ({"x": np.zeros((2, 3, 16, 16), np.int64)}, "array 'x' is int64, the input is float32"),
    ({"x": np.zeros((3, 3, 16, 16), np.float32), "labels": np.arange(2)}, "2 labels for 3 samples"),
])
def test_dataset_errors(tmp_path, arrays, message):
    with pytest.raises(DatasetError, match=message):
        load_npz(_npz(tmp_path, **arrays), SPECS)


def test_dataset_that_is_not_npz(tmp_path):
    (tmp_path / "d.npz").write_text("hello")
    with pytest.raises(DatasetError, match="d.npz: not a readable .npz file"):
        load_npz(tmp_path / "d.npz", SPECS)


def test_metrics_for_each_task():
    scores = np.array([[0.1, 0.9, 0, 0, 0, 0, 0], [0.8, 0.1, 0.05, 0, 0, 0, 0.05]])
    assert task_metrics("classification", scores, np.array([1, 6]), None) == {"top1": 0.5, "top5": 1.0}
    reg = task_metrics("regression", np.array([[1.0], [3.0]]), np.array([2.0, 3.0]), None)
    assert reg == {"mae": 0.5, "rmse": pytest.approx(np.sqrt(0.5)), "rel_error": pytest.approx(0.5 / 2.5)}
    emb = task_metrics("embedding", np.array([[1.0, 0.0], [0.0, 2.0]]), None, np.array([[2.0, 0.0], [1.0, 0.0]]))
    assert emb == {"cosine_mean": 0.5, "cosine_min": 0.0}


@pytest.mark.slow
def test_run_factory_model_with_dataset_and_user_metric(tmp_path):
    rng = np.random.default_rng(0)
    data = _npz(tmp_path, x=rng.standard_normal((20, 3, 16, 16)).astype(np.float32), labels=rng.integers(0, 10, 20))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mcbench.cli", "run", "--model", "tests.zoo:conv_net", "--input", "x=1,3,16,16",
         "--dataset", str(data), "--metric", "tests.zoo:mean_output", "--quick", "--no-load",
         "--variants", "ort-fp32", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["torch-fp32", "ort-fp32"]
    acc = results["variants"][1]["accuracy"]
    # the task's figures, the user's metric, and the output's role figures (classes: argmax agreement)
    assert acc["samples"] == 20 and set(acc["metrics"]) == {"top1", "top5", "user_metric", "argmax_agreement",
                                                            "output.argmax_agreement", "worst_role"}
    assert acc["agreement"] == 1.0 and acc["max_abs_diff"] < 1e-4
    assert results["model"]["source"] == "pytorch factory"


def test_exported_two_input_onnx_and_an_opset_11_model_load(tmp_path):
    import onnx

    from tests.conftest import make_linear_onnx

    inputs = {"left": InputOverride((1, 4)), "right": InputOverride((1, 6))}
    artifact = from_factory("tests.zoo:two_inputs", None, inputs, tmp_path)
    exported = apply_passes(artifact, ("export.onnx",), PassContext(), tmp_path / "onnx")
    assert [s.name for s in load_onnx(exported.path, inputs).inputs] == ["left", "right"]
    old = onnx.load(str(make_linear_onnx(tmp_path / "m.onnx")))
    old.opset_import[0].version = 11
    onnx.save(old, str(tmp_path / "old.onnx"))
    assert load_onnx(tmp_path / "old.onnx").manifest()["opset"] == 11
