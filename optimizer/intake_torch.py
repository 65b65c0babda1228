"""PyTorch sources: a module factory with optional weights, a torch.export archive, a pickled full model.

Weights load with `weights_only=True` (or from safetensors); a file that needs arbitrary Python
objects to load is refused unless the user passes `--trust-model`, and the refusal lists what it
would have imported.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import ImportFailed, load_factory, require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.intake import InputOverride, IntakeError, override_spec

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")
TORCH_DTYPES = {"torch.float32": "float32", "torch.float16": "float16", "torch.float64": "float64",
                "torch.int64": "int64", "torch.int32": "int32", "torch.int8": "int8", "torch.uint8": "uint8",
                "torch.bool": "bool"}


def is_factory_ref(ref: str) -> bool:
    """`package.module:callable`, as opposed to a file path."""
    module, sep, attr = ref.partition(":")
    return bool(sep and module and attr.isidentifier() and not Path(ref).exists() and "/" not in module)


def load_state_dict(path: Path) -> dict[str, Any]:
    """A state_dict from safetensors, or from a torch file loaded weights_only (no code runs)."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise IntakeError(f"cannot load weights {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise IntakeError(f"cannot load weights {path}: not a readable safetensors file ({exc})") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IntakeError(f"cannot load weights {path}: {_unsafe_reason(path, exc)}") from exc
    if not isinstance(state, dict):
        raise IntakeError(f"cannot load weights {path}: expected a state_dict, found {type(state).__name__}")
    return state


def _unsafe_reason(path: Path, exc: Exception) -> str:
    torch = require("torch")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        return f"not a readable torch file ({first_line(exc)})"
    if unsafe:
        unsafe = sorted(unsafe, key=lambda name: (name.startswith("torch."), name))  # the user's own classes first
        return ("it is a pickle that imports " + ", ".join(unsafe[:5]) + (" ..." if len(unsafe) > 5 else "")
                + "; loading it would run code")
    return f"not a readable torch file ({first_line(exc)})"


def build_module(factory: str, kwargs: dict[str, Any] | None = None) -> Any:
    """Call the factory (with its recorded keyword arguments); it must return a torch.nn.Module."""
    torch = require("torch")
    try:
        fn = load_factory(factory)
    except ImportFailed as exc:
        raise IntakeError(f"cannot load {factory}: {exc}") from exc
    try:
        module = fn(**(kwargs or {}))
    except Exception as exc:
        raise IntakeError(f"cannot load {factory}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise IntakeError(f"cannot load {factory}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


def from_factory(
    factory: str, weights: Path | None, inputs: dict[str, InputOverride], out_dir: Path
) -> Artifact:
    """The module from `factory`, with `weights` loaded strictly, saved as a state_dict beside the run."""
    torch = require("torch")
    module = build_module(factory)
    if weights is not None:
        try:
            module.load_state_dict(load_state_dict(weights))
        except RuntimeError as exc:
            first = first_line(exc)
            raise IntakeError(f"cannot load weights {weights} into {factory}: {first}") from exc
    specs = _specs_for_forward(factory, module, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = out_dir / "weights.pt"
    torch.save(module.state_dict(), saved)
    return Artifact(saved, "torch", specs, factory=factory)


def _specs_for_forward(source: str, module: Any, inputs: dict[str, InputOverride]) -> tuple[InputSpec, ...]:
    params = [p.name for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    missing = [p for p in params if p not in inputs]
    if missing:
        raise IntakeError(
            f"cannot load {source}: give the shape of each forward() input with --input NAME=D1,D2,...[:DTYPE]; "
            f"missing: {', '.join(missing)}"
        )
    unknown = [n for n in inputs if n not in params]
    if unknown:
        raise IntakeError(f"cannot load {source}: --input {', '.join(unknown)} is not a forward() argument "
                          f"({', '.join(params)})")
    return tuple(override_spec(p, inputs[p], "float32") for p in params)


def from_pt2(path: Path, inputs: dict[str, InputOverride]) -> Artifact:
    """A torch.export archive; input specs from its graph, open dimensions from --input."""
    torch = require("torch")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: not a readable torch.export archive ({exc})") from exc
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for spec in program.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        name = spec.arg.name
        value = placeholders[name].meta.get("val")
        dtype = TORCH_DTYPES.get(str(getattr(value, "dtype", "")), "float32")
        shape = [d if isinstance(d, int) else None for d in getattr(value, "shape", [])]
        if name in inputs:
            specs.append(override_spec(name, inputs[name], dtype))
        elif any(d is None for d in shape):
            raise IntakeError(f"cannot load {path}: input {name!r} has dynamic dimensions; give them with --input")
        else:
            specs.append(InputSpec(name, tuple(shape), dtype))
    if not specs:
        raise IntakeError(f"cannot load {path}: the program has no inputs")
    return Artifact(Path(path), "pt2", tuple(specs))


def from_pickle(path: Path, inputs: dict[str, InputOverride], trust: bool, out_dir: Path) -> Artifact:
    """A pickled full module: refused unless trusted; then re-exported as a torch.export archive."""
    torch = require("torch")
    if not trust:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise IntakeError(
                f"cannot load {path}: {_unsafe_reason(path, exc)}; pass --trust-model only if you trust its source"
            ) from exc
        raise IntakeError(
            f"cannot load {path}: it holds a {type(obj).__name__} (weights, not a module); "
            "name the module with --model package.module:factory and pass this file as --weights"
        )
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise IntakeError(f"cannot load {path}: it holds a {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    specs = _specs_for_forward(str(path), module, inputs)
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in specs)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "model.pt2"
    torch.export.save(torch.export.export(module, example), str(archive))
    return Artifact(archive, "pt2", specs)


def named_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A module's outputs, flattened, with the names its torch session and its ONNX export both give them.

    One tensor is `output`; a tuple or list is `output_0`, `output_1`, ... (nested ones `output_1_0`); a dict keeps
    its keys (`logits`). A None in a tuple or dict is no output (Hugging Face leaves absent ones None); any other
    value that is not a tensor cannot be served, and is refused here rather than at the first answer.
    """
    torch = require("torch")
    if isinstance(out, torch.Tensor):
        return [(prefix or "output", out)]
    if isinstance(out, (tuple, list)):
        base = f"{prefix}_" if prefix else "output_"
        return [pair for i, item in enumerate(out) if item is not None for pair in named_outputs(item, f"{base}{i}")]
    if isinstance(out, dict):
        return [pair for key, item in out.items() if item is not None
                for pair in named_outputs(item, f"{prefix}_{key}" if prefix else str(key))]
    raise IntakeError(f"the module's output {prefix or 'output'} is a {type(out).__name__}, not a tensor: "
                      "forward() must return tensors (alone, in a tuple or list, or in a dict)")


def output_names_of(module: Any, specs: tuple[InputSpec, ...]) -> list[str]:
    """The names of a module's outputs, from one call on inputs of these specs: each one's constant, else zeros
    (an index every embedding holds; random integers may fall outside a vocabulary)."""
    torch = require("torch")
    example = [torch.from_numpy(np.full(s.shape, s.value if s.value is not None else 0, dtype=s.dtype))
               for s in specs]
    device = next((p.device for p in module.parameters()), None)
    with torch.inference_mode():
        out = module(*(e.to(device) if device is not None else e for e in example))
    return [name for name, _ in named_outputs(out)]


def load_torch_module(artifact: Artifact) -> Any:
    """The eager module of a torch or pt2 artifact, in eval mode."""
    torch = require("torch")
    if artifact.format == "pt2":
        return torch.export.load(str(artifact.path)).module()  # exported in eval mode; .eval() is refused
    module = build_module(artifact.factory, artifact.factory_args)
    state = load_state_dict(artifact.path)
    fit_to_state_dict(module, state)
    module.load_state_dict(state)
    return module.eval()


def fit_to_state_dict(module: Any, state: dict[str, Any]) -> list[str]:
    """Resize the module's Conv, Linear, norm and Embedding layers to the weights' shapes; the names resized.

    Structured pruning saves a state_dict whose layers are narrower than the factory builds them;
    the factory's module, with those layers rebuilt at the saved widths, runs it (its forward must
    not hard-code widths: the shipped models read them from the weights).
    """
    torch = require("torch")
    nn = torch.nn
    resized = []
    for name, layer in list(module.named_modules()):
        weight = state.get(f"{name}.weight" if name else "weight")
        if weight is None or getattr(layer, "weight", None) is None or tuple(weight.shape) == tuple(layer.weight.shape):
            continue
        new = _resized_layer(nn, layer, tuple(weight.shape))
        if new is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new)
        resized.append(name)
    return resized


def _resized_layer(nn: Any, layer: Any, shape: tuple[int, ...]) -> Any:
    bias = getattr(layer, "bias", None) is not None
    if isinstance(layer, nn.Linear):
        return nn.Linear(shape[1], shape[0], bias=bias)
    if isinstance(layer, nn.Conv2d):
        groups = 1 if layer.groups == 1 else shape[0]  # depthwise convolutions stay depthwise
        return nn.Conv2d(shape[1] * groups, shape[0], layer.kernel_size, layer.stride, layer.padding,
                         layer.dilation, groups, bias)
    if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
        return type(layer)(shape[0], layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if isinstance(layer, nn.LayerNorm):
        return nn.LayerNorm(shape, layer.eps, layer.elementwise_affine)
    if isinstance(layer, nn.Embedding):
        return nn.Embedding(shape[0], shape[1])
    return None
