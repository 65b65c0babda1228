"""The built-in model server: one model over the KServe v2 HTTP protocol (starlette on uvicorn).

Run as its own process, `python -m bench.server --spec SPEC.json [--port 0] [--cores 0]`, where SPEC.json
holds `{"name", "artifact", "target"}`. It pins itself to `--cores` before any runtime starts its
thread pool, loads and warms the model, binds, then prints `MCBENCH_SERVER_READY port=N`.
Inference runs one request at a time in a worker thread; requests queue on the event loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

READY = "MCBENCH_SERVER_READY"
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "torch": "pytorch_eager"}


def build_app(name: str, session, artifact, platform: str):
    """The starlette app for one loaded session."""
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bench.protocol import HEADER_LENGTH, TO_V2, ProtocolError, decode_infer_request, encode_infer_response

    limiter = anyio.CapacityLimiter(1)
    metadata = {
        "name": name,
        "platform": platform,
        "inputs": [{"name": s.name, "datatype": TO_V2[s.dtype], "shape": list(s.shape)} for s in artifact.inputs],
        "outputs": [{"name": n} for n in session.output_names],
    }

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def ok(request: Request) -> Response:
        return Response(status_code=200)

    def known(request: Request) -> bool:
        return request.path_params["model"] == name

    def unknown(request: Request) -> JSONResponse:
        return error(404, f"unknown model {request.path_params['model']!r}; this server has {name!r}")

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(metadata) if known(request) else unknown(request)

    async def model_ready(request: Request) -> Response:
        return Response(status_code=200) if known(request) else unknown(request)

    async def infer(request: Request) -> Response:
        if not known(request):
            return unknown(request)
        body = await request.body()
        try:
            feeds = decode_infer_request(body, request.headers.get(HEADER_LENGTH), artifact.inputs)
        except ProtocolError as exc:
            return error(400, str(exc))
        try:
            outputs = await anyio.to_thread.run_sync(session.run, feeds, limiter=limiter)
        except Exception as exc:  # a runtime that rejects this input must not take the server down
            return error(500, f"inference failed: {type(exc).__name__}: {exc}")
        return JSONResponse(encode_infer_response(name, session.output_names, outputs))

    routes = [
        Route("/v2/health/live", ok),
        Route("/v2/health/ready", ok),
        Route("/v2/models/{model}", model_metadata),
        Route("/v2/models/{model}/ready", model_ready),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def serve(spec_path: Path, host: str, port: int) -> None:
    import numpy as np
    import uvicorn

    from optimizer.artifact import Artifact
    from optimizer.targets import Target, open_session

    spec = json.loads(Path(spec_path).read_text())
    artifact, target = Artifact.from_dict(spec["artifact"]), Target.from_dict(spec["target"])
    session = open_session(artifact, target)
    session.run({s.name: s.sample(np.random.default_rng(0)) for s in artifact.inputs})  # warm-up
    app = build_app(spec["name"], session, artifact, PLATFORMS[target.runtime])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it on Linux
    sock.bind((host, port))
    sock.listen(512)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    print(f"{READY} port={sock.getsockname()[1]}", flush=True)
    os.dup2(2, 1)  # nobody reads stdout after the ready line: anything printed later goes to the log, not a full pipe
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description="serve one model over KServe v2 HTTP")
    parser.add_argument("--spec", type=Path, required=True, help='JSON: {"name", "artifact", "target"}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--cores", default="", help="comma-separated CPU cores to pin the server to")
    args = parser.parse_args(argv)
    if args.cores:
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    serve(args.spec, args.host, args.port)
    return 0


@dataclass
class ServerHandle:
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_in_subprocess(spec_path: Path, cores: list[int] | None, timeout_s: float = 120.0) -> Iterator[ServerHandle]:
    """Start the server in its own process, wait until it is ready, stop it on exit (SIGTERM, then SIGKILL)."""
    log = Path(spec_path).with_suffix(".server.log")
    cmd = [sys.executable, "-m", "bench.server", "--spec", str(spec_path), "--port", "0"]
    if cores:
        cmd += ["--cores", ",".join(map(str, cores))]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    try:
        port = _wait_ready(proc, log, timeout_s)
        yield ServerHandle(port, proc.pid, log)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY.encode()):
                return int(line.decode().split("port=")[1])
        if proc.poll() is not None:
            raise RuntimeError(f"model server exited with code {proc.returncode} before it was ready: {_tail(log)}")
    raise RuntimeError(f"model server not ready after {timeout_s:.0f} s: {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return f"{text[-chars:]} (log: {log})" if text else f"no output (log: {log})"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
