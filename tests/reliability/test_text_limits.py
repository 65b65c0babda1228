"""Issue 32, H7: --text-file (and --labels, --calibration-data) are bounded in bytes, lines and line length,
checked before anything is tokenised."""

from __future__ import annotations

import pytest

from mcbench.config import RunConfig
from mcbench.optimizer.intake import IntakeError
from mcbench.workload import user_workload

pytest.importorskip("transformers")
from tests.test_hf import classifier_folder  # noqa: E402, F401 (a fixture: a tiny BERT classifier folder)


def _workload(folder, text_file, tmp_path):
    return user_workload(RunConfig(model=str(folder), seq_len=8, text_file=text_file), tmp_path / "source")


def test_h7_one_huge_line_is_refused_before_it_is_read(classifier_folder, tmp_path):  # noqa: F811
    texts = tmp_path / "one-line.txt"
    texts.write_bytes(b"word " * (17 * 2**20 // 5))  # 17 MiB, no newline
    with pytest.raises(IntakeError) as info:
        _workload(classifier_folder, texts, tmp_path)
    assert str(info.value) == (f"cannot read --text-file {texts}: {texts.stat().st_size:,} bytes is larger than a "
                               "text file may be (at most 16 MiB)")


def test_h7_too_many_lines_are_refused_before_tokenising(classifier_folder, tmp_path):  # noqa: F811
    texts = tmp_path / "many.txt"
    texts.write_text("a short text\n" * 300_000)  # 3.9 MB
    with pytest.raises(IntakeError) as info:
        _workload(classifier_folder, texts, tmp_path)
    assert str(info.value) == (f"cannot read --text-file {texts}: 300,000 lines; at most 10,000 (a line is one "
                               "sample)")


def test_h7_a_line_past_the_character_limit_is_refused_with_its_number(classifier_folder, tmp_path):  # noqa: F811
    texts = tmp_path / "long.txt"
    texts.write_text("a dog\n" + "c" * 20_000 + "\n")
    with pytest.raises(IntakeError) as info:
        _workload(classifier_folder, texts, tmp_path)
    assert str(info.value) == (f"cannot read --text-file {texts}: line 2 has 20,000 characters; at most 10,000")


def test_h7_a_fifo_is_refused_not_read(classifier_folder, tmp_path):  # noqa: F811
    import os

    texts = tmp_path / "fifo.txt"
    os.mkfifo(texts)
    with pytest.raises(IntakeError) as info:
        _workload(classifier_folder, texts, tmp_path)
    assert str(info.value) == f"cannot read --text-file {texts}: a FIFO, not a regular file; give a text file"


def test_h7_texts_at_the_limits_are_read(classifier_folder, tmp_path):  # noqa: F811
    texts = tmp_path / "ok.txt"
    texts.write_text(("x" * 9_999 + "\n") * 2 + "a dog\n" * 9_998)
    workload = _workload(classifier_folder, texts, tmp_path)
    assert len(workload.eval_samples) == 10_000
