"""One place that builds an inference session for an artifact on a runtime.

Every measurement (accuracy, in-process latency, the model server) goes through `open_session`,
so the settings that were measured are the settings that were asked for. Runtimes are imported
lazily: a missing one is an install hint, not an ImportError at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mcbench.base.imports import require
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import cpu_info, usable_cores

RUNTIMES = ("torch", "onnxruntime", "openvino")
DEVICES = {"onnxruntime": ("cpu", "gpu"), "openvino": ("cpu", "gpu"), "torch": ("cpu", "cuda")}


class TargetError(RuntimeError):
    """A session could not be built for this artifact on this target."""


@dataclass(frozen=True)
class Target:
    """A runtime on a device with its settings. `threads` None means the runtime's default."""

    runtime: str
    device: str = "cpu"
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.device not in DEVICES[self.runtime]:
            raise ValueError(f"{self.runtime} device {self.device!r} is not one of {', '.join(DEVICES[self.runtime])}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def with_threads(self, threads: int) -> Target:
        return Target(self.runtime, self.device, threads, dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": self.device, "threads": self.threads, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(d["runtime"], d.get("device", "cpu"), d.get("threads"), dict(d.get("options", {})))


class Session(Protocol):
    """A loaded model: named numpy inputs in, a list of numpy outputs out."""

    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def ort_providers(target: Target) -> list[tuple[str, dict[str, Any]]]:
    """The execution providers, in priority order, with the options mcbench sets for each."""
    names = list(target.options.get("providers", ["CPUExecutionProvider"]))
    fp16 = target.options.get("precision") == "fp16"
    options = {
        "TensorrtExecutionProvider": {"device_id": 0, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
                                      "trt_engine_cache_path": str(target.options.get("cache_dir", ".trt_cache"))},
        "CUDAExecutionProvider": {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"},
        "OpenVINOExecutionProvider": {"device_type": "CPU"},
    }
    return [(name, options.get(name, {})) for name in names]


def openvino_config(target: Target) -> dict[str, Any]:
    """OpenVINO's compile settings. On a CPU, under the latency hint its threads are not pinned to cores unless
    the profile says `pin_threads = true`: one call spreads over every core, and a pinned thread cannot leave a
    core another process is busy on, so under load the call waits for it; that made the latency-hint variant eight
    times noisier between rounds (docs/profiles.md). Under the throughput hint each stream is one thread, and
    pinned (OpenVINO's default, kept) two sessions of one model timed alike, where unpinned they did not."""
    hint = target.options.get("hint", "LATENCY")
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": hint,
        "INFERENCE_PRECISION_HINT": target.options.get("precision", "f32"),
    }
    if target.device == "cpu":  # CPU settings, never given to a GPU compile
        config["ENABLE_CPU_PINNING"] = bool(target.options.get("pin_threads", hint == "THROUGHPUT"))
        if target.threads:
            config["INFERENCE_NUM_THREADS"] = target.threads
    if target.options.get("streams"):
        config["NUM_STREAMS"] = target.options["streams"]
    return config


def skip_reason(target: Target) -> str | None:
    """Why this target cannot be measured on this machine, or None when it can."""
    if target.runtime == "onnxruntime":
        ort = require("onnxruntime")
        available = ort.get_available_providers()
        missing = [name for name, _ in ort_providers(target) if name not in available]
        return f"{', '.join(missing)} not installed (onnxruntime has {', '.join(available)})" if missing else None
    if target.runtime == "openvino":
        devices = {d.split(".")[0] for d in require("openvino").Core().available_devices}
        wanted = target.device.upper()
        if wanted not in devices:
            return f"OpenVINO device {wanted} not present (found {', '.join(sorted(devices))})"
        return precision_skip_reason(target) if wanted == "CPU" else None
    if target.device == "cuda" and not require("torch").cuda.is_available():
        return "torch.cuda is not available (no NVIDIA GPU or a CPU-only PyTorch build)"
    return None


# The ISA features OpenVINO's CPU plugin needs to honour a lower inference precision (else it runs f32).
PRECISION_ISA = {"bf16": ("avx512_bf16", "amx_bf16"), "f16": ("avx512_fp16", "amx_fp16")}


def precision_skip_reason(target: Target) -> str | None:
    """Why this CPU cannot run the asked OpenVINO inference precision, or None (f32, or the ISA is there)."""
    precision = target.options.get("precision", "f32")
    needs = PRECISION_ISA.get(precision)
    if not needs:
        return None
    from mcbench.optimizer.hardware import cpu_info

    isa = cpu_info()["isa"]
    if any(flag in isa for flag in needs):  # type: ignore[operator]
        return None
    return (f"OpenVINO inference precision {precision} needs {' or '.join(needs)}; this CPU has "
            f"{', '.join(isa) or 'none of the listed ISA features'} (OpenVINO would run f32 instead)")  # type: ignore[arg-type]


def open_session(artifact: Artifact, target: Target, ort_global_pool: bool = False) -> Session:
    """A session for `artifact` on `target`; `ort_global_pool`: an onnxruntime session runs on the process-wide
    thread pool (set_ort_global_pool first), not one of its own."""
    if target.runtime == "torch":
        return _TorchSession(artifact, target)
    if target.runtime == "openvino" and artifact.format in ("onnx", "openvino"):
        return _OpenVinoSession(artifact, target)
    if artifact.format == "openvino":
        raise TargetError("onnxruntime cannot run an OpenVINO IR model (the nncf.* passes make one): "
                          "measure it on the openvino runtime")
    if artifact.format != "onnx":
        raise TargetError(f"{target.runtime} needs an ONNX artifact, got {artifact.format}")
    return _OrtSession(artifact, target, ort_global_pool)


def ort_session_options(ort, target: Target, global_pool: bool = False):
    """The session options every onnxruntime measurement uses (the operator profile too, so both see one graph);
    `global_pool`: the session uses the process-wide thread pools (sized by set_ort_global_pool), not its own."""
    opts = ort.SessionOptions()
    if global_pool:
        opts.use_per_session_threads = False  # the pool's sizes are the process's; a session's would be ignored
    elif target.threads:
        opts.intra_op_num_threads = target.threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def set_ort_global_pool(threads: int | None) -> None:
    """Size onnxruntime's process-wide thread pools: `threads` intra-op (None: its default), one inter-op.

    onnxruntime 1.32 creates the pools with the first session that asks for them (use_per_session_threads False);
    from then on their size is fixed and a session with a pool of its own can no longer be created in that process.
    So call this in a process of its own (a child) whose every onnxruntime session uses the global pool."""
    ort = require("onnxruntime")
    setter = getattr(ort, "set_global_thread_pool_sizes", None) or ort.capi._pybind_state.set_global_thread_pool_sizes
    setter(threads or 0, 1)


class _OrtSession:
    def __init__(self, artifact: Artifact, target: Target, global_pool: bool = False) -> None:
        ort = require("onnxruntime")
        opts = ort_session_options(ort, target, global_pool)
        providers = ort_providers(target)
        self._session = ort.InferenceSession(str(artifact.path), opts, providers=providers)
        primary, actual = providers[0][0], self._session.get_providers()
        if primary not in actual:  # onnxruntime falls back to CPU with only a log line; that is not a GPU figure
            raise TargetError(f"asked for {primary}, the session runs on {', '.join(actual)}: not measured")
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, feeds)


class _OpenVinoSession:
    def __init__(self, artifact: Artifact, target: Target) -> None:
        ov = require("openvino")
        device = target.device.upper()
        config = openvino_config(target)
        self._compiled = ov.Core().compile_model(str(artifact.path), device, config)
        executed = [d.split(".")[0] for d in self._compiled.get_property("EXECUTION_DEVICES")]
        if device not in executed:
            raise TargetError(f"asked OpenVINO for {device}, it runs on {', '.join(executed)}: not measured")
        asked = str(config["INFERENCE_PRECISION_HINT"])
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if device == "CPU" and self.precision != asked:  # the CPU plugin quietly runs f32 where it cannot
            raise TargetError(f"asked OpenVINO for inference precision {asked}, it runs {self.precision}: not measured")
        self._request = self._compiled.create_infer_request()
        # a port may carry several tensor names (OpenVINO merges a no-op Cast's output into the input): the run's
        # input names are the ones the feeds use
        wanted = {spec.name for spec in artifact.inputs}
        self.input_names = [next((n for n in sorted(p.get_names()) if n in wanted), p.get_any_name())
                            for p in self._compiled.inputs]
        self.output_names = [p.get_any_name() for p in self._compiled.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._request.infer(feeds, share_inputs=True)  # no copy of the input arrays, as a server would
        return [self._request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]


class _TorchSession:
    """PyTorch eager: the factory's module with the artifact's state_dict, loaded weights_only."""

    def __init__(self, artifact: Artifact, target: Target) -> None:
        torch = require("torch")
        if artifact.format not in ("torch", "pt2"):
            raise TargetError("the torch runtime needs a torch artifact (a factory and a state_dict, or a .pt2)")
        if target.threads:
            torch.set_num_threads(target.threads)
        from mcbench.optimizer.intake_torch import load_torch_module, named_outputs, output_names_of

        self._torch, self._named = torch, named_outputs
        self._device = torch.device(target.device)
        self._module = load_torch_module(artifact).to(self._device)
        self.input_names = [s.name for s in artifact.inputs]
        # every output named (one call tells how many): a server answers each by its name (docs/serving.md)
        self.output_names = output_names_of(self._module, artifact.inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self._module(*(torch.from_numpy(feeds[n]).to(self._device) for n in self.input_names))
        return [o.cpu().numpy() for _, o in self._named(out)]


def hardware_mismatch(profile) -> str | None:
    """Why a profile's CPU is not this machine's (missing ISA features, too few cores), or None.

    It decides for the profile's CPU targets; GPU targets are checked one by one (providers, devices).
    """
    missing = [f for f in profile.isa if f not in cpu_info()["isa"]]
    if missing:
        return f"this machine lacks {', '.join(missing)}: profile {profile.name} describes another CPU"
    if profile.cores > len(usable_cores()):
        return f"profile {profile.name} has {profile.cores} cores, this machine {len(usable_cores())}"
    return None


def why_not_here(target: Target, artifact: Artifact, batch_size: int = 1) -> str | None:
    """The one answer to "can this variant run on this machine?": why not (its runtime, provider or device is
    missing, or its model cannot take batches of this size), or None. A profile's CPU that is not this machine's
    is decided once per profile (hardware_mismatch) when the matrix is planned."""
    return skip_reason(target) or batch_skip_reason(artifact, batch_size)


def batch_skip_reason(artifact: Artifact, batch_size: int) -> str | None:
    """Why an artifact cannot run batches of this size (an ONNX model with a fixed batch axis), or None."""
    if batch_size == 1 or artifact.format != "onnx":
        return None
    from mcbench.optimizer.graph_stats import fixed_batch_inputs

    fixed = fixed_batch_inputs(artifact.path, {s.name: s.batch_axis for s in artifact.inputs})
    if fixed:
        return f"input(s) {', '.join(fixed)} have a fixed batch axis: batch size {batch_size} cannot run"
    return None
