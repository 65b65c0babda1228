"""The build stage: a variant's recipe applied to the base model, each prefix built once a run and cached across runs.

Variants share prefixes (`export.onnx` under every ONNX variant, a pruned model under its quantized forms), so a
prefix built for one is reused by the next; with a cache folder a prefix found there (same model, data and
library versions) is not built at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.optimizer.artifact import Artifact, sha256_of
from mcbench.optimizer.cache import MANIFEST, ArtifactCache, cache_key, data_digest, model_digest, validation_digest
from mcbench.optimizer.passes import PassContext, apply_passes


@dataclass(frozen=True)
class BuildData:
    """What passes may calibrate, fine-tune or validate on; one run's data, fixed for all its builds."""

    calibration: list[dict[str, Any]]
    calibration_source: str
    train: tuple[dict[str, Any], Any] | None = None
    validation: tuple[list[dict[str, Any]], Any] | None = None


class Builder:
    """Builds recipes from one base artifact; `out_dir(prefix)` says where a prefix's files go without a cache."""

    def __init__(self, base: Artifact, data: BuildData, out_dir: Callable[[tuple[str, ...]], Path],
                 cache_dir: Path | None, say: Callable[[str], None] = print) -> None:
        self.base, self.data, self.out_dir, self.say = base, data, out_dir, say
        self.cache = ArtifactCache(cache_dir) if cache_dir else None
        self._built: dict[tuple[str, ...], Artifact] = {}
        self._failed: dict[tuple[str, ...], Exception] = {}  # a prefix that failed fails its other variants at once
        self.seconds: dict[tuple[str, ...], float] = {}  # how long each prefix built in this run took (not cached)
        self._digests: tuple[str, ...] | None = None
        self._manifests: dict[Path, dict] = {}

    def build(self, recipe: tuple[str, ...]) -> Artifact:
        """Apply the recipe's passes, reusing any prefix built in this run or found in the cache."""
        artifact = self.base
        for i in range(1, len(recipe) + 1):
            prefix = recipe[:i]
            if prefix in self._failed:
                raise self._failed[prefix]
            if prefix not in self._built:
                try:
                    self._built[prefix] = self.step(artifact, prefix)
                except Exception as exc:
                    self._failed[prefix] = exc
                    raise
            artifact = self._built[prefix]
        return artifact

    def pending(self, recipe: tuple[str, ...]) -> list[str]:
        """The steps a build of `recipe` would run now: not built (or failed) in this run, not in the cache."""
        steps: list[str] = []
        fmt: str | None = self.base.format  # what the step takes, where known (export.onnx of an ONNX file is free)
        for i in range(1, len(recipe) + 1):
            prefix = recipe[:i]
            if prefix in self._failed:
                return steps  # the build stops there at once
            if prefix in self._built:
                fmt = self._built[prefix].format
            elif not (prefix[-1] == "export.onnx" and fmt == "onnx") and not self.cached(prefix):
                steps.append(prefix[-1])
                fmt = None
        return steps

    def cached(self, prefix: tuple[str, ...]) -> bool:
        """Whether the cache holds the prefix's entry (not checked against its hash: that is for the build)."""
        if self.cache is None:
            return False
        model, calibration, train, validation = self.digests()
        return (self.cache.entry(cache_key(model, prefix, calibration, train, validation)) / MANIFEST).exists()

    def reuse(self, recipe: tuple[str, ...], record: dict[str, Any]) -> bool:
        """Count an earlier run's artifact as built when its file still hashes as recorded (a resumed run builds
        on it instead of rewriting files that kept results describe); False where it cannot."""
        try:
            artifact = Artifact.from_dict(record)
            if sha256_of(artifact.path) != record["sha256"]:
                return False
        except (KeyError, TypeError, ValueError, OSError, UserError):
            return False
        self._built.setdefault(recipe, artifact)
        return True

    def manifest(self, artifact: Artifact) -> dict:
        """The artifact's manifest (hash, size, versions), read once per file: variants share artifacts."""
        if artifact.path not in self._manifests:
            self._manifests[artifact.path] = artifact.manifest()
        return dict(self._manifests[artifact.path])

    def step(self, artifact: Artifact, prefix: tuple[str, ...]) -> Artifact:
        """The last step of `prefix` applied to `artifact`: from the cache when its key is there, else run."""
        if prefix[-1] == "export.onnx" and artifact.format == "onnx":
            return artifact  # nothing to build; an ONNX file (and its external data) is not copied into the cache
        started = time.perf_counter()
        d = self.data
        ctx = PassContext(d.calibration, d.calibration_source, train=d.train, validation=d.validation)

        def produce(out_dir: Path) -> Artifact:
            return apply_passes(artifact, prefix[-1:], ctx, out_dir)

        if self.cache is None:
            built = produce(self.out_dir(prefix))
        else:
            model, calibration, train, validation = self.digests()
            key = cache_key(model, prefix, calibration, train, validation)
            cached = self.cache.get(key)
            if cached is not None:
                self.say(f"  reused {prefix[-1]} from the cache ({self.cache.entry(key)})")
                return cached
            built = self.cache.build(key, prefix, produce)
        for message in ctx.messages:
            self.say(f"  {message}")
        self.seconds[prefix] = time.perf_counter() - started
        self.say(f"  built {prefix[-1]} in {self.seconds[prefix]:.1f} s")
        return built

    def digests(self) -> tuple[str, ...]:
        """What the cache keys hash (model, calibration, train, validation), once a run."""
        if self._digests is None:
            d = self.data
            self._digests = (model_digest(self.base), data_digest(d.calibration), data_digest(d.train),
                             validation_digest(d.validation))
        return self._digests
