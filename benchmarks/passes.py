"""What each pass does to each reference model on this machine: size, FLOPs, accuracy, and speed against ORT FP32.

For the digits CNN (accuracy on its held-out split), the ResNet-18-like CNN and the BERT-like encoder
(fidelity to ORT FP32 on generated inputs: top-1 agreement and max |diff|), each recipe is built,
exported to ONNX where it ends on a PyTorch model, and measured in-process beside ORT FP32 in the
same run, interleaved sample by sample with the FP32 session (benchmarks.harness: the gate's rounds); the
table gives the median of the per-round ratios of medians with its 95% interval. A ratio above 1 is slower
than FP32 and the table says so; unstructured pruning is expected to show no speedup on a dense runtime.

    python -m benchmarks.passes [--quick] [--models digits,resnet18,bert] [--recipes default all RECIPE ...]
                                [--rounds 5] [--seconds 1.0] [--threads 1] [--no-cache]

One thread by default (see benchmarks/fidelity.py: on a shared 2-vCPU machine a 2-thread inference
waits for whichever vCPU the host has descheduled). Built artifacts are cached as `mcbench run`
caches them ($MCBENCH_CACHE, else runs/.cache), so a second run only measures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Ratio, session_call, side_by_side
from mcbench.base.text import first_line
from mcbench.bench.accuracy import collect_outputs
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.cache import ArtifactCache, cache_key, data_digest, default_cache_dir, model_digest
from mcbench.optimizer.graph_stats import model_stats
from mcbench.optimizer.passes import PassContext, apply_passes, expand_recipe
from mcbench.optimizer.recipe_syntax import RecipeError, parse_recipe
from mcbench.optimizer.recipes import final_format
from mcbench.optimizer.targets import Target, open_session

BASELINE = "export.onnx"
DEFAULT_RECIPES = ("prune.unstructured(0.5)", "prune.structured(0.3)", "quant.int8_dynamic", "quant.int8_static")
# the quantization passes beyond the default ones (`--recipes all`)
QUANT_RECIPES = ("quant.int8_static(method=entropy)", "quant.int8_static(method=percentile)", "quant.fp16",
                 "nncf.int8", "nncf.weight_compression(mode=int8)", "nncf.weight_compression(mode=int4)")
MODELS = ("digits", "resnet18", "bert")


@dataclass
class Reference:
    """A model with its data: labelled evaluation samples (digits) or generated ones (fidelity only)."""

    name: str
    base: Artifact
    eval_samples: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    calibration: list[dict[str, np.ndarray]]
    calibration_source: str
    train: tuple[dict[str, np.ndarray], np.ndarray] | None = None


@dataclass
class Row:
    recipe: str
    runtime: str = ""
    params: int | None = None
    flops: int | None = None
    size: int | None = None
    quality: str = ""
    p50_ms: float | None = None
    ratio: Ratio | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def reference(name: str, work: Path, quick: bool) -> Reference:
    import torch

    n_eval, n_cal = (8, 8) if quick else (32, 32)
    if name == "digits":
        from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, train_demo

        trained = train_demo(work, epochs=10 if quick else 15)
        data = trained.data
        base = Artifact(trained.weights, "torch", (InputSpec(INPUT_NAME, INPUT_SHAPE),), factory=DEMO_FACTORY)
        return Reference("digits CNN", base, [{INPUT_NAME: x[None]} for x in data.x_test], data.y_test,
                         [{INPUT_NAME: x[None]} for x in data.x_train[:128]], "128 digits training images",
                         train=({INPUT_NAME: data.x_train}, data.y_train))
    from mcbench import models

    if name == "resnet18":
        module, factory = models.resnet18_like(), models.RESNET18_FACTORY
        specs: tuple[InputSpec, ...] = (InputSpec("input", models.RESNET18_INPUT[1]),)
        title = "ResNet-18-like (1x3x224x224)"
    else:
        module, factory, specs = models.bert_like(), models.BERT_FACTORY, models.bert_like_inputs()
        title = f"BERT-like (6 layers, hidden 384, sequence {models.BERT_SEQUENCE})"
    weights = work / f"{name}.pt"
    torch.save(module.state_dict(), weights)
    base = Artifact(weights, "torch", specs, factory=factory)
    return Reference(title, base, generated_inputs(specs, n_eval, seed=1), None,
                     generated_inputs(specs, n_cal, seed=2), f"{n_cal} generated inputs")


def build(ref: Reference, recipe: str, cache: ArtifactCache | None, work: Path) -> Artifact:
    """The recipe's artifact, exported to ONNX if it ends on PyTorch; each step from the cache where it is there."""
    steps = expand_recipe(parse_recipe(recipe), ref.base.format)
    if final_format(steps, ref.base.format) in ("torch", "pt2"):
        steps = (*steps, *parse_recipe(BASELINE))
    texts = tuple(str(s) for s in steps)
    artifact, digest = ref.base, model_digest(ref.base)
    for i in range(1, len(texts) + 1):
        ctx = PassContext(ref.calibration, ref.calibration_source, train=ref.train)
        prefix = texts[:i]

        def produce(out_dir: Path, source: Artifact = artifact, step: str = texts[i - 1],
                    context: PassContext = ctx) -> Artifact:
            return apply_passes(source, (step,), context, out_dir)

        if cache is None:
            artifact = produce(work / "+".join(prefix).replace("/", "_"))
            continue
        key = cache_key(digest, prefix, data_digest(ref.calibration), data_digest(ref.train))
        artifact = cache.get(key) or cache.build(key, prefix, produce)
    return artifact


