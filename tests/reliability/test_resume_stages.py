"""Issue 32, H5: a run interrupted in its load stage is finished by --resume, load test included."""

from __future__ import annotations

import json
import os
import signal

from mcbench import load_stage
from mcbench.cli import main

RUN = """
model = "{model}"
quick = true
variants = ["ort-fp32"]
[timing]
warmup_runs = 2
min_runs = 5
min_seconds = 0.05
max_seconds = 0.3
[load]
users = [1]
step_seconds = 1.0
warmup_s = 0.2
max_step_seconds = 1.0
rate_fractions = [0.5]
"""


def test_h5_resume_redoes_the_load_stage_a_sigterm_cut_short(tmp_path, model_dir, monkeypatch, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN.format(model=model_dir / "linear.onnx"))
    out = tmp_path / "run"

    def terminated(*args, **kwargs):  # SIGTERM arrives as the load stage starts its test
        os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patch:
        patch.setattr(load_stage, "load_test", terminated)
        assert main(["run", "--config", str(cfg), "--out", str(out)]) == 143
    cut = json.loads((out / "results.json").read_text())["variants"][0]
    assert (cut["status"], cut["load"], cut["search"]) == ("ok", None, {"stage": "time", "stopped": None})
    capsys.readouterr()

    assert main(["run", "--resume", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    done = results["variants"][0]
    assert done["search"] == {"stage": "load", "stopped": None}
    assert done["load"] is not None and done["load"]["steps"][0]["users"] == 1
    assert "resumed: 0 finished variant(s) kept from the earlier run, 1 run now" in results["warnings"]
    assert "resumed: measured again from the start, as a stage of theirs was cut short: ort-fp32 (load)" in \
        results["warnings"]
