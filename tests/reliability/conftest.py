"""Shared fixtures: one tiny ONNX model and a run file that measures it in a few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_linear_onnx

FAST_RUN = """
model = "{model}"
quick = true
variants = [{variants}]
[timing]
warmup_runs = 2
min_runs = 5
min_seconds = 0.05
max_seconds = 0.3
[load]
enabled = false
"""


def write_run_file(folder: Path, model: Path, variants: list[str], name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(FAST_RUN.format(model=model, variants=", ".join(f'"{v}"' for v in variants)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    make_linear_onnx(folder / "linear.onnx")
    return folder
