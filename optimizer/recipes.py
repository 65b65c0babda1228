"""Variants: a recipe (a chain of passes) compiled for a target runtime."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mcbench.optimizer.profiles import Profile, RuntimeTarget
from mcbench.optimizer.recipe_syntax import NamedRecipe, RecipeError, Step, parse_named_recipe, parse_recipe
from mcbench.optimizer.targets import Target

__all__ = ["NamedRecipe", "RecipeError", "Step", "VariantSpec", "all_kind_variants", "default_variants",
           "keeps_fp32", "kind_variants", "lossless_first", "parse_named_recipe", "parse_recipe", "pass_name",
           "profile_recipe_variants", "profile_variants", "recipe_variants", "search_space"]

# Dynamic INT8 with one weight scale a channel: on a real sentence encoder (all-MiniLM-L6-v2) per-tensor scales
# kept a cosine of 0.966 to FP32, per-channel 0.993, at the same speed (benchmarks/RESULTS.md).
DYNAMIC_INT8 = "quant.int8_dynamic(per_channel=true)"
INT8_RECIPES = (("int8-dynamic", DYNAMIC_INT8), ("int8-static", "quant.int8_static"))


@dataclass(frozen=True)
class VariantSpec:
    name: str
    recipe: tuple[str, ...]
    target: Target
    baseline: bool = False
    profile: str | None = None
    skip: str | None = None  # why the profile's hardware is not this machine; compiled, not measured
    batch_size: int = 1  # inputs per inference in the in-process measurement
    why: str = ""  # why the default matrix has this variant, shown in the terminal and results.json


# Pass families that keep FP32 numerics: a runtime's conversion, a fixed input shape, graph rewrites (fusions,
# folds). Quantization (quant, nncf) and pruning change the numbers.
LOSSLESS_FAMILIES = ("export", "fuse", "shape")


def pass_name(step: str) -> str:
    """A recipe step's pass: 'quant.int8_static(per_channel=false)' -> 'quant.int8_static'."""
    return step.split("(", 1)[0].strip()


def keeps_fp32(spec: VariantSpec) -> bool:
    """Whether the variant computes what the model does in FP32: only lossless passes, an FP32 runtime setting."""
    families = {pass_name(step).split(".", 1)[0] for step in spec.recipe}
    return families <= set(LOSSLESS_FAMILIES) and spec.target.options.get("precision", "f32") == "f32"


def lossless_first(specs: list[VariantSpec]) -> list[VariantSpec]:
    """The baseline, the candidates that keep FP32 numerics, then the lossy ones; each group in its given order."""
    return sorted(specs, key=lambda s: (not s.baseline, not keeps_fp32(s)))


def with_batch_sizes(specs: list[VariantSpec], batch_sizes: tuple[int, ...]) -> list[VariantSpec]:
    """Each variant at each of a profile's batch sizes; names gain `-b{N}` for every size but 1."""
    return [replace(s, name=s.name if b == 1 else f"{s.name}-b{b}", batch_size=b) for s in specs for b in batch_sizes]


OV_CPU = Target("openvino", options={"hint": "LATENCY", "precision": "f32"})
FUSED_INT8 = ("fuse.transformer", "quant.int8_dynamic(per_channel=true)")
CONV_FOLD = ("fuse.conv_affine",)
STATIC_CNN = ("export.onnx", *CONV_FOLD, "shape.static")  # folded, the input shape fixed
# On all-MiniLM-L6-v2, plain static QDQ kept a cosine of 0.40 (the attention mask's -3.4e38 in one scale); MatMuls
# only, their outputs float and their inputs smoothed kept 0.998 at 0.43x FP32 (docs/passes.md: Static INT8 on a
# transformer).
TRANSFORMER_STATIC_INT8 = "quant.int8_static_smooth"
# TorchScript's graph of a BERT encoder ran at ~0.9x torch.export's on onnxruntime (2-D MatMuls, no shape
# arithmetic) and is the one onnxruntime's attention fusion matches.
TORCHSCRIPT_EXPORT = "export.onnx(exporter=torchscript)"


