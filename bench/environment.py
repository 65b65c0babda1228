"""The machine and software a measurement was taken on, stamped into every results file."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from mcbench.optimizer.hardware import cpu_info, usable_cores

LIBRARIES = ("mcbench", "torch", "onnx", "onnxruntime", "openvino", "locust", "numpy", "scikit-learn")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, object]:
    return {
        **cpu_info(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
    }

