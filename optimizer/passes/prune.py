"""Pruning passes on PyTorch models: unstructured (zeros in place) and structured (whole channels removed).

Unstructured pruning zeroes the smallest weights across every Conv and Linear layer at once (global
magnitude). The tensors keep their shapes, so a dense runtime does the same work: the pass records the
sparsity reached and how much smaller the weights compress, and the benchmark measures that it is
not faster.

Structured pruning removes whole output channels of convolutions, neurons of linear layers and
attention heads, with torch-pruning's dependency graph keeping batch norms, residual adds, flattens
and the next layer's inputs consistent, so the model really is smaller. The classifier's outputs and
a transformer's hidden width (tied through every residual add and LayerNorm) are kept. With training
data in the context it fine-tunes for a few epochs afterwards.

Both save a state_dict; optimizer.intake_torch.fit_to_state_dict rebuilds the factory's module at
the pruned widths when it is loaded.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact, with_passes
from mcbench.optimizer.intake_torch import load_torch_module
from mcbench.optimizer.passes import PassContext, PassError, register

FINETUNE_BATCH = 64
FINETUNE_LR = 1e-3
HEAD_DIM_ATTR = "head_dim"  # a module with query/key/value Linears and this attribute gets whole heads pruned


def _prunable(torch: Any, module: Any) -> list[tuple[str, Any]]:
    nn = torch.nn
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)]


def compressed_bytes(tensors: list[Any]) -> int:
    """Size of the float32 weights after zlib (level 6): what zeros save on disk or over the wire."""
    compressor = zlib.compressobj(6)
    size = 0
    for t in tensors:
        size += len(compressor.compress(t.detach().cpu().numpy().astype(np.float32).tobytes()))
    return size + len(compressor.flush())


def _save(torch: Any, module: Any, artifact: Artifact, out_dir: Path, stem: str, record: dict) -> Artifact:
    out = Path(out_dir) / f"{stem}.pt"
    torch.save(module.state_dict(), out)
    return with_passes(artifact, artifact.passes + (record,), out)


@register("prune.unstructured", takes=("torch",), libraries=("torch",))
def unstructured(artifact: Artifact, ctx: PassContext, out_dir: Path, sparsity: float = 0.5) -> Artifact:
    """Global magnitude pruning of Conv and Linear weights to `sparsity` (the fraction set to zero)."""
    if not 0.0 < sparsity < 1.0:
        raise PassError(f"prune.unstructured: sparsity must lie between 0 and 1, got {sparsity}")
    torch = require("torch")
    module = load_torch_module(artifact)
    start = time.perf_counter()
    layers = _prunable(torch, module)
    if not layers:
        raise PassError("prune.unstructured: the model has no Conv or Linear layers to prune")
    weights = [m.weight for _, m in layers]
    before = compressed_bytes(weights)
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(round(sparsity * magnitudes.numel()))
    threshold = torch.kthvalue(magnitudes, k).values if k > 0 else magnitudes.min() - 1
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))
    total = int(magnitudes.numel())
    zeros = sum(int((w == 0).sum()) for w in weights)
    all_params = sum(p.numel() for p in module.parameters())
    record: dict[str, Any] = {
        "pass": "prune.unstructured", "params": {"sparsity": sparsity}, "method": "global L1 magnitude",
        "layers": len(layers), "weights_considered": total,
        "sparsity_reached": round(zeros / total, 4),
        "parameters": all_params, "nonzero_parameters": all_params - zeros,
        "weights_zlib_bytes_before": before, "weights_zlib_bytes_after": compressed_bytes(weights),
        "note": "tensors keep their shapes: dense runtimes do the same work (no speedup expected)",
    }
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log(f"prune.unstructured: {record['sparsity_reached']:.1%} of {total} weights zero, "
            f"zlib size {before / 1e6:.2f} -> {record['weights_zlib_bytes_after'] / 1e6:.2f} MB")
    return _save(torch, module, artifact, out_dir, "model.pruned_unstructured", record)


@register("prune.structured", takes=("torch",), libraries=("torch", "torch-pruning"))
def structured(artifact: Artifact, ctx: PassContext, out_dir: Path, ratio: float = 0.3,
               finetune_epochs: int = 3) -> Artifact:
    """Remove `ratio` of the channels, neurons and attention heads (L2 magnitude); fine-tune if data is given."""
    if not 0.0 < ratio < 1.0:
        raise PassError(f"prune.structured: ratio must lie between 0 and 1, got {ratio}")
    if finetune_epochs < 0:
        raise PassError(f"prune.structured: finetune_epochs must be 0 or more, got {finetune_epochs}")
    torch = require("torch")
    tp = require("torch_pruning")
    module = load_torch_module(artifact)
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in artifact.inputs)
    start = time.perf_counter()
    macs_before, params_before = tp.utils.count_ops_and_params(module, example)
    widths_before = _widths(torch, module)
    try:
        pruner = tp.pruner.MetaPruner(module, example, **_pruner_options(torch, tp, module, example, ratio))
        pruner.step()
    except Exception as exc:  # torch-pruning traces the model; an untraceable one is the user's to know about
        raise PassError(f"prune.structured: torch-pruning could not prune this model: "
                        f"{type(exc).__name__}: {first_line(exc)}") from exc
    macs_after, params_after = tp.utils.count_ops_and_params(module, example)
    widths_after = _widths(torch, module)
    record: dict[str, Any] = {
        "pass": "prune.structured", "params": {"ratio": ratio, "finetune_epochs": finetune_epochs},
        "method": "torch-pruning MetaPruner, L2 magnitude, per-layer ratio",
        "parameters_before": int(params_before), "parameters_after": int(params_after),
        "flops_before": int(2 * macs_before), "flops_after": int(2 * macs_after),
        "changed_layers": {n: f"{widths_before[n]} -> {w}" for n, w in widths_after.items() if w != widths_before[n]},
    }
    record["finetune"] = _finetune(torch, module, artifact, ctx, finetune_epochs)
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log(f"prune.structured: parameters {params_before:,} -> {params_after:,}, "
            f"FLOPs {2 * macs_before / 1e6:.1f}M -> {2 * macs_after / 1e6:.1f}M; {record['finetune']['status']}")
    module.eval()
    return _save(torch, module, artifact, out_dir, "model.pruned_structured", record)


def _widths(torch: Any, module: Any) -> dict[str, int]:
    """Output width of each Conv / Linear layer: out_channels or out_features."""
    return {n: int(m.weight.shape[0]) for n, m in _prunable(torch, module)}


def _tied_to_embeddings(tp: Any, nn: Any, module: Any, example: tuple, heads: set) -> list[Any]:
    """Linear layers whose outputs are the embeddings' width through residual adds: a transformer's hidden width."""
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=example)
    tied = []
    for m in module.modules():
        if isinstance(m, nn.Linear) and m not in heads:
            group = graph.get_pruning_group(m, tp.prune_linear_out_channels, idxs=[0])
            if any(isinstance(dep.target.module, nn.Embedding) for dep, _ in group):
                tied.append(m)
    return tied


def _pruner_options(torch: Any, tp: Any, module: Any, example: tuple, ratio: float) -> dict[str, Any]:
    """Keep the classifier's outputs, embeddings and a transformer's hidden width; heads pruned whole."""
    nn = torch.nn
    linears = [m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv1d)]
    ignored: list[Any] = [linears[-1]] if linears else []
    num_heads = {}
    qkv = ("query", "key", "value")
    for m in module.modules():
        if hasattr(m, HEAD_DIM_ATTR) and all(isinstance(getattr(m, a, None), nn.Linear) for a in qkv):
            for a in qkv:
                num_heads[getattr(m, a)] = getattr(m, a).out_features // getattr(m, HEAD_DIM_ATTR)
    embeddings = [m for m in module.modules() if isinstance(m, nn.Embedding)]
    if embeddings:
        ignored += embeddings + _tied_to_embeddings(tp, nn, module, example, set(num_heads))
    options: dict[str, Any] = {"importance": tp.importance.MagnitudeImportance(p=2), "pruning_ratio": ratio,
                               "ignored_layers": ignored, "global_pruning": False}
    if num_heads:
        # torch-pruning removes ceil(heads x ratio) heads a layer; ask for the nearest whole head, one kept at least
        heads = min(num_heads.values())
        head_ratio = max(min(round(heads * ratio), heads - 1) / heads - 1e-6, 0.0)
        options.update(num_heads=num_heads, prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=head_ratio)
    return options


def _finetune(torch: Any, module: Any, artifact: Artifact, ctx: PassContext, epochs: int) -> dict[str, Any]:
    """A short cross-entropy fine-tune on the context's training data; says why when there is none."""
    if epochs == 0:
        return {"status": "no fine-tune: finetune_epochs=0"}
    if ctx.train is None:
        return {"status": "no fine-tune: no training data"}
    features, labels = ctx.train
    missing = [s.name for s in artifact.inputs if s.name not in features]
    if missing:
        return {"status": f"no fine-tune: training data lacks input(s) {', '.join(missing)}"}
    xs = [torch.from_numpy(np.asarray(features[s.name])) for s in artifact.inputs]
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    optimizer = torch.optim.Adam(module.parameters(), lr=FINETUNE_LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    module.train()
    losses = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in torch.randperm(len(y), generator=generator).split(FINETUNE_BATCH):
            optimizer.zero_grad()
            loss = loss_fn(module(*(x[idx] for x in xs)), y[idx])
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        losses.append(round(total / count, 4))
    module.eval()
    return {"status": f"fine-tuned {epochs} epoch(s) on {len(y)} samples", "epochs": epochs, "samples": len(y),
            "epoch_losses": losses, "seconds": round(time.perf_counter() - started, 3)}
