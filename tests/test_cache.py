"""The artifact cache: a second build reuses the first's artifact without running the pass again."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import torch

from mcbench.optimizer import passes
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.build import Builder
from mcbench.optimizer.cache import ArtifactCache, cache_key, data_digest
from mcbench.prepare_stage import build_data
from mcbench.run_state import RunPaths
from mcbench.workload import Workload

RECIPE = ("prune.unstructured(0.5)",)


def _workload(tmp_path) -> Workload:
    from tests.zoo import conv_net

    weights = tmp_path / "base.pt"
    torch.save(conv_net().state_dict(), weights)
    base = Artifact(weights, "torch", (InputSpec("x", (1, 3, 8, 8)),), factory="tests.zoo:conv_net")
    feeds = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    return Workload("conv", base, [feeds], None, None, [feeds], "test", feeds, True, {})


@pytest.fixture
def counted(monkeypatch):
    """prune.unstructured, counting its calls."""
    real = passes.pass_record("prune.unstructured").fn
    calls = []

    @functools.wraps(real)  # keeps the signature the recipe's arguments are bound to
    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    record = passes.pass_record("prune.unstructured")
    monkeypatch.setitem(passes._RECORDS, "prune.unstructured", dataclasses.replace(record, fn=counting))
    return calls


def _build(tmp_path, cache_dir, workload, messages):
    """The build stage alone, as a run makes it (a new Builder: nothing shared in memory)."""
    builder = Builder(workload.base, build_data(workload, "auto"), RunPaths(tmp_path / "run").artifacts, cache_dir,
                      messages.append)
    return builder.build(RECIPE)


def test_a_second_build_reuses_the_cached_artifact(tmp_path, counted):
    workload, cache_dir = _workload(tmp_path), tmp_path / "cache"
    first_messages, second_messages = [], []
    first = _build(tmp_path, cache_dir, workload, first_messages)
    second = _build(tmp_path, cache_dir, workload, second_messages)  # a new Pipeline: nothing shared in memory
    assert len(counted) == 1
    assert second.path == first.path and second.path.is_relative_to(cache_dir)
    assert "cached" not in first.passes[-1]
    assert second.passes[-1]["cached"] is True and second.passes[-1]["sparsity_reached"] == 0.5
    assert any(m.startswith("  reused prune.unstructured(0.5) from the cache") for m in second_messages)
    entries = [p for p in cache_dir.iterdir()]
    assert len(entries) == 1  # no temporary folder left behind
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["recipe"] == list(RECIPE)
    assert manifest["size_bytes"] == first.path.stat().st_size
    assert set(manifest["libraries"]) == {"torch"}  # prune.unstructured's record: torch-pruning is structured's
    assert manifest["passes"][0]["pass"] == "prune.unstructured"


def test_other_calibration_data_or_recipe_misses_the_cache(tmp_path):
    feeds = [{"x": np.zeros((1, 2), np.float32)}]
    other = [{"x": np.ones((1, 2), np.float32)}]
    key = cache_key("m", RECIPE, data_digest(feeds), "none")
    assert key == cache_key("m", RECIPE, data_digest([{"x": np.zeros((1, 2), np.float32)}]), "none")
    assert key != cache_key("m", RECIPE, data_digest(other), "none")
    assert key != cache_key("m", ("prune.unstructured(0.6)",), data_digest(feeds), "none")
    assert key != cache_key("m2", RECIPE, data_digest(feeds), "none")


def test_a_damaged_entry_is_rebuilt(tmp_path, counted):
    workload, cache_dir = _workload(tmp_path), tmp_path / "cache"
    first = _build(tmp_path, cache_dir, workload, [])
    first.path.write_bytes(b"damaged")
    rebuilt = _build(tmp_path, cache_dir, workload, [])
    assert len(counted) == 2 and "cached" not in rebuilt.passes[-1]


def test_an_ir_whose_bin_is_damaged_is_not_reused(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")

    def produce(folder):
        (folder / "model.xml").write_text("<net/>")
        (folder / "model.bin").write_bytes(b"weights")
        return Artifact(folder / "model.xml", "openvino", (InputSpec("x", (1, 4)),))

    built = cache.build("k" * 64, ("nncf.int8",), produce)
    assert cache.get("k" * 64) is not None
    manifest = json.loads((cache.entry("k" * 64) / "manifest.json").read_text())
    assert manifest["size_bytes"] == len("<net/>") + len(b"weights")
    built.path.with_suffix(".bin").write_bytes(b"damaged")
    assert cache.get("k" * 64) is None


def test_a_failed_build_leaves_no_entry(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")

    def fails(out_dir):
        (out_dir / "half.onnx").write_bytes(b"x")
        raise RuntimeError("pass failed")

    with pytest.raises(RuntimeError, match="pass failed"):
        cache.build("k" * 64, RECIPE, fails)
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.get("k" * 64) is None


def test_without_a_cache_dir_artifacts_go_to_the_run_folder(tmp_path, counted):
    workload = _workload(tmp_path)
    built = _build(tmp_path, None, workload, [])
    assert built.path.is_relative_to(tmp_path / "run" / "artifacts")