def runtime_target(artifact: Artifact, threads: int) -> Target:
    if artifact.format == "onnx":
        return Target("onnxruntime", threads=threads)
    return Target("openvino", threads=threads, options={"hint": "LATENCY", "precision": "f32"})


def describe(row: Row, artifact: Artifact, ref: Reference, outputs: np.ndarray, fp32: np.ndarray) -> None:
    """Parameters, FLOPs, size and accuracy or fidelity of a built artifact, with what its passes recorded."""
    if artifact.format == "onnx":
        stats = model_stats(artifact.path, artifact.inputs)
        row.params, row.flops, row.size = stats["parameters"], stats["flops"], stats["size_bytes"]
    else:
        row.size = sum(p.stat().st_size for p in artifact.path.parent.glob(artifact.path.stem + ".*"))
    if ref.labels is not None:
        row.quality = f"top-1 {np.mean(outputs.argmax(1) == ref.labels):.1%}"
    else:
        agree = np.mean(outputs.reshape(len(outputs), -1).argmax(1) == fp32.reshape(len(fp32), -1).argmax(1))
        row.quality = f"agree {agree:.0%}, max diff {np.abs(outputs - fp32).max():.2g}"
    for record in artifact.passes:
        if record.get("pass") == "prune.unstructured":
            before, after = record["weights_zlib_bytes_before"], record["weights_zlib_bytes_after"]
            row.notes.append(f"sparsity {record['sparsity_reached']:.0%}, zlib weights {_bytes(before)} -> "
                             f"{_bytes(after)}; zeros are still computed by a dense runtime")
        if record.get("pass") == "prune.structured":
            cut = 1 - record["flops_after"] / record["flops_before"]
            row.notes.append(f"torch FLOPs -{cut:.0%}; {record['finetune']['status']}")


def measure_ratio(fp32: Any, variant: Any, feeds: dict[str, np.ndarray], rounds: int, seconds: float
                  ) -> tuple[Ratio, float]:
    """The variant's time over FP32's, interleaved (benchmarks.harness), and the variant's median ms a call."""
    timed = side_by_side({"fp32": session_call(fp32, feeds), "variant": session_call(variant, feeds)}, rounds,
                         seconds=seconds)
    return timed.ratio("variant", "fp32"), timed.median_ms("variant")


