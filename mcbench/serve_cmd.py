"""`mcbench serve`: the command line of the built-in KServe v2 server (the work: mcbench.api.serve, over
mcbench.local_server)."""

from __future__ import annotations

import argparse

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


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mcbench.api import serve
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
    serve(args.model, host=args.host, port=args.port, name=args.name, runtime=args.runtime, threads=args.threads,
          inputs=args.input, consts=args.const, allow_code=args.allow_code,
          cores=[int(c) for c in args.cores.split(",")] if args.cores else (), **limits)
    return 0
