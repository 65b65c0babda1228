"""The model server's process: `python -m mcbench.bench.server_cli --spec SPEC.json [--port 0] [--cores 0]` (or
`mcbench serve`), where SPEC.json holds `{"name", "artifact", "target"}`.

It pins itself to `--cores` before any runtime starts its thread pool, loads and warms the model, binds (127.0.0.1
unless told otherwise), then prints `MCBENCH_SERVER_READY port=N dispatch=inline|thread model_ms=X instances=N
threads=T max_batch=B [max_wait_ms=W]`, the line bench/launcher.py waits for, and serves the app (bench/server.py)
on uvicorn. The flags set the limits (bench/guards.py) and the dispatch (bench/batching.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from mcbench.bench.batching import check_batching, measured_dispatch
from mcbench.bench.calibration import spin
from mcbench.bench.guards import TOKEN_ENV, ServerLimits, StartError, header_timeout_protocol
from mcbench.bench.serving import SessionPool

READY = "MCBENCH_SERVER_READY"
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "torch": "pytorch_eager"}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or StartError; bound before the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    return sock


def serve(spec_path: Path, host: str, port: int, limits: ServerLimits | None = None) -> None:
    """Load and warm the spec's model, print the ready line, then serve until stopped; StartError where it cannot."""
    import numpy as np
    import uvicorn

    from mcbench.bench.server import build_app
    from mcbench.optimizer.artifact import Artifact
    from mcbench.optimizer.targets import Target, open_session

    limits = limits or ServerLimits()
    if not 0 <= port <= 65535:
        raise StartError(f"--port {port}: give a port from 1 to 65535, or 0 for a free one")
    spec = json.loads(Path(spec_path).read_text())
    artifact, target = Artifact.from_dict(spec["artifact"]), Target.from_dict(spec["target"])
    sock = bind(host, port)  # before loading the model: a port in use fails at once
    session = SessionPool([open_session(artifact, target) for _ in range(limits.instances)])
    feeds = {s.name: s.sample(np.random.default_rng(0)) for s in artifact.inputs}
    session.run(feeds)  # the first call pays for lazy initialisation
    batch_axes = check_batching(session, feeds, artifact) if limits.max_batch > 1 else None
    run = _delayed(session.run, limits.delay_ms / 1e3, limits.spin_ms / 1e3)
    # the batcher always uses the thread, and several instances need threads to run at once
    below_ms = limits.inline_below_ms if limits.max_batch == 1 and limits.instances == 1 else 0.0
    dispatch = measured_dispatch(run, feeds, below_ms)
    app = build_app(spec["name"], session, artifact, PLATFORMS[target.runtime], limits, dispatch, run, batch_axes)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            http=header_timeout_protocol(limits.read_timeout_s),
                            timeout_keep_alive=max(5, int(limits.read_timeout_s)), limit_concurrency=4096)
    batching = f"max_batch={limits.max_batch} max_wait_ms={limits.max_wait_ms:g}" if limits.max_batch > 1 \
        else "max_batch=1"
    print(f"{READY} port={sock.getsockname()[1]} dispatch={dispatch.mode} model_ms={dispatch.model_ms:.4f} "
          f"instances={limits.instances} threads={target.threads or 'default'} {batching}", flush=True)
    os.dup2(2, 1)  # nobody reads stdout after the ready line: anything printed later goes to the log, not a full pipe
    uvicorn.Server(config).run(sockets=[sock])


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `python -m mcbench.bench.server_cli` and `mcbench serve` share."""
    d = ServerLimits()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--cores", default="", help="comma-separated CPU cores to pin the server to")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (or set {TOKEN_ENV})")
    parser.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20,
                        help="largest request body in MiB (default %(default)g)")
    parser.add_argument("--max-elements", type=int, default=d.max_elements, help="largest tensor, in elements")
    parser.add_argument("--read-timeout-s", type=float, default=d.read_timeout_s,
                        help="a client must send its body within this (408 past it)")
    parser.add_argument("--timeout-s", type=float, default=d.timeout_s, help="inference deadline (504 past it)")
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help="requests allowed to wait for the model (503 with Retry-After beyond)")
    parser.add_argument("--instances", type=int,
                        help="model instances, each serving one call at a time (default 1; for RUN_DIR:VARIANT, "
                             "the run's best serving configuration)")
    parser.add_argument("--max-batch", type=int, help="dynamic batching: most requests per model call (default 1; "
                        "for RUN_DIR:VARIANT, the run's best serving configuration)")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                        help="dynamic batching: longest wait for a batch to fill")
    parser.add_argument("--inline-below-ms", type=float, default=d.inline_below_ms,
                        help="run a model faster than this (warm-up median) on the event loop, not a worker "
                             "thread; 0: always the thread (default %(default)g)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # test hook
    parser.add_argument("--spin-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # test hook


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """The limits add_server_arguments' flags set (the token from the environment where no flag gives one)."""
    return ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_elements=args.max_elements,
        read_timeout_s=args.read_timeout_s, timeout_s=args.timeout_s, max_queue=args.max_queue,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None,
        max_batch=args.max_batch or 1, max_wait_ms=args.max_wait_ms, instances=args.instances or 1,
        delay_ms=args.delay_ms, spin_ms=args.spin_ms, inline_below_ms=args.inline_below_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcbench.bench.server_cli",
                                     description="serve one model over KServe v2 HTTP")
    parser.add_argument("--spec", type=Path, required=True, help='JSON: {"name", "artifact", "target"}')
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        limits = limits_from_args(args)
        if args.cores:
            os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
        serve(args.spec, args.host, args.port, limits)
    except StartError as exc:
        print(f"mcbench serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _delayed(run, delay_s: float, spin_s: float = 0.0):
    """`run` with the test hooks' known service time added: a sleep of `delay_s`, a busy-wait of `spin_s` (whose
    end is set when it starts, so only the calls around it can add to it: benchmarks/truth.py)."""
    if delay_s <= 0 and spin_s <= 0:
        return run

    def slow(feeds):
        if delay_s > 0:
            time.sleep(delay_s)
        if spin_s > 0:
            spin(spin_s * 1e6)
        return run(feeds)

    return slow


if __name__ == "__main__":
    sys.exit(main())