def bench_model(ref: Reference, recipes: list[str], args: argparse.Namespace, cache: ArtifactCache | None,
                work: Path, say) -> list[Row]:
    fp32_artifact = build(ref, BASELINE, cache, work)
    fp32_session = open_session(fp32_artifact, Target("onnxruntime", threads=args.threads))
    fp32_outputs = collect_outputs(fp32_session, ref.eval_samples)
    feeds = ref.eval_samples[0]
    rows = []
    for recipe in ["ort-fp32", *recipes]:
        row = Row(recipe)
        rows.append(row)
        say(f"  {recipe} ...")
        try:
            artifact = fp32_artifact if recipe == "ort-fp32" else build(ref, recipe, cache, work)
            target = runtime_target(artifact, args.threads)
            row.runtime = target.runtime
            session = fp32_session if recipe == "ort-fp32" else open_session(artifact, target)
            outputs = collect_outputs(session, ref.eval_samples)
            describe(row, artifact, ref, outputs, fp32_outputs)
            row.ratio, row.p50_ms = measure_ratio(fp32_session, session, feeds, args.rounds, args.seconds)
        except RecipeError as exc:
            row.error = f"not available here: {exc}"
        except Exception as exc:  # one recipe's failure is a row that says why, not a lost table
            row.error = f"failed: {type(exc).__name__}: {first_line(exc)}"
    return rows


def markdown(ref: Reference, rows: list[Row]) -> str:
    header = ("| recipe | runtime | params | FLOPs | size | accuracy / fidelity | median ms | / ORT FP32 (95% CI) "
              "| notes |")
    lines = [f"### {ref.name}", "", header,
             "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.recipe} | {r.runtime or '-'} | | | | | | | {r.error} |")
            continue
        notes = list(r.notes)
        if r.ratio is not None and r.ratio.ratio > 1 and r.recipe != "ort-fp32":
            notes.insert(0, "slower than FP32 (inside the interval)" if r.ratio.low <= 1.0 else "**slower than FP32**")
        lines.append(
            f"| {r.recipe} | {r.runtime} | {_num(r.params)} | {_num(r.flops)} | {_bytes(r.size)} | {r.quality} | "
            f"{r.p50_ms:.3f} | {r.ratio.text() if r.ratio else 'n/a'} | {'; '.join(notes)} |")
    return "\n".join(lines)


def _num(value: int | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def _bytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def selected_recipes(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += {"default": list(DEFAULT_RECIPES), "all": [*DEFAULT_RECIPES, *QUANT_RECIPES]}.get(item, [item])
    return list(dict.fromkeys(out))  # `default all` names the default recipes twice: one row each


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--recipes", nargs="+", default=["default"], metavar="RECIPE",
                        help="recipes to compare with ORT FP32; 'default' and 'all' (with the quantization "
                             "engineer's passes) stand for lists")
    parser.add_argument("--quick", action="store_true", help="fewer samples, rounds and seconds: a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds a row (default 5; 3 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds a side in a round (default 1.0; 0.3 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every artifact")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seconds = args.seconds or (0.3 if args.quick else 1.0)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    recipes = selected_recipes(args.recipes)
    cache = None if args.no_cache else ArtifactCache(default_cache_dir())
    from mcbench.optimizer.hardware import cpu_info

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            say(f"{name}: preparing ...")
            work = Path(tmp) / name
            work.mkdir()
            ref = reference(name, work, args.quick)
            tables.append(markdown(ref, bench_model(ref, recipes, args, cache, work, say)))
    print(f"## Passes on {cpu_info()['cpu_model']}, {args.threads} thread(s), {args.rounds} interleaved rounds "
          f"of >= {args.seconds:g} s a side\n")
    print("/ ORT FP32 is the median over rounds of (variant median / FP32 median), the two timed sample by sample "
          "(benchmarks.harness); the interval is the median's 95% interval. The machine is shared and noisy: "
          "differences inside the interval are not findings.\n")
    print("\n\n".join(tables))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
