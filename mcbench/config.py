"""The run configuration: what the CLI, a run file or a caller asks one `mcbench run` to do.

The dataclasses here (and bench.latency.TimingPlan) are the one schema of a run's settings: each field
declares its type, default, range or choices, help text, run-file key, flag and quick-preset value once
(base.settings; what a field does beyond that is a hook in config_hooks), and the run file (config_file), the
flags (config_flags), `mcbench.run`'s keywords (config_keywords), the quick preset (`defaults`) and
results.json's `config` derive from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcbench.config_hooks as hooks
from mcbench.base.errors import UserError
from mcbench.base.settings import ConfigError, apply, quick_preset, setting
from mcbench.base.settings_check import validate
from mcbench.base.settings_json import from_json, to_json
from mcbench.bench.latency import QUICK_PLAN, TimingPlan
from mcbench.bench.load_plan import LoadPlan
from mcbench.optimizer.intake import InputConstant, InputOverride

__all__ = ["ConfigError", "LoadPlan", "RunConfig", "apply", "config_from_dict", "defaults"]

DEFAULT_TIME_BUDGET_S = 240.0  # sized so the demo's default run ends within 5 minutes on a 2-core machine
QUICK_TIME_BUDGET_S = 75.0
QUICK_LOAD = LoadPlan(users=(1, 4), step_seconds=3.0, warmup_s=0.5, max_step_seconds=3.0, rate_fractions=(0.5,),
                      serving_budget_s=0.0)


@dataclass(frozen=True)
class RunConfig:
    """One run: the model, its data, what to build, how to measure it. Each field is a setting (base.settings)."""

    model: str | None = setting(
        None, flag="--model", resolve=hooks.model_beside, runs_code=hooks.is_factory,
        help="an .onnx file, a Hugging Face folder (save_pretrained; needs mcbench[hf]), a .pt2 torch.export "
             "archive, a pickled module (.pt, needs --trust-model) or package.module:factory (default: the built-in "
             "digits demo)")
    inputs: dict[str, InputOverride] = setting(
        factory=dict, flag="--input", repeat=True, metavar="NAME=D1,D2,...[:DTYPE[:LOW-HIGH]]",
        parse=hooks.inputs_value, load=hooks.recorded_inputs,
        help="shape (and dtype, integer range) of an input; repeat for several inputs")
    consts: dict[str, InputConstant] = setting(
        factory=dict, flag="--const", repeat=True, metavar="NAME=VALUE[:DTYPE]", parse=hooks.consts_value,
        load=hooks.recorded_consts, legacy={},
        help="the value of a 0-d or constant input (a sample rate, a flag), given to every inference; repeat for "
             "several inputs")
    weights: Path | None = setting(None, flag="--weights", metavar="FILE", legacy=None,
                                   help="state_dict (.pt, loaded weights_only) or .safetensors for a factory")
    trust_model: bool = setting(False, flag="--trust-model", runs_code=bool,
                                help="allow unpickling a full model file: this runs code from the file")
    dataset: Path | None = setting(None, flag="--dataset", metavar="DATA.NPZ", legacy=None,
                                   help=".npz with one array per model input plus 'labels'")
    task: str = setting(
        "auto", flag="--task", choices=hooks.task_choices,
        help="what the outputs are, which picks the quality metric (default auto: classification for one "
             "[batch, classes] output, else fidelity per output)")
    outputs: dict[str, str] = setting(
        factory=dict, flag="--output", repeat=True, metavar="NAME=ROLE", parse=hooks.output_roles_value, legacy={},
        help="what an output means, which picks how it is judged (default: inferred from the baseline's outputs); "
             "ROLE: classes, sequence, scores, yolov8, yolox, embedding, real or ignore; repeat for several outputs")
    metric: str | None = setting(None, flag="--metric", metavar="package.module:function", runs_code=bool, legacy=None,
                                 help="a user metric: function(outputs, labels) -> float or dict of floats")
    profiles: tuple[str, ...] = setting(
        (), flag="--profile", repeat=True, metavar="NAME_OR_TOML", resolve=hooks.profiles_beside,
        help="hardware profile to compile and measure for (repeat to compare several); shipped names, or .toml "
             "files (in a run file: beside it)")
    out_dir: Path | None = setting(None, key="out", flag="--out", metavar="DIR", recorded=False,
                                   help="run folder (default: a new folder under runs/)")
    quick: bool = setting(False, flag="--quick", quick=True,
                          help="short measurements and a shorter search: the demo in about a minute and a half")
    timing: TimingPlan = setting(TimingPlan(), quick=QUICK_PLAN,
                                 help="in-process latency: how long each variant is timed")
    load: LoadPlan | None = setting(
        LoadPlan(), quick=QUICK_LOAD, off_flag="--no-load", off_help="skip the HTTP load test", switch="enabled",
        legacy=None,
        help="the HTTP load test: sweeps and capacity figures")
    variants: tuple[str, ...] = setting(
        (), flag="--variants", metavar="ort-fp32,ov-fp32",
        help="only these variants, comma-separated (the baseline always runs)")
    accuracy_budget: float = setting(
        1.0, flag="--accuracy-budget", metavar="POINTS", ge=0, le=100, unit="percentage points", legacy=1.0,
        help="the most top-1 accuracy (agreement where no labels) a recommended variant may lose against the "
             "baseline, in percentage points")
    recipes: tuple[str, ...] = setting(
        (), flag="--recipe", repeat=True, metavar="[NAME=]RECIPE", resolve=hooks.recipes_checked, legacy=(),
        help="a variant as a chain of passes, e.g. 'pruned=prune.structured(0.3) + quant.int8_dynamic'; repeat for "
             "several; replaces the default variants (the baseline always runs)")
    cache_dir: Path | None = setting(
        factory=hooks.shared_cache, shown="`$MCBENCH_CACHE`, else `runs/.cache`", flag="--cache-dir", metavar="DIR",
        off_flag="--no-cache", none=False, legacy=None,
        off_help="build every artifact afresh in the run folder (cache_dir = false in a run file)",
        help="artifact cache shared across runs (default: $MCBENCH_CACHE, else runs/.cache; none: build every "
             "artifact afresh in the run folder)")
    seq_len: int = setting(128, flag="--seq-len", metavar="N", ge=1, le=8192, unit="tokens", legacy=128,
                           help="a Hugging Face text model's sequence length")
    text_file: Path | None = setting(
        None, flag="--text-file", metavar="LINES.TXT", legacy=None,
        help="a Hugging Face text model's dataset: one text a line, tokenised with the folder's tokenizer")
    calibration_data: Path | None = setting(
        None, key="calibration", flag="--calibration-data", metavar="DATA.NPZ|LINES.TXT", legacy=None,
        help="samples to calibrate static INT8 on, apart from the scored ones: an .npz like --dataset's, or a text "
             "file like --text-file's (default: the first 128 scored samples, and the pass records say so)")
    labels_file: Path | None = setting(
        None, key="labels", flag="--labels", metavar="LABELS.TXT", legacy=None,
        help="one label a line for the text file: a class id or a label name from config.json")
    quality_budget: str | None = setting(
        None, flag="--quality-budget", metavar="POINTS|METRIC>=X|METRIC<=X", parse=hooks.quality_budget_text,
        check=hooks.check_quality_budget, legacy=None,
        help="what a recommended variant must meet: points from the baseline on the task's metric (default 1), or "
             "a bound such as cosine_mean>=0.99 (the embedding default) or f1>=0.8")
    objective: str = setting(
        "p50", flag="--objective", choices=hooks.objective_choices,
        legacy="p99",  # what runs from before it were decided on
        help="what the best variant within the quality budget is best at: p50 or p99 (in-process latency), "
             "throughput (peak HTTP req/s under the p99 budget) or cost (per million requests, where a profile or "
             "--cost-per-hour prices it); the frontier and the recommendation are drawn on it (docs/run.md)")
    time_budget_s: float | None = setting(
        DEFAULT_TIME_BUDGET_S, quick=QUICK_TIME_BUDGET_S, key="time_budget", flag="--time-budget", metavar="SECONDS",
        gt=0, le=7 * 86400,
        unit="seconds", none=0, legacy=None,
        help="wall time the search's stages may take (default 240, --quick 75; 0: no limit); a run cut by it still "
             "recommends from what it measured and says what it did not try")
    exhaustive: bool = setting(
        False, flag="--exhaustive", legacy=True,  # runs from before the search took every candidate all the way
        help="take every candidate through every stage (quality, full timing, load test) instead of searching; an "
             "explicit --variants or --recipe list always runs this way")
    search_exclude: tuple[str, ...] = setting(
        (), key="search.exclude", legacy=(),
        help="candidate name patterns the search leaves out (fnmatch; never the baseline)")
    search_add: tuple[str, ...] = setting(
        (), key="search.add", resolve=hooks.recipes_checked, legacy=(),
        help="`[NAME=]RECIPE` candidates the search adds to its space")

    def __post_init__(self) -> None:
        validate(self)
        if self.quality_budget is not None:
            self._check_budget_metric()
        self.check_objective()
        if self.model is None and (self.inputs or self.consts or self.weights or self.dataset):
            raise ConfigError("--input, --const, --weights and --dataset describe a --model; the built-in demo needs "
                              "none")
        if self.model is None and (self.text_file or self.labels_file):
            raise ConfigError("--text-file and --labels describe a Hugging Face --model folder; the demo needs none")
        if self.model is None and self.calibration_data:
            raise ConfigError("--calibration-data describes a --model's inputs; the built-in demo calibrates on its "
                              "training split")
        if self.text_file and self.dataset:
            raise ConfigError("give either --text-file or --dataset, not both")
        if self.labels_file and not self.text_file:
            raise ConfigError("--labels goes with --text-file (a .npz dataset carries its own 'labels')")

    def check_objective(self) -> None:
        """A load-based objective needs the load test, and cost needs a price, or no variant could be ranked."""
        if self.objective in ("throughput", "cost") and self.load is None:
            raise ConfigError(f"--objective {self.objective} ranks on the HTTP load test's figures, and --no-load "
                              "skips it: drop --no-load, or choose --objective p50 or p99")
        if self.objective == "cost" and self.load.cost_per_hour is None and not self.profiles:
            raise ConfigError("--objective cost needs a price: --cost-per-hour, or a --profile with cost_per_hour")

    def _check_budget_metric(self) -> None:
        """A --quality-budget on a metric this run cannot record is refused before any work (issue 32, M1)."""
        from mcbench.bench.metrics import AUTO, NEEDS_LABELS, RECORDED, records
        from mcbench.reports.quality import parse_quality_budget

        spec, text = parse_quality_budget(self.quality_budget), self.quality_budget
        if self.task == "embedding" and spec.points is not None:
            raise ConfigError(f"--quality-budget {text}: an embedding's budget is a floor on the cosine to the "
                              "baseline: give it as cosine_mean>=X (default cosine_mean>=0.99)")
        if spec.key is None or self.metric is not None:  # a user --metric may return any name
            return
        labelled = self.model is None or self.dataset is not None or self.labels_file is not None
        task = "classification" if self.model is None and self.task == AUTO else self.task
        if records(task, spec.key, labelled):
            return
        if records(task, spec.key, True) and spec.key in NEEDS_LABELS:
            raise ConfigError(f"--quality-budget {text}: {spec.key} needs labels (a --dataset with 'labels', or "
                              "--labels), and this run has none")
        said = "classification or fidelity (--task auto)" if task == AUTO else task
        known = sorted({m for t in (("classification", "fidelity") if task == AUTO else (task,)) for m in RECORDED[t]})
        raise ConfigError(f"--quality-budget {text}: a {said} run does not record {spec.key!r} (it records "
                          f"{', '.join(known)}; a --metric function adds its own)")

    @property
    def from_torch(self) -> bool:
        """Whether the model comes from PyTorch (and so has an eager baseline)."""
        return self.model is None or not self.model.endswith(".onnx")

    @property
    def source_format(self) -> str:
        """The base artifact's format, known before the model is loaded: what recipes are checked against."""
        if self.model is not None and self.model.endswith(".onnx"):
            return "onnx"
        if self.model is not None and self.model.endswith((".pt2", ".pt", ".pth", ".pkl", ".bin", ".ckpt")):
            return "pt2"  # a torch.export archive, or a pickled module that intake exports to one
        return "torch"

    @property
    def searches(self) -> bool:
        """Whether the run is a staged search; an explicit list (--variants, --recipe, --profile) runs in full."""
        return not (self.exhaustive or self.variants or self.recipes or self.profiles)

    @classmethod
    def quick_mode(cls, **kwargs: Any) -> RunConfig:
        """The quick preset with `kwargs` (fields by name) over it."""
        return dataclasses.replace(defaults(quick=True), **kwargs)

    def to_dict(self) -> dict:
        """What results.json records as `config` (everything but where the run's files went)."""
        return to_json(self)


def defaults(quick: bool = False) -> RunConfig:
    """What a run starts from: every setting's default, or with `quick` the quick preset (each setting's `quick`
    value, base.settings.quick_preset). `mcbench run` and `mcbench.run` put a run file, flags or keywords over it."""
    return apply(RunConfig(), quick_preset(RunConfig)) if quick else RunConfig()


def config_from_dict(data: dict, source: str) -> RunConfig:
    """The RunConfig a results file recorded (RunConfig.to_dict's inverse), for `mcbench run --resume`.

    A key from before a field existed takes the field's `legacy` value (a run from before the search was
    exhaustive and had no time budget); an unknown key, or a missing one without a legacy value, is an error.
    """
    try:
        return from_json(RunConfig, data)
    except (KeyError, TypeError, ValueError, AttributeError, UserError) as exc:
        raise ConfigError(f"{source}: the recorded config cannot be read back ({type(exc).__name__}: {exc})") from None
