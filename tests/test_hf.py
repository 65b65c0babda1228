"""Hugging Face folders in: a tiny BERT saved with save_pretrained at test time, read offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcbench.config import RunConfig
from mcbench.optimizer.intake import IntakeError
from mcbench.optimizer.intake_hf import from_hf_folder, inspect_folder
from mcbench.optimizer.intake_torch import load_torch_module
from mcbench.workload import user_workload

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "a", "bird", "sings"]
TEXTS = ["the cat sat on the mat", "a dog ran fast", "a bird sings", "the dog sat", "the cat ran", "a bird sat"]


def tiny_bert_folder(where: Path, head: str = "encoder") -> Path:
    """A 2-layer BERT (random weights, fixed seed) and a word-piece tokenizer over a dozen words."""
    vocab = where / "vocab.txt"
    where.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    config = transformers.BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64,
                                     id2label={0: "animal", 1: "thing"}, label2id={"animal": 0, "thing": 1})
    torch.manual_seed(0)
    model = (transformers.BertModel(config) if head == "encoder"
             else transformers.BertForSequenceClassification(config))
    model.save_pretrained(where)
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(where)
    return where


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    return tiny_bert_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> Path:
    return tiny_bert_folder(tmp_path_factory.mktemp("hf") / "tiny-bert-cls", head="classifier")


def test_an_encoder_gives_a_mean_pooled_unit_embedding_rebuilt_in_any_stage(encoder_folder, tmp_path):
    artifact = from_hf_folder(encoder_folder, "embedding", 16, {}, tmp_path / "source")
    assert [(s.name, s.shape, s.dtype) for s in artifact.inputs] == [
        ("input_ids", (1, 16), "int64"), ("attention_mask", (1, 16), "int64"), ("token_type_ids", (1, 16), "int64")]
    assert artifact.inputs[0].high == 16 and artifact.inputs[1].low == 1  # ids over the vocabulary, mask all ones
    ids = torch.tensor([[2, 5, 6, 3] + [0] * 12])
    mask = torch.tensor([[1, 1, 1, 1] + [0] * 12])
    types = torch.zeros_like(ids)
    rebuilt = load_torch_module(artifact)  # from the recorded config and the saved state_dict only
    got = rebuilt(ids, mask, types).detach().numpy()
    reference = transformers.BertModel.from_pretrained(encoder_folder).eval()
    hidden = reference(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state[0, :4]
    expected = hidden.mean(0) / hidden.mean(0).norm()
    assert got.shape == (1, 32)
    np.testing.assert_allclose(got[0], expected.detach().numpy(), atol=1e-5)
    assert json.dumps(artifact.factory_args)  # JSON-friendly: it goes into results.json and the cache key


def test_a_bare_encoder_without_task_embedding_is_refused_with_the_flag_to_use(encoder_folder):
    with pytest.raises(IntakeError, match=r"BertModel has no classification head; run it with --task embedding"):
        inspect_folder(encoder_folder, "classification")


def test_a_folder_that_names_custom_code_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "m.M"}}))
    with pytest.raises(IntakeError, match="never runs code from a model folder"):
        inspect_folder(tmp_path, "embedding")


def test_without_transformers_the_error_names_the_extra(encoder_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(IntakeError, match=r"needs transformers: install the Hugging Face extra: pip install "
                                          r"'mcbench\[hf\]'"):
        from_hf_folder(encoder_folder, "embedding", 16, {}, tmp_path)


def test_text_file_and_label_names_become_the_dataset(classifier_folder, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n")  # blank lines are not texts
    labels = tmp_path / "labels.txt"
    labels.write_text("animal\nanimal\nanimal\n0\nanimal\n1\n")
    config = RunConfig(model=str(classifier_folder), seq_len=8, text_file=texts, labels_file=labels)
    workload = user_workload(config, tmp_path / "source")
    assert len(workload.eval_samples) == 6 and workload.labels.tolist() == [0, 0, 0, 0, 0, 1]
    first = workload.eval_samples[0]
    assert first["input_ids"].shape == (1, 8) and first["input_ids"][0, 0] == 2  # [CLS] first
    assert first["attention_mask"][0].tolist() == [1] * 8  # 6 words + [CLS] + [SEP]
    assert workload.eval_samples[2]["attention_mask"][0].tolist() == [1] * 5 + [0] * 3  # padded
    assert workload.dataset == "texts.txt (6 texts, 8 tokens)"
    assert workload.info["architecture"] == "BertForSequenceClassification"


def test_an_unknown_label_name_says_which_line_and_the_known_names(classifier_folder, tmp_path):
    texts, labels = tmp_path / "t.txt", tmp_path / "l.txt"
    texts.write_text("a dog\na cat\n")
    labels.write_text("animal\nplant\n")
    config = RunConfig(model=str(classifier_folder), seq_len=8, text_file=texts, labels_file=labels)
    with pytest.raises(IntakeError, match=r"line 2 'plant' is neither a class id nor a label name "
                                          r"\(known: animal, thing\)"):
        user_workload(config, tmp_path / "source")


@pytest.mark.slow
def test_mcbench_run_on_a_hf_folder_with_texts(encoder_folder, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(encoder_folder), "--task",
                           "embedding", "--text-file", str(texts), "--seq-len", "16", "--quick", "--no-load",
                           "--variants", "ort-fp32,ort-int8-dynamic", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["source"] == "hugging face folder"
    assert results["config"]["text_file"] == str(texts) and results["config"]["seq_len"] == 16
    variants = {v["name"]: v for v in results["variants"]}
    assert {n: v["status"] for n, v in variants.items()} == {
        "torch-fp32": "ok", "ort-fp32": "ok", "ort-int8-dynamic": "ok"}
    assert variants["ort-fp32"]["accuracy"]["metrics"]["cosine_mean"] > 0.9999  # the export is the same function
    assert variants["ort-int8-dynamic"]["accuracy"]["samples"] == 6
