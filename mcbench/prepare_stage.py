"""The prepare stage: the run folder, and the model loaded (or the demo trained) before any candidate is built.

Everything that can refuse the run does so here, before a run folder holds anything: the output folder is checked
first (writable, free space), the user's metric is resolved, and a model that cannot be loaded removes the folders
this stage made for it. A folder that existed before (a resumed run) is never removed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mcbench.bench.metrics import AUTO
from mcbench.bench.roles import check_declared, onnx_output_names
from mcbench.config import ConfigError, RunConfig
from mcbench.optimizer.build import BuildData
from mcbench.run_state import RunPaths, Say, safe_name
from mcbench.runguard import preflight_output
from mcbench.workload import Workload, demo_workload, user_workload

MAX_RUN_NAME = 80  # characters of the model's name in a run folder's name: far below any file system's 255 bytes


def new_run_dir(base: Path, model_name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    model_name = model_name[:MAX_RUN_NAME]
    path = base / f"{stamp}-{model_name}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{stamp}-{model_name}-{suffix}"
    return path


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (what mkdir(parents=True) would make)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def load_user_metric(ref: str | None):
    """The user's metric function, resolved before any work starts."""
    if ref is None:
        return None
    from mcbench.base.imports import ImportFailed, load_factory

    try:
        fn = load_factory(ref)
    except ImportFailed as exc:
        raise ConfigError(f"--metric {ref}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"--metric {ref}: not a function")
    return fn


def prepare(config: RunConfig, say: Say, on_folder: Callable[[Path], object]) -> tuple[Workload, RunPaths]:
    """The workload and the run folder: the model loaded or the demo trained, `on_folder` told once the folder
    exists (the CLI moves its log there); bad input leaves nothing behind."""
    preflight_output(config.out_dir or Path("runs"))
    if config.model is None:
        paths = RunPaths(config.out_dir or new_run_dir(Path("runs"), "digits-cnn"))
        paths.root.mkdir(parents=True, exist_ok=True)
        on_folder(paths.root)
        say("training the digits CNN on scikit-learn's bundled digits ...")
        workload = demo_workload(paths.root, config.quick)
        say(f"  trained in {workload.info['train_seconds']:.1f} s")
        return workload, paths
    stem = config.model.rpartition(":")[2] if ":" in config.model else Path(config.model).stem
    paths = RunPaths(config.out_dir or new_run_dir(Path("runs"), safe_name(stem)))
    created = first_missing(paths.root)  # runs/ or a/ of --out a/b/c: made here, removed on bad input
    paths.root.mkdir(parents=True, exist_ok=True)
    on_folder(paths.root)
    try:
        workload = user_workload(config, paths.root / "source")
        if config.outputs and workload.base.format == "onnx":  # a misspelt --output fails now, not after the baseline
            check_declared(config.outputs, onnx_output_names(workload.base.path))
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)  # bad input leaves nothing behind
        raise
    return workload, paths


def build_data(workload: Workload, task: str) -> BuildData:
    """What the passes may use: calibration samples, training data, and held-out feeds with class labels for
    passes that measure top-1 accuracy (accuracy-aware quantization) where the task is a classification's."""
    labelled = workload.labels is not None and task in ("classification", AUTO)
    return BuildData(workload.calibration, workload.calibration_source, workload.train,
                     (workload.eval_samples, workload.labels) if labelled else None)