def default_variants(from_torch: bool) -> list[VariantSpec]:
    """The 0.1 matrix: the FP32 baseline, ORT FP32 / INT8 dynamic / INT8 static (QDQ), OpenVINO FP32.

    A model that comes from PyTorch is measured in eager mode as the baseline; an ONNX file's
    baseline is onnxruntime FP32.
    """
    variants = []
    if from_torch:
        variants.append(VariantSpec("torch-fp32", (), Target("torch"), baseline=True,
                                    why="the model as given, in PyTorch eager mode: the baseline"))
    variants += [
        VariantSpec("ort-fp32", ("export.onnx",), Target("onnxruntime"), baseline=not from_torch,
                    why="onnxruntime FP32" + ("" if from_torch else ": the baseline")),
        VariantSpec("ort-int8-dynamic", ("export.onnx", DYNAMIC_INT8), Target("onnxruntime"),
                    why="INT8 weights (one scale a channel), activations quantized at run time: no calibration"),
        VariantSpec("ort-int8-static", ("export.onnx", "quant.int8_static"), Target("onnxruntime"),
                    why="static INT8 (QDQ) calibrated on the run's data"),
        VariantSpec("ov-fp32", ("export.onnx",), OV_CPU, why="OpenVINO FP32 on the CPU"),
    ]
    return variants


def kind_variants(kind: str, from_torch: bool, can_train: bool) -> list[VariantSpec]:
    """The default matrix for a model kind (optimizer.model_kind): the 0.1 matrix plus what pays off on that kind.

    Transformer: onnxruntime's fusions then per-channel dynamic INT8 (one scale a channel keeps an
    encoder's embedding at cosine 0.99 where one a tensor does not), and NNCF INT8, which picks its
    transformer model type on attention graphs; its onnxruntime variants are exported with TorchScript and its
    static INT8 is quant.int8_static_smooth (transformer_route). CNN: NNCF INT8; static INT8 after folding the
    per-channel ops that follow each convolution into it (fuse.conv_affine); NNCF INT8 of that graph with its input
    shape fixed (shape.static); and structured pruning then static INT8 when the run has training data to fine-tune on.
    """
    specs = default_variants(from_torch)
    if kind == "transformer":
        specs = [transformer_route(s, from_torch) for s in specs]
        export = (TORCHSCRIPT_EXPORT,) if from_torch else ()
        specs.append(VariantSpec("ort-fused-int8-dynamic", export + FUSED_INT8, Target("onnxruntime"),
                                 why="transformer: attention, skip layer norm and GELU fused, then dynamic INT8 "
                                     "with one weight scale a channel"))
        specs.append(VariantSpec("ov-int8", ("export.onnx", "nncf.int8"), OV_CPU,
                                 why="transformer: NNCF INT8 with its transformer model type, on OpenVINO"))
    elif kind == "cnn":
        specs.append(VariantSpec("ov-int8", ("export.onnx", "nncf.int8"), OV_CPU,
                                 why="CNN: NNCF INT8 on OpenVINO"))
        specs.append(VariantSpec("ort-fused-int8-static", ("export.onnx",) + CONV_FOLD + ("quant.int8_static",),
                                 Target("onnxruntime"),
                                 why="CNN: per-channel ops after each convolution folded into it, then static INT8 "
                                     "(QDQ): no quantize/dequantize pair around an unfolded batch norm"))
        specs.append(VariantSpec("ov-static-int8", ("export.onnx",) + CONV_FOLD + ("shape.static", "nncf.int8"),
                                 OV_CPU, why="CNN: folded, input shape fixed (OpenVINO compiles for it), then NNCF "
                                             "INT8 on OpenVINO"))
        if from_torch and can_train:
            specs.append(VariantSpec("ort-pruned-int8-static", ("prune.structured", "export.onnx", "quant.int8_static"),
                                     Target("onnxruntime"),
                                     why="CNN with training data: 30% of channels pruned and fine-tuned, then "
                                         "static INT8"))
    return specs


