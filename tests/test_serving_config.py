"""A serving configuration on the real server: several model instances, dynamic batching, and what it says of them."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mcbench.bench.server import serve_in_subprocess
from mcbench.bench.serving import ServingConfig
from mcbench.optimizer.intake import InputOverride, load_onnx
from mcbench.optimizer.targets import Target
from tests.conftest import make_linear_onnx


def linear_spec(tmp_path: Path, config: ServingConfig) -> Path:
    artifact = load_onnx(make_linear_onnx(tmp_path / "m.onnx", batch="batch"), {"x": InputOverride((1, 4))})
    spec = {"name": "lin", "artifact": artifact.to_dict(),
            "target": config.target_dict(Target("onnxruntime").to_dict())}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def post(url: str, row: list[float]) -> list[float]:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as response:
        return json.loads(response.read())["outputs"][0]["data"]


def test_config_flags_label_and_target_settings() -> None:
    config = ServingConfig(instances=2, threads=1, max_batch=8, max_wait_ms=2.0, hint="THROUGHPUT", streams=2)
    assert config.server_flags() == ["--instances", "2", "--max-batch", "8", "--max-wait-ms", "2"]
    assert config.label == "2x1t b8/2ms ov:THROUGHPUT/2"
    target = config.target_dict({"runtime": "openvino", "device": "cpu", "threads": 4, "options": {"x": 1}})
    assert target == {"runtime": "openvino", "device": "cpu", "threads": 1,
                      "options": {"x": 1, "hint": "THROUGHPUT", "streams": 2}}
    assert ServingConfig.from_dict(config.to_dict()) == config
    assert ServingConfig().server_flags() == ["--instances", "1"] and ServingConfig().label == "1xdt nobatch"


def test_two_instances_with_batching_answer_every_request_right_and_say_so(tmp_path: Path) -> None:
    config = ServingConfig(instances=2, threads=1, max_batch=4, max_wait_ms=5.0)
    rows = np.random.default_rng(1).standard_normal((24, 4)).astype(np.float32)
    with serve_in_subprocess(linear_spec(tmp_path, config), cores=None, extra=config.server_flags()) as server:
        assert (server.ready["instances"], server.ready["threads"], server.ready["max_batch"],
                server.ready["max_wait_ms"]) == ("2", "1", "4", "5")
        url = f"{server.url}/v2/models/lin/infer"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: post(url, r.tolist()), rows))
        with urllib.request.urlopen(f"{server.url}/v2/stats", timeout=10) as response:
            stats = json.loads(response.read())
    from mcbench.optimizer.targets import open_session

    artifact = load_onnx(tmp_path / "m.onnx", {"x": InputOverride((1, 4))})
    offline = open_session(artifact, Target("onnxruntime", threads=1)).run({"x": rows})[0]
    np.testing.assert_allclose(np.array(answers), offline, rtol=1e-5, atol=1e-6)
    assert (stats["instances"], stats["max_batch"], stats["max_wait_ms"]) == (2, 4, 5.0)
    assert stats["batched_requests"] == 24 and 6 <= stats["batches"] <= 24
