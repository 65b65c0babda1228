"""The built-in KServe v2 server for one model file or one variant of a finished run: the spec the server process
reads, the run's best serving configuration, and serving until interrupted (what `mcbench serve` and
`mcbench.serve` do).

The pipeline starts the same server (`python -m mcbench.bench.server_cli`) for its load tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mcbench.base.errors import UsageError


def server_spec(model: str, name: str | None, runtime: str, threads: int | None,
                inputs: list[str] | None = None, consts: list[str] | None = None,
                allow_code: bool = False) -> dict:
    """{"name", "artifact", "target"} for the server, from an .onnx path (with --input shapes) or RUN_DIR:VARIANT."""
    from mcbench.optimizer.artifact import generated_inputs
    from mcbench.optimizer.intake import load_onnx, parse_constants, parse_inputs, with_constants
    from mcbench.optimizer.targets import Target

    run_dir, _, variant = model.rpartition(":")
    if run_dir and Path(run_dir).is_dir():
        if inputs or consts:
            raise UsageError("serve: --input and --const apply to an .onnx file; a run's variant keeps its own")
        return variant_spec(Path(run_dir), variant, name, threads, allow_code)
    path = Path(model)
    if path.suffix != ".onnx":
        raise UsageError(f"serve: {model} is neither an .onnx file nor RUN_DIR:VARIANT")
    artifact = with_constants(load_onnx(path, parse_inputs(inputs or [])), parse_constants(consts or []))
    generated_inputs(artifact.inputs, 1)  # the server warms up on one: an input that must not be random says so here
    target = Target(runtime, threads=threads)
    return {"name": name or path.stem, "artifact": artifact.to_dict(), "target": target.to_dict()}


def variant_spec(run_dir: Path, variant: str, name: str | None, threads: int | None,
                 allow_code: bool = False) -> dict:
    from mcbench.code_rule import refuse_results_code
    from mcbench.reports.schema import load_results

    run = load_results(run_dir / "results.json")
    try:
        result = run.variant(variant)
    except KeyError:
        names = ", ".join(v.name for v in run.variants)
        raise UsageError(f"serve: {run_dir} has no variant {variant!r}; it has {names}") from None
    if not result.artifact or "in_process" not in result.settings:
        raise UsageError(f"serve: variant {variant!r} has no built artifact ({result.status})")
    refuse_results_code(run, str(run_dir / "results.json"), allow_code, [variant])
    keys = ("path", "format", "inputs", "factory", "factory_args", "passes")  # a factory needs its arguments too
    artifact = {k: result.artifact[k] for k in keys if k in result.artifact}
    if not Path(artifact["path"]).exists() and (run_dir.parent.parent / artifact["path"]).exists():
        artifact["path"] = str(run_dir.parent.parent / artifact["path"])  # a run made from another folder
    if artifact["format"] == "onnx":
        from mcbench.optimizer.intake import checked_onnx

        checked_onnx(Path(artifact["path"]))  # results.json is input too: its model gets the intake checks
    target = dict(result.settings["in_process"])
    target["threads"] = threads
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in variant)
    spec = {"name": name or safe, "artifact": artifact, "target": target}
    best = result.serving.best_config if result.serving else None
    if best is not None:  # what the serving search measured is what starts; --threads still overrides its threads
        from mcbench.bench.serving import ServingConfig

        try:
            config = ServingConfig.from_dict(best)
        except ValueError as exc:
            raise UsageError(f"serve: {run_dir / 'results.json'}: the serving search's best configuration for "
                             f"{variant!r} cannot be started: {exc}") from None
        spec["target"] = config.target_dict({**target, "threads": threads or config.threads})
        spec["serving"] = {**config.to_dict(), "label": config.label, "rps_at_slo": result.serving.best_rps,
                           "slo_p99_ms": result.serving.slo_p99_ms}
    return spec


def serve_model(model: str, host: str, port: int, name: str | None, runtime: str, threads: int | None,
                inputs: list[str], consts: list[str], allow_code: bool, cores: list[int], limits: dict,
                say: Callable[[str], None]) -> None:
    """Serve `model` (an .onnx file or RUN_DIR:VARIANT) until interrupted: what `mcbench serve` and `mcbench.serve`
    do. `limits` are ServerLimits' fields; a run's variant takes its serving search's best configuration where
    they leave instances or batching out."""
    from mcbench.bench.guards import ServerLimits, StartError
    from mcbench.bench.server_cli import serve
    from mcbench.runguard import signals_raise

    spec = server_spec(model, name, runtime, threads, inputs, consts, allow_code)
    searched = spec.pop("serving", None)
    if searched is not None:
        limits = with_searched_config(limits, searched, say)
    try:
        checked = ServerLimits(**{"instances": 1, "max_batch": 1, **limits})
    except StartError as exc:
        raise UsageError(f"serve: {exc}") from None
    if cores:
        os.sched_setaffinity(0, set(cores))
    # SIGTERM (a container's stop) and SIGHUP (a closed terminal) raise like Ctrl-C does, so the scratch folder is
    # removed on the way out.
    with signals_raise(hangup=True), tempfile.TemporaryDirectory(prefix="mcbench-serve-") as tmp:
        spec_path = Path(tmp) / "server.json"
        spec_path.write_text(json.dumps(spec))
        say(f"serving {spec['name']!r} on http://{host}:{port or '<free port>'}/v2/models/{spec['name']}")
        try:
            serve(spec_path, host, port, checked)
        except StartError as exc:
            raise UsageError(f"serve: {exc}") from None


def with_searched_config(limits: dict, searched: dict, say: Callable[[str], None]) -> dict:
    """The run's best serving configuration where `limits` do not set instances or batching."""
    taken = {"instances": searched["instances"]} if "instances" not in limits else {}
    if "max_batch" not in limits:
        taken |= {"max_batch": searched["max_batch"], "max_wait_ms": searched["max_wait_ms"]}
    say(f"serving configuration from the run's serving search: {searched['label']} "
        f"({searched['rps_at_slo']:.0f} req/s with p99 within {searched['slo_p99_ms']:g} ms there)")
    return {**limits, **taken}