def transformer_route(spec: VariantSpec, from_torch: bool) -> VariantSpec:
    """A 0.1-matrix variant as a transformer gets it: onnxruntime variants of a PyTorch model exported with
    TorchScript (a faster graph), static INT8 as quant.int8_static_smooth (plain static QDQ breaks attention).
    OpenVINO's stay as they are."""
    if spec.target.runtime != "onnxruntime":
        return spec
    export = TORCHSCRIPT_EXPORT if from_torch else "export.onnx"
    recipe = tuple(export if step == "export.onnx" else step for step in spec.recipe)
    if "quant.int8_static" in recipe:
        recipe = tuple(TRANSFORMER_STATIC_INT8 if step == "quant.int8_static" else step for step in recipe)
        return replace(spec, recipe=recipe, why="transformer: static INT8 of the matrix products only, their "
                       "inputs smoothed (SmoothQuant), calibrated on the run's data; masks, softmax and norms stay "
                       "float")
    why = spec.why + (" (TorchScript export: the faster graph for a transformer)" if recipe != spec.recipe else "")
    return replace(spec, recipe=recipe, why=why)


def search_space(kind: str, from_torch: bool, can_train: bool) -> list[VariantSpec]:
    """What the default run searches: the kind's matrix plus pass parameters and runtime settings around it.

    The search screens in this order: the baseline, then every candidate that keeps FP32 numerics (OpenVINO FP32,
    one thread, OpenVINO's throughput hint, a CNN's folded static-shape FP32, a transformer's fusions alone),
    then the lossy ones (lossless_first). Lossless candidates cost one screening each and keep the model's numbers, so a
    run cut by its time budget never leaves one untried after an INT8 build of 10-30 s. Within each group the
    likeliest first: what pays off on this kind (fusions + per-channel INT8 on a transformer, NNCF INT8 and pruning
    on a CNN), the rest of the 0.1 matrix, then the settings and parameters around them (a static INT8 with one
    scale a tensor; a deeper pruning and pruned FP32 for a CNN with training data, weight-only INT8 for a
    transformer).
    """
    matrix = kind_variants(kind, from_torch, can_train)
    plain_names = {p.name for p in default_variants(from_torch)}
    plain = [s for s in matrix if s.name in plain_names]  # as the kind has them (a transformer's ort-int8-static)
    extras = [s for s in matrix if s.name not in plain_names]
    export = ("export.onnx",)
    # OpenVINO's own default on a CPU with bf16 arithmetic (AMX, AVX-512 BF16): no build, one screening; lossy, so
    # screened first among the lossy candidates. A CPU without it skips the candidate with the reason.
    bf16 = VariantSpec("ov-bf16", export, Target("openvino", options={"hint": "LATENCY", "precision": "bf16"}),
                       why="OpenVINO with bf16 arithmetic (its default where the CPU has it): no build, 8 bits of "
                           "mantissa")
    # A CNN's kernels compiled for its one input shape, in bf16: after the bf16 pair, its build shared with the
    # lossless ov-static-fp32 screened before it.
    static_bf16 = ([VariantSpec("ov-static-bf16", STATIC_CNN, bf16.target,
                                why="CNN: folded, input shape fixed, bf16 arithmetic on OpenVINO")]
                   if kind == "cnn" else [])
    specs = [s for s in plain if s.baseline] + [bf16] + static_bf16 + extras + [s for s in plain if not s.baseline]
    specs = [twin for s in specs for twin in ((s, pinned(s)) if s.name in ("ov-fp32", "ov-bf16") else (s,))]
    one_thread = VariantSpec("ort-fp32-t1", export, Target("onnxruntime", threads=1),
                             why="onnxruntime FP32 on one thread: less contention where requests run side by side")
    specs.append(transformer_route(one_thread, from_torch) if kind == "transformer" else one_thread)
    if kind != "transformer":  # one scale a tensor for every op's input: an encoder's attention collapses
        specs.append(VariantSpec("ort-int8-static-pt", export + ("quant.int8_static(per_channel=false)",),
                                 Target("onnxruntime"),
                                 why="static INT8 (QDQ) with one scale a tensor: cheaper kernels, maybe less accuracy"))
    specs += [
        VariantSpec("ov-fp32-throughput", export, Target("openvino", options={"hint": "THROUGHPUT",
                                                                               "precision": "f32"}),
                    why="OpenVINO FP32 with its throughput hint (more streams)"),
    ]
    return lossless_first(specs + kind_settings(kind, from_torch, can_train))


