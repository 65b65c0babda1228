"""`mcbench serve`: the built-in KServe v2 server for one model file or one variant of a finished run.

The pipeline starts the same server (`python -m mcbench.bench.server_cli`) with the same flags for its load tests.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mcbench.base.errors import UsageError


def add_parser(sub) -> None:
    from mcbench.bench.server_cli import add_server_arguments

    serve = sub.add_parser("serve", help="serve a model or a run's variant over KServe v2 HTTP",
                           description="Serve one model over the KServe v2 Open Inference Protocol.")
    serve.add_argument("model", metavar="MODEL_OR_VARIANT",
                       help="an .onnx file, or RUN_DIR:VARIANT for a variant of a finished run")
    serve.add_argument("--name", help="the model name in URLs (default: the file stem or the variant name)")
    serve.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                       help="runtime for an .onnx file (a run's variant keeps its own)")
    serve.add_argument("--threads", type=int, help="runtime threads (default: one per server core)")
    serve.add_argument("--input", action="append", default=[], metavar="NAME=D1,D2,...",
                       help="shape of an input whose dimensions the .onnx file leaves open, as for mcbench run")
    serve.add_argument("--const", action="append", default=[], metavar="NAME=VALUE[:DTYPE]",
                       help="the value of a 0-d or constant input of an .onnx file, as for mcbench run")
    serve.add_argument("--allow-code", action="store_true",
                       help="for RUN_DIR:VARIANT: let the results file name code (a torch variant's factory), which "
                       "is imported and called; without it such a variant is refused, as a results file is data")
    add_server_arguments(serve)


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


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mcbench import api
    from mcbench.bench.guards import StartError
    from mcbench.bench.server_cli import limits_from_args

    try:
        limits = asdict(limits_from_args(args))
    except StartError as exc:
        raise UsageError(f"serve: {exc}") from None
    if args.instances is None:  # left to the run's serving search, where it has one
        del limits["instances"]
    if args.max_batch is None:
        del limits["max_batch"], limits["max_wait_ms"]
    api.serve(args.model, host=args.host, port=args.port, name=args.name, runtime=args.runtime,
              threads=args.threads, inputs=args.input, consts=args.const, allow_code=args.allow_code,
              cores=[int(c) for c in args.cores.split(",")] if args.cores else (), **limits)
    return 0


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
