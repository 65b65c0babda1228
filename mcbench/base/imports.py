"""Imports of what a plain install may lack, and of the code a user names: each failure one line that says why.

The runtimes, NNCF, Locust and the rest come with extras (pyproject.toml); `EXTRAS` says which extra installs each
optional top-level package, `require` imports one or says what to install, and the CLI turns any other import of a
missing one into the same line (`missing_extra`). `load_factory` resolves a "package.module:callable" reference
(a PyTorch factory, a --metric function).
"""

from __future__ import annotations

import importlib
from typing import Any

# The extra (pyproject.toml) that installs each optional top-level package mcbench imports.
EXTRAS = {"onnx": "onnxruntime", "onnxruntime": "onnxruntime", "openvino": "openvino", "nncf": "openvino",
          "torch": "torch", "onnxscript": "torch", "safetensors": "torch", "torch_pruning": "torch", "sklearn": "torch",
          "locust": "serve", "gevent": "serve", "starlette": "serve", "uvicorn": "serve", "transformers": "hf",
          "mlflow": "mlflow", "sqlalchemy": "mlflow", "alembic": "mlflow"}


class ImportFailed(RuntimeError):
    """A package or a named object could not be imported; the message says what to install or what is wrong."""


def missing_extra(exc: ImportError) -> str | None:
    """For an import of an optional package that failed, the one line that says which extra installs it."""
    package = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(package)
    if extra is None:
        return None
    return f"{package} is not installed; it comes with the extra: pip install 'mcbench[{extra}]' (or 'mcbench[all]')"


def require(module: str, extra: str | None = None) -> Any:
    """Import a heavy dependency, or fail with what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = missing_extra(exc)
        if extra or hint is None:
            hint = f"{module} is not installed ({exc}); install it with: " + (
                f"pip install 'mcbench[{extra}]'" if extra else f"pip install {module}")
        raise ImportFailed(hint) from exc


def load_factory(ref: str | None) -> Any:
    """Resolve "package.module:callable". Only called with a reference the user or mcbench named."""
    if not ref or ":" not in ref:
        raise ImportFailed(f"factory {ref!r} is not of the form 'package.module:callable'")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportFailed(f"cannot import {module_name!r} for factory {ref!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportFailed(f"{module_name!r} has no attribute {attr!r}") from exc