def kind_settings(kind: str, from_torch: bool, can_train: bool) -> list[VariantSpec]:
    """The search's candidates around a kind's matrix: a CNN's static-shape FP32 and, with training data, deeper
    and FP32 pruning; a transformer's fusions alone and weight-only INT8."""
    if kind == "cnn":
        specs = [VariantSpec("ov-static-fp32", STATIC_CNN, OV_CPU,
                             why="CNN: folded, input shape fixed, FP32 on OpenVINO")]
        if from_torch and can_train:
            pruned = "prune.structured(ratio=0.5)"
            specs += [
                VariantSpec("ort-pruned50-int8-static", (pruned, "export.onnx", "quant.int8_static"),
                            Target("onnxruntime"), why="half the channels pruned and fine-tuned, then static INT8"),
                VariantSpec("ort-pruned-fp32", ("prune.structured", "export.onnx"), Target("onnxruntime"),
                            why="30% of channels pruned and fine-tuned, FP32"),
                VariantSpec("ov-pruned-int8", ("prune.structured", "export.onnx", "nncf.int8"), OV_CPU,
                            why="30% of channels pruned and fine-tuned, then NNCF INT8 on OpenVINO"),
            ]
        return specs
    if kind == "transformer":
        fused = (("export.onnx(exporter=torchscript)",) if from_torch else ()) + ("fuse.transformer",)
        return [
            VariantSpec("ort-fused-fp32", fused, Target("onnxruntime"), why="transformer fusions alone, FP32"),
            VariantSpec("ov-int8-weights", ("export.onnx", "nncf.weight_compression"), OV_CPU,
                        why="weights in INT8, activations float (NNCF weight compression) on OpenVINO"),
        ]
    return []


def pinned(spec: VariantSpec) -> VariantSpec:
    """The same OpenVINO variant with its threads pinned to cores: OpenVINO's own default, and what a plain
    `compile_model` runs. mcbench's latency-hint variants leave threads unpinned (steadier under other load,
    optimizer.targets.openvino_config); which is faster depends on the host and its load, so both are screened, and
    on a tie the confirmation round keeps the runtime's default (confirm.knobs)."""
    target = replace(spec.target, options={**spec.target.options, "pin_threads": True})
    return replace(spec, name=f"{spec.name}-pinned", target=target,
                   why=spec.why + ", threads pinned to cores (OpenVINO's default)")


def all_kind_variants(from_torch: bool) -> list[VariantSpec]:
    """Every variant some kind's default matrix may have: what --variant names are checked against before
    the model is loaded and its kind known."""
    specs = {s.name: s for kind in KIND_ORDER for s in search_space(kind, from_torch, can_train=True)}
    return list(specs.values())


KIND_ORDER = ("transformer", "cnn", "other")


def profile_variants(profile: Profile, from_torch: bool, skip: str | None = None) -> list[VariantSpec]:
    """The variant matrix a profile asks for: each runtime target x its settings x the recipes that suit it."""
    specs: list[VariantSpec] = []
    for target in profile.targets:
        specs += _runtime_variants(target, profile, from_torch)
    return [VariantSpec(s.name, s.recipe, s.target, False, profile.name, skip) for s in specs]


