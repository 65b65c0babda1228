"""--calibration-data: static INT8 calibrates on a set apart from the scored one, and the record says which."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcbench.config import ConfigError, RunConfig
from mcbench.optimizer.intake import IntakeError
from mcbench.workload import user_workload
from tests.conftest import make_linear_onnx
from tests.test_hf import tiny_bert_folder


def _npz(path: Path, start: float, count: int, labels: bool = True) -> Path:
    x = (start + np.arange(count * 4, dtype=np.float32)).reshape(count, 4)
    arrays = {"x": x} | ({"labels": np.zeros(count, dtype=np.int64)} if labels else {})
    np.savez(path, **arrays)
    return path


def test_without_it_calibration_is_the_first_scored_samples_and_says_so(tmp_path):
    model = make_linear_onnx(tmp_path / "m.onnx")
    config = RunConfig(model=str(model), dataset=_npz(tmp_path / "val.npz", 0.0, 5))
    workload = user_workload(config, tmp_path / "source")
    assert workload.calibration_source == ("the first 5 of val.npz's scored samples (give --calibration-data for "
                                           "a separate set)")
    assert np.array_equal(workload.calibration[0]["x"], workload.eval_samples[0]["x"])


def test_an_npz_calibration_set_is_used_and_named(tmp_path):
    model = make_linear_onnx(tmp_path / "m.onnx")
    config = RunConfig(model=str(model), dataset=_npz(tmp_path / "val.npz", 0.0, 5),
                       calibration_data=_npz(tmp_path / "calib.npz", 1000.0, 3, labels=False))
    workload = user_workload(config, tmp_path / "source")
    assert workload.calibration_source == "3 samples of calib.npz"
    assert [float(f["x"].ravel()[0]) for f in workload.calibration] == [1000.0, 1004.0, 1008.0]
    assert len(workload.eval_samples) == 5 and float(workload.eval_samples[0]["x"].ravel()[0]) == 0.0


def test_a_text_calibration_file_goes_through_the_folders_tokenizer(tmp_path):
    pytest.importorskip("transformers")
    folder = tiny_bert_folder(tmp_path / "bert")
    texts, calib = tmp_path / "texts.txt", tmp_path / "calib.txt"
    texts.write_text("a dog runs\na cat sleeps\n")
    calib.write_text("the bird sings\na fish swims\nthe sun rises\n")
    config = RunConfig(model=str(folder), task="embedding", seq_len=8, text_file=texts, calibration_data=calib)
    workload = user_workload(config, tmp_path / "source")
    assert workload.calibration_source == "3 samples of calib.txt"
    assert workload.calibration[0]["input_ids"].shape == (1, 8)
    assert not np.array_equal(workload.calibration[0]["input_ids"], workload.eval_samples[0]["input_ids"])


def test_a_text_file_for_a_model_without_a_tokenizer_is_refused(tmp_path):
    model = make_linear_onnx(tmp_path / "m.onnx")
    lines = tmp_path / "calib.txt"
    lines.write_text("hello\n")
    config = RunConfig(model=str(model), dataset=_npz(tmp_path / "val.npz", 0.0, 2), calibration_data=lines)
    with pytest.raises(IntakeError, match=r"--calibration-data .*calib.txt: an .npz with one array per model input"):
        user_workload(config, tmp_path / "source")


def test_the_demo_refuses_it():
    with pytest.raises(ConfigError, match="the built-in demo calibrates on its training split"):
        RunConfig(calibration_data=Path("calib.npz"))


def test_the_flag_reaches_the_config(tmp_path):
    from mcbench.cli import build_parser, run_config

    args = build_parser().parse_args(["run", "--model", "m.onnx", "--calibration-data", "c.npz"])
    assert run_config(args).calibration_data == Path("c.npz")
