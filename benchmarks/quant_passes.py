"""Quantization passes side by side: accuracy and in-process p50 relative to onnxruntime FP32.

Builds every quantization pass's variant of a model, then times them interleaved sample by sample
(benchmarks.harness: the gate's rounds), because this shared machine's speed drifts by 3x within an hour:
only ratios measured in the same round are compared. Each variant's operator-profile sentence is
printed with the ratio, as the report shows it.

    python -m benchmarks.quant_passes [--model digits|resnet18] [--rounds 5] [--threads 1]

digits: the demo CNN trained on scikit-learn's digits, accuracy on its held-out split.
resnet18: the ResNet-18-like reference (random weights, 224x224): agreement of top-1 with FP32 on
generated inputs, calibration on generated inputs (the speed is what this one shows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import session_call, side_by_side
from mcbench.bench.op_profile import profile_ops, with_comparison
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.targets import Target, open_session

ORT_PASSES = ["quant.int8_dynamic", "quant.int8_static", "quant.int8_static(method=entropy)",
              "quant.int8_static(method=percentile)", "quant.int8_static(per_channel=false)", "quant.fp16",
              "quant.int8_accuracy_aware(max_drop=0.01)"]
OV_PASSES = ["nncf.int8", "nncf.weight_compression", "nncf.weight_compression(mode=int4)",
             "nncf.int8_accuracy_aware(max_drop=0.01)"]


def digits_model(work: Path):
    from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, train_demo

    trained = train_demo(work, epochs=15)
    base = Artifact(trained.weights, "torch", (InputSpec(INPUT_NAME, INPUT_SHAPE),), factory=DEMO_FACTORY)
    onnx_model = apply_passes(base, ("export.onnx",), PassContext(), work / "onnx")
    d = trained.data
    calibration = [{INPUT_NAME: x[None]} for x in d.x_train[:128]]
    return onnx_model, calibration, ([{INPUT_NAME: x[None]} for x in d.x_test], d.y_test)


def resnet_model(work: Path):
    import torch

    from mcbench.models import resnet18_like

    module = resnet18_like()
    weights = work / "resnet.pt"
    torch.save(module.state_dict(), weights)
    spec = (InputSpec("image", (1, 3, 224, 224)),)
    base = Artifact(weights, "torch", spec, factory="mcbench.models:resnet18_like")
    onnx_model = apply_passes(base, ("export.onnx",), PassContext(), work / "onnx")
    return onnx_model, generated_inputs(spec, 32, seed=2), None


def outputs(artifact: Artifact, runtime: str, feeds: list[dict], threads: int) -> np.ndarray:
    session = open_session(artifact, Target(runtime, threads=threads))
    return np.concatenate([session.run(f)[0] for f in feeds])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "resnet18"), default="digits")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.5, help="a variant's time in one round, at least")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mcbench-quant-"))
    model, calibration, validation = (digits_model if args.model == "digits" else resnet_model)(work)
    ctx = PassContext(calibration, f"{len(calibration)} samples", validation=validation)
    passes = ORT_PASSES + OV_PASSES
    if validation is None:
        passes = [p for p in passes if "accuracy_aware" not in p]
    variants: dict[str, tuple[Artifact, str]] = {"ort-fp32": (model, "onnxruntime"), "ov-fp32": (model, "openvino")}
    for i, step in enumerate(passes):
        start = time.perf_counter()
        try:
            built = apply_passes(model, (step,), ctx, work / f"p{i}")
        except Exception as exc:  # a pass that fails is a row in the table, not the end of the comparison
            print(f"{step}: FAILED {type(exc).__name__}: {exc}")
            continue
        variants[step] = (built, "openvino" if built.format == "openvino" else "onnxruntime")
        print(f"built {step} in {time.perf_counter() - start:.1f} s", flush=True)
    feeds = validation[0] if validation else generated_inputs(model.inputs, 32, seed=1)
    reference = outputs(model, "onnxruntime", feeds, args.threads)
    labels = validation[1] if validation else reference.argmax(-1)
    out = {n: outputs(a, rt, feeds, args.threads) for n, (a, rt) in variants.items()}
    accuracy = {n: float(np.mean(o.argmax(-1) == labels)) for n, o in out.items()}
    error = {n: float(np.max(np.abs(o - reference)) / np.max(np.abs(reference))) for n, o in out.items()}
    sessions = {n: open_session(a, Target(rt, threads=args.threads)) for n, (a, rt) in variants.items()}
    timed = side_by_side({n: session_call(s, feeds[0]) for n, s in sessions.items()}, args.rounds,
                         seconds=args.seconds)
    metric = "accuracy" if validation else "top-1 agreement with FP32"
    print(f"\n{args.model}: {metric}, in-process median (interleaved, {args.rounds} rounds), ratio to ORT FP32 "
          f"(median of per-round ratios, 95% CI), {args.threads} thread(s)\n")
    print(f"| variant | runtime | {metric} | max abs diff / max abs FP32 output | median ms | / ORT FP32 "
          "| why (operator profile) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, (artifact, runtime) in variants.items():
        ref = "ort-fp32" if runtime == "onnxruntime" else "ov-fp32"
        profile = profile_ops(artifact, Target(runtime, threads=args.threads), feeds[0])
        if n != ref:  # the sentence's ratio: the median of per-round ratios against its runtime's FP32
            vs_ref = timed.ratio(n, ref).ratio
            profile = with_comparison(profile, list(artifact.passes), vs_ref, ref, 1.0)
        why = profile.get("sentence") or profile.get("error", "")
        ratio = timed.ratio(n, "ort-fp32").text()
        print(f"| {n} | {runtime} | {accuracy[n]:.4f} | {error[n]:.4f} | {timed.median_ms(n):.3f} | {ratio} "
              f"| {why} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