def _runtime_variants(rt: RuntimeTarget, profile: Profile, from_torch: bool) -> list[VariantSpec]:
    threads = rt.threads or (None,)
    suffix = (lambda t: f"-t{t}") if len(threads) > 1 else (lambda t: "")
    export = ("export.onnx",)
    if rt.runtime == "torch":
        if not from_torch:
            return []
        device = "cuda" if profile.device == "nvidia-gpu" else "cpu"
        return [VariantSpec(f"torch-fp32{'-cuda' if device == 'cuda' else ''}", (), Target("torch", device))]
    if rt.runtime == "onnxruntime":
        gpu = rt.providers[0] != "CPUExecutionProvider"
        options = {"providers": list(rt.providers)}
        if gpu:
            tag = {"TensorrtExecutionProvider": "trt", "CUDAExecutionProvider": "cuda"}.get(rt.providers[0], "ep")
            return [VariantSpec(f"ort-fp32-{tag}", export, Target("onnxruntime", "gpu", None, options))]
        out = []
        for t in threads:
            target = Target("onnxruntime", "cpu", t, options)
            out.append(VariantSpec(f"ort-fp32{suffix(t)}", export, target))
            out += [VariantSpec(f"ort-{name}{suffix(t)}", export + (p,), target) for name, p in INT8_RECIPES]
        return out
    out = []
    for hint in rt.hints:
        for t in threads:
            name = f"ov-{'fp32' if rt.precision == 'f32' else rt.precision}"
            name += "-gpu" if rt.device == "GPU" else ""
            name += "-throughput" if hint == "THROUGHPUT" else ""
            options = {"hint": hint, "precision": rt.precision, "streams": rt.streams}
            if rt.pin_threads is not None:
                options["pin_threads"] = rt.pin_threads
            out.append(VariantSpec(name + suffix(t), export, Target("openvino", rt.device.lower(), t, options)))
    return out


# --- user recipes: `[NAME=]RECIPE` expanded into variants for the runtimes that run its final format ---

_ONNX_TARGETS = (("ort", Target("onnxruntime")),
                 ("ov", Target("openvino", options={"hint": "LATENCY", "precision": "f32"})))
_TARGETS_BY_FORMAT = {
    "onnx": _ONNX_TARGETS,
    "torch": (("torch", Target("torch")),),
    "pt2": (("torch", Target("torch")),),
    "openvino": (_ONNX_TARGETS[1],),
}


def final_format(steps: tuple[Step, ...], source_format: str) -> str:
    from mcbench.optimizer.passes import pass_record

    fmt = source_format
    for step in steps:
        fmt = pass_record(step.name).makes_from(fmt)
    return fmt


def recipe_variants(recipe: NamedRecipe, source_format: str,
                    targets: tuple[tuple[str, Target], ...] | None = None) -> list[VariantSpec]:
    """One variant a runtime that can run the recipe's result; RecipeError before any work if it cannot apply.

    `targets` (tag, Target) defaults to onnxruntime CPU and OpenVINO CPU for an ONNX result, torch eager
    for a PyTorch one, OpenVINO for OpenVINO IR; given (from a profile), it is filtered the same way.
    """
    from mcbench.optimizer.passes import expand_recipe

    steps = expand_recipe(recipe.steps, source_format)
    fmt = final_format(steps, source_format)
    runnable = {t.runtime for _, t in _TARGETS_BY_FORMAT.get(fmt, ())}
    chosen = [(tag, t) for tag, t in (targets or _TARGETS_BY_FORMAT.get(fmt, ())) if t.runtime in runnable]
    if not chosen:
        raise RecipeError(f"no runtime here runs its result (a {fmt} model)")
    return [VariantSpec(f"{tag}-{recipe.name}", tuple(str(s) for s in steps), target) for tag, target in chosen]


def profile_recipe_variants(profile: Profile, source_format: str) -> list[VariantSpec]:
    """The profile's `recipes` for each of its runtimes that can run them (tagged as its default variants are)."""
    targets: list[tuple[str, Target]] = []
    from_torch = source_format != "onnx"
    for rt in profile.targets:
        for spec in _runtime_variants(rt, profile, from_torch):
            if spec.recipe in ((), ("export.onnx",)):
                targets.append((spec.name.replace("-fp32", ""), spec.target))
    specs = []
    for text in profile.recipes:
        recipe = parse_named_recipe(text)
        specs += recipe_variants(recipe, source_format, tuple(targets))
    return [VariantSpec(s.name, s.recipe, s.target, False, profile.name) for s in specs]
