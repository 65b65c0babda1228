"""Runtime targets: session options for every path (GPU ones included), skips with reasons, no silent fallback."""

import pytest

from mcbench.optimizer.intake import load_onnx
from mcbench.optimizer.profiles import find_profile
from mcbench.optimizer.recipes import profile_variants
from mcbench.optimizer.targets import Target, TargetError, open_session, openvino_config, ort_providers, skip_reason

TRT_CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_tensorrt_and_cuda_provider_options():
    target = Target("onnxruntime", "gpu", options={"providers": TRT_CUDA, "precision": "fp16", "cache_dir": "/c"})
    assert ort_providers(target) == [
        ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": "/c"}),
        ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
    ]


def test_openvino_config_for_cpu_and_gpu():
    cpu = Target("openvino", "cpu", 2, {"hint": "THROUGHPUT", "precision": "f32", "streams": 2})
    assert openvino_config(cpu) == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32",
                                    "ENABLE_CPU_PINNING": True, "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 2}
    assert openvino_config(Target("openvino", "cpu", None, {"hint": "LATENCY"}))["ENABLE_CPU_PINNING"] is False
    assert openvino_config(Target("openvino", "cpu", None, {"pin_threads": True}))["ENABLE_CPU_PINNING"] is True
    unpinned = Target("openvino", "cpu", None, {"hint": "THROUGHPUT", "pin_threads": False})
    assert openvino_config(unpinned)["ENABLE_CPU_PINNING"] is False
    gpu = Target("openvino", "gpu", 2, {"hint": "LATENCY", "precision": "f16", "pin_threads": True})
    assert openvino_config(gpu) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f16"}


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="openvino device 'npu' is not one of cpu, gpu"):
        Target("openvino", "npu")


@pytest.mark.parametrize("target, reason", [
    (Target("onnxruntime", "gpu", options={"providers": ["CUDAExecutionProvider"]}),
     "CUDAExecutionProvider not installed (onnxruntime has"),
    (Target("openvino", "gpu"), "OpenVINO device GPU not present (found CPU"),
    (Target("torch", "cuda"), "torch.cuda is not available"),
])
def test_absent_runtime_is_skipped_with_a_reason(target, reason):
    got = skip_reason(target)
    if got is None:
        pytest.skip(f"this machine has the hardware for {target}")
    assert got.startswith(reason)


def test_cpu_targets_are_not_skipped():
    assert skip_reason(Target("onnxruntime")) is None
    assert skip_reason(Target("openvino")) is None


def test_a_session_that_fell_back_to_cpu_is_an_error(linear_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is installed here: no fallback to provoke")
    target = Target("onnxruntime", "gpu", options={"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    expected = "asked for CUDAExecutionProvider, the session runs on CPUExecutionProvider"
    with pytest.raises(TargetError, match=expected), pytest.warns(UserWarning, match="not in available provider"):
        open_session(load_onnx(linear_onnx), target)


def test_profile_matrix_names_and_settings():
    xeon = {s.name: s for s in profile_variants(find_profile("xeon-avx512-vnni"), from_torch=True)}
    assert set(xeon) == {"ort-fp32-t4", "ort-int8-dynamic-t4", "ort-int8-static-t4", "ort-fp32-t24",
                         "ort-int8-dynamic-t24", "ort-int8-static-t24", "ov-fp32", "ov-fp32-throughput", "torch-fp32"}
    assert xeon["ort-int8-static-t24"].target.threads == 24
    assert xeon["ov-fp32-throughput"].target.options["hint"] == "THROUGHPUT"
    gpu = {s.name: s.target for s in profile_variants(find_profile("nvidia-gpu"), from_torch=False)}
    assert set(gpu) == {"ort-fp32-trt", "ort-fp32-cuda"}
    assert gpu["ort-fp32-trt"].options["providers"] == TRT_CUDA


@pytest.mark.slow
def test_two_profile_run_on_the_demo(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mcbench.cli", "run", "--quick", "--no-load", "--profile", "local-2core-avx2",
         "--profile", "nvidia-gpu", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    variants = {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}
    local = [v for n, v in variants.items() if n.startswith("local-2core-avx2:")]
    gpu = [v for n, v in variants.items() if n.startswith("nvidia-gpu:")]
    assert len(local) == 5 and len(gpu) == 6  # nvidia-gpu asks for batch sizes 1 and 16
    assert {v["settings"]["batch_size"] for v in gpu} == {1, 16} and "nvidia-gpu:ort-fp32-trt-b16" in variants
    if "local-2core-avx2" in proc.stderr and "lacks" in proc.stderr:
        pytest.skip("this machine is not the 2-core AVX2 profile's CPU")
    assert all(v["status"] == "ok" and v["profile"] == "local-2core-avx2" for v in local)
    for v in gpu:
        assert v["status"] == "skipped" and v["artifact"]["sha256"]  # compiled, not measured
        assert "not installed" in v["error"] or "torch.cuda is not available" in v["error"]
    html = (out / "report.html").read_text()
    assert "nvidia-gpu:ort-fp32-trt" in html and "CUDAExecutionProvider not installed" in html


def test_load_cores_come_from_the_profile_where_this_machine_has_them():
    from dataclasses import replace

    from mcbench.load_stage import load_cores
    from mcbench.optimizer.hardware import split_cores, usable_cores

    local = find_profile("local-2core-avx2")
    one = replace(local, server_cores=(usable_cores()[0],), loadgen_cores=(usable_cores()[-1],))
    assert load_cores(one) == ([usable_cores()[0]], [usable_cores()[-1]])
    assert load_cores(find_profile("xeon-avx512-vnni")) == tuple(map(list, split_cores(usable_cores())))
    assert load_cores(None) == tuple(map(list, split_cores(usable_cores())))


def test_openvino_session_keeps_the_graph_input_name_when_a_no_op_cast_merges_into_it(tmp_path):
    """OpenVINO drops a float->float Cast after an input and gives the port both tensor names; the session's input
    name is the one the run's feeds use (Yahoo's Open-NSFW graph starts so), not whichever OpenVINO lists first."""
    pytest.importorskip("openvino")
    import numpy as np
    from onnx import TensorProto, helper

    from mcbench.optimizer.artifact import Artifact, InputSpec
    from tests.conftest import save_graph

    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
                               helper.make_node("Relu", ["c"], ["y"])], "cast_first",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    artifact = Artifact(save_graph(graph, tmp_path / "m.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    session = open_session(artifact, Target("openvino", options={"hint": "LATENCY", "precision": "f32"}))
    assert session.input_names == ["x"]
    out = session.run({"x": np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)})[0]
    assert out.tolist() == [[0.0, 2.0, 0.0, 4.0]]
