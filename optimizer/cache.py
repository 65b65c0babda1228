"""Variant artifacts cached across runs, keyed by what determines them.

The key of a recipe prefix is the sha256 of: the input model's content (file hash, and for a PyTorch
model the factory that builds it), the canonical text of each step, the calibration and training
data the passes may read, and the versions of the libraries the steps use (each pass's record names
them: optimizer.passes). Same key, same artifact: a second run reuses it instead of recomputing.
Each entry is a folder with the pass's files and a manifest.json (recipe, sha256, size, library
versions, pass records). An entry is built in a temporary folder and renamed into place, so an
interrupted build never leaves a half-written entry.

The source of the pass modules is part of the key too, so an edited pass is rebuilt.

Default location: $MCBENCH_CACHE, else runs/.cache (see `mcbench run --cache-dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.errors import UserError
from mcbench.optimizer.artifact import Artifact, sha256_of, with_passes
from mcbench.optimizer.hardware import int8_numerics

CACHE_ENV = "MCBENCH_CACHE"
DEFAULT_CACHE = Path("runs/.cache")
MANIFEST = "manifest.json"
CACHE_FORMAT = 1  # bump when the entry layout or the key's ingredients change



def default_cache_dir() -> Path:
    """$MCBENCH_CACHE, else runs/.cache; absolute, so results.json paths stay valid from any folder."""
    return (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else DEFAULT_CACHE).resolve()


def library_versions(steps: tuple[str, ...]) -> dict[str, str]:
    """The versions of the distributions the steps' passes use (each pass's record names them)."""
    names = sorted({lib for record in _records(steps) for lib in record.libraries})
    return {name: _version(name) for name in names}


def _records(steps: tuple[str, ...]) -> list:
    """The pass records of step texts (`quant.int8_static(method=entropy)`); an unknown name has none."""
    from mcbench.optimizer.passes import records

    known = records()
    return [known[name] for name in (s.split("(")[0].strip() for s in steps) if name in known]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def pass_code_digest(steps: tuple[str, ...]) -> str:
    """The sha256 of the source of the modules defining the steps' passes: an edited pass misses the cache."""
    import importlib.util

    h = hashlib.sha256()
    for module in sorted({record.module for record in _records(steps)}):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def model_digest(artifact: Artifact) -> str:
    """The input model's content: the file's sha256, and the factory (with its arguments) for a state_dict."""
    factory = f"{artifact.factory}\0{json.dumps(artifact.factory_args, sort_keys=True)}"
    return hashlib.sha256(f"{artifact.format}\0{factory}\0{sha256_of(artifact.path)}".encode()).hexdigest()


def data_digest(samples: list[dict[str, np.ndarray]] | tuple | None) -> str:
    """A digest of calibration samples or (features, labels) training data; 'none' when there is none."""
    if samples is None:
        return "none"
    h = hashlib.sha256()

    def add(array: Any) -> None:
        a = np.ascontiguousarray(array)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())

    if isinstance(samples, tuple):  # (features by name, labels)
        features, labels = samples
        for name in sorted(features):
            h.update(name.encode())
            add(features[name])
        add(labels)
    else:
        for feeds in samples:
            for name in sorted(feeds):
                h.update(name.encode())
                add(feeds[name])
    return h.hexdigest()


def validation_digest(validation: tuple[list[dict[str, np.ndarray]], np.ndarray] | None) -> str:
    """A digest of (held-out feeds, labels), what accuracy-aware passes measure against; 'none' without."""
    if validation is None:
        return "none"
    feeds, labels = validation
    return hashlib.sha256((data_digest(feeds) + data_digest([{"labels": np.asarray(labels)}])).encode()).hexdigest()


def cache_key(model: str, steps: tuple[str, ...], calibration: str, train: str, validation: str = "none") -> str:
    ingredients = {"format": CACHE_FORMAT, "model": model, "recipe": list(steps), "calibration": calibration,
                   "train": train, "validation": validation,
                   "libraries": library_versions(steps), "code": pass_code_digest(steps),
                   # the INT8 passes' weight range follows the host's ISA: a cache shared by two CPUs keeps both
                   "int8_numerics": int8_numerics().reduce_range}
    return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode()).hexdigest()


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / key[:24]

    def get(self, key: str) -> Artifact | None:
        """The cached artifact for a key, its last pass record marked cached; None if absent or damaged."""
        folder = self.entry(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            artifact = Artifact.from_dict({**manifest["artifact"], "path": str(folder / manifest["artifact"]["path"])})
            if manifest.get("key") != key or sha256_of(*artifact.files()) != manifest["sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError, UserError):  # a damaged entry is a miss
            return None
        passes = list(artifact.passes)
        if passes:
            passes[-1] = {**passes[-1], "cached": True, "cache_entry": str(folder)}
        return with_passes(artifact, tuple(passes))

    def build(self, key: str, steps: tuple[str, ...], produce: Callable[[Path], Artifact]) -> Artifact:
        """Run `produce(folder)` in a temporary folder, write the manifest, rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        try:
            artifact = _fresh(produce(tmp), tmp)
            relative = artifact.path.resolve().relative_to(tmp.resolve())
            manifest = {
                "key": key,
                "recipe": list(steps),
                "artifact": {**artifact.to_dict(), "path": str(relative)},
                "sha256": sha256_of(*artifact.files()),  # an IR's .bin with its .xml
                "size_bytes": sum(f.stat().st_size for f in artifact.files()),
                "libraries": library_versions(steps),
                "passes": list(artifact.passes),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            final = self.entry(key)
            if final.exists() and self.get(key) is None:  # a damaged entry (file changed or half-deleted): replace
                trash = Path(tempfile.mkdtemp(prefix=".damaged-", dir=self.root))
                os.rename(final, trash / "entry")
                shutil.rmtree(trash, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:  # another run finished the same entry first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                cached = self.get(key)
                if cached is None:
                    raise
                return cached
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return with_passes(artifact, artifact.passes, final / relative)


def _fresh(artifact: Artifact, folder: Path) -> Artifact:
    """The artifact with its file inside the entry folder and no earlier 'cached' marks in its records."""
    path = artifact.path
    if not path.resolve().is_relative_to(folder.resolve()):  # a pass that returned its input unchanged
        path = folder / path.name
        for f in artifact.files():
            shutil.copy2(f, folder / f.name)
    passes = tuple({k: v for k, v in r.items() if k not in ("cached", "cache_entry")} for r in artifact.passes)
    return with_passes(artifact, passes, path)
