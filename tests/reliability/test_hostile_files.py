"""Issue 32, Medium rows on files mcbench parses: results files, hardware profiles, Hugging Face folders, labels.

Each is refused with exit 2 and one line naming the file and what is wrong; never `internal error:`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcbench.cli import main
from mcbench.reports.schema import load_results, save_results
from tests.reliability.test_bad_inputs import _one_line
from tests.test_report import sample_run


@pytest.fixture
def results_file(tmp_path) -> Path:
    path = tmp_path / "results.json"
    save_results(sample_run(), path)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
    ('{"a": ' * 70 + "1" + "}" * 70, "nested more than 64 levels deep"),
    ('{"schema_version": 1' + "0" * 5000 + "}", "holds an integer of 5001 digits (at most 20)"),
    ('{"schema_version": 1e999}', "holds the number 1e999, past the range of a float"),
    ('{"schema_version": NaN}', "holds NaN, which is not a number JSON allows"),
])
def test_m4_results_files_that_break_the_parser_are_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "results.json"
    path.write_text(text, encoding="utf-8")
    for command in (["report", str(path)], ["gate", str(path), "--baseline", str(path)], ["export", str(path)]):
        assert main(command) == 2, command
        assert _one_line(capsys) == f"mcbench: {path}: {message}"


def test_m4_a_utf16_results_file_says_its_encoding(tmp_path, capsys, results_file):
    path = tmp_path / "utf16.json"
    path.write_text(results_file.read_text(encoding="utf-8"), encoding="utf-16")
    assert main(["report", str(path)]) == 2
    assert _one_line(capsys) == f"mcbench: {path}: is UTF-16 text; save it as UTF-8"
    path.write_bytes(b'{"x": "\xff"}')
    assert main(["report", str(path)]) == 2
    assert _one_line(capsys) == f"mcbench: {path}: not UTF-8 text (byte 7)"


def test_m5_a_profile_nested_30k_deep_names_the_file(tmp_path, capsys, monkeypatch):
    profile = tmp_path / "deep.toml"
    profile.write_text("x = " + "{a = " * 30_000 + "1" + "}" * 30_000)
    assert main(["profiles", "show", str(profile)]) == 2
    assert _one_line(capsys) == f"mcbench: {profile}: arrays or tables nested more than 64 levels deep"
    profile.write_text("x = 1" + "0" * 5000)
    assert main(["profiles", "show", str(profile)]) == 2
    assert _one_line(capsys) == f"mcbench: {profile}: holds an integer too long to read"


def _with_samples(path: Path, values: list) -> Path:
    data = json.loads(path.read_text())
    for v in data["variants"]:
        if v.get("latency"):
            v["latency"]["samples_us"] = values
    out = path.with_name(f"bad-{len(list(path.parent.iterdir()))}.json")
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("value", [None, -5.0])
def test_m13_the_schema_refuses_latencies_that_are_not_finite_and_positive(tmp_path, capsys, results_file, value):
    bad = _with_samples(results_file, [100.0] * 20 + [value])
    assert main(["gate", str(bad), "--baseline", str(results_file)]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: {bad}: ") and "samples_us" in err, err


def test_m13_the_gate_never_passes_on_nan_samples(results_file):
    """Where the schema check cannot run (jsonschema missing), the gate still says error, never pass."""
    from mcbench.reports.gate import Defaults, comparison_check

    check = comparison_check("v", [100.0] * 30, [float("nan")] * 30, Defaults(), "stored samples")
    assert check.status == "error" and "not finite positive latencies" in check.message
    check = comparison_check("v", [100.0] * 30, [-100.0] * 30, Defaults(), "stored samples")
    assert check.status == "error"
    run = load_results(results_file)
    from mcbench.reports.compare import latency_change

    a, b = run.variants[1], run.variants[2]
    b.latency.samples_us = [float("nan")] * len(b.latency.samples_us)
    change = latency_change(a, b)
    assert change is None or "nan" not in f"{change}".lower()


# --- Hugging Face folders (M2, M3) and labels ----------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    from tests.test_hf import tiny_bert_folder

    return tiny_bert_folder(tmp_path_factory.mktemp("hf") / "cls", head="classifier")


def _copy(folder: Path, where: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, where / folder.name))


def _texts(tmp_path: Path, labels: str, lines: str = "a dog\na cat\n") -> list[str]:
    texts, label_file = tmp_path / "t.txt", tmp_path / "l.txt"
    texts.write_text(lines)
    label_file.write_text(labels)
    return ["--text-file", str(texts), "--labels", str(label_file)]


def _run(folder: Path, tmp_path: Path, *extra: str) -> int:
    return main(["run", "--model", str(folder), "--seq-len", "8", "--variants", "ort-fp32", "--no-load",
                 "--out", str(tmp_path / "run"), *extra])


def test_m2_a_deeply_nested_config_json_is_one_line(classifier, tmp_path, capsys):
    folder = _copy(classifier, tmp_path)
    config = folder / "config.json"
    config.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    assert _run(folder, tmp_path) == 2
    assert _one_line(capsys) == f"mcbench: cannot load {folder}: {config}: nested more than 64 levels deep"
    assert not (tmp_path / "run").exists()


def test_m2_a_nan_in_config_json_is_refused_before_the_run(classifier, tmp_path, capsys):
    folder = _copy(classifier, tmp_path)
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": NaN'))
    assert _run(folder, tmp_path) == 2
    assert _one_line(capsys) == (f"mcbench: cannot load {folder}: {config}: holds NaN, which is not a number JSON "
                                 "allows")


@pytest.mark.parametrize(("labels", "message"), [
    ("\u00b2\n0\n", "line 1 '\u00b2' is neither a class id nor a label name (known: animal, thing)"),
    ("1" + "0" * 25 + "\n0\n", "line 1: class id 10000000000000000000000000 is out of range (the model has 2 "
                               "classes: 0 to 1)"),
    ("2\n0\n", "line 1: class id 2 is out of range (the model has 2 classes: 0 to 1)"),
    ("-1\n0\n", "line 1: class id -1 is out of range (the model has 2 classes: 0 to 1)"),
])
def test_m2_labels_that_are_no_class_id_are_one_line(classifier, tmp_path, capsys, labels, message):
    extra = _texts(tmp_path, labels)
    assert _run(classifier, tmp_path, *extra) == 2
    assert _one_line(capsys) == f"mcbench: cannot read labels {extra[3]}: {message}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_also_nan_regression_labels_are_refused(classifier, tmp_path, capsys, value):
    extra = _texts(tmp_path, f"0.5\n{value}\n")
    assert _run(classifier, tmp_path, "--task", "regression", *extra) == 2
    assert _one_line(capsys) == f"mcbench: cannot read labels {extra[3]}: line 2: {value!r} is not a finite number"


def test_also_out_of_range_labels_in_a_dataset_are_refused(tmp_path, capsys):
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(tmp_path / "m.onnx")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 4), np.float32), labels=np.array([0, 1, 7, 1]))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--variants", "ort-fp32,ort-int8-dynamic",
                 "--no-load", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # once the outputs say how many classes there are
    assert err == f"mcbench: {data}: label 7 is not a class id of the model's 3 classes (0 to 2)"
    np.savez(data, x=np.zeros((4, 4), np.float32), labels=np.array([0, 1, np.nan, 1]))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "r2")]) == 2
    assert _one_line(capsys) == f"mcbench: cannot load dataset {data}: 'labels' holds NaN or infinite values"


def test_m2_a_vocab_without_unk_is_one_line(classifier, tmp_path, capsys):
    folder = _copy(classifier, tmp_path)
    for name in ("tokenizer.json",):
        (folder / name).unlink(missing_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(w for w in vocab.read_text().splitlines() if w != "[UNK]") + "\n")
    extra = _texts(tmp_path, "0\n1\n", "a zebra\na cat\n")  # a word not in the vocabulary needs [UNK]
    assert _run(folder, tmp_path, *extra) == 2
    assert _one_line(capsys) == (f"mcbench: the tokenizer of {folder} failed on the texts: WordPiece error: Missing "
                                 "[UNK] token from the vocabulary")


def test_m3_seq_len_past_the_models_positions_is_refused_at_intake(classifier, tmp_path, capsys):
    assert main(["run", "--model", str(classifier), "--seq-len", "128", "--variants", "ort-fp32", "--no-load",
                 "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == (f"mcbench: cannot load {classifier}: --seq-len 128 is past the model's 64 "
                                 "positions (max_position_embeddings); give --seq-len 64 or less")
    assert not (tmp_path / "run").exists()


def embedding_model():
    """A real PyTorch module that raises IndexError on ids past its 10 rows (eager), though it exports."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(10, 4), nn.Flatten()).eval()


def test_m3_an_exception_a_pass_raises_fails_that_candidate_not_the_run(tmp_path, capsys):
    """ids up to 20 on a 10-row embedding: the ONNX export's check runs the module and gets an IndexError."""
    out = tmp_path / "run"
    code = main(["run", "--model", f"{__name__}:embedding_model", "--input", "input=1,8:int64:0-20",
                 "--variants", "ort-fp32", "--no-load", "--quick", "--no-cache", "--out", str(out)])
    assert code == 1, capsys.readouterr().err[-500:]  # a variant failed; the run finished
    variants = {v.name: v for v in load_results(out / "results.json").variants}
    assert variants["ort-fp32"].status == "failed"
    assert variants["ort-fp32"].error == "IndexError: index out of range in self"
