"""Load from several machines: `mcbench load --workers N` as Locust's master, `mcbench load-worker` processes
as its workers. Here the "machines" are separate processes on 127.0.0.1: the workers are started the way
another machine would start them, with nothing but the master's address (no model, no request bodies,
no settings), so everything they send and every record that comes back goes over Locust's messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.launcher import serve_in_subprocess
from mcbench.bench.load import Endpoint, Master, Records, Requests, free_port, run_load, step_from_records
from mcbench.bench.load_plan import LoadPlan
from mcbench.cli import UsageError, main
from mcbench.load_worker import parse_master
from mcbench.reports.schema import load_results
from tests.test_load import linear, split_cores, write_spec

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ("worker-a", "worker-b")


def start_load_worker(port: int, name: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCBENCH_")}  # nothing but the master's address
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "mcbench.cli", "load-worker", "--master", f"127.0.0.1:{port}",
                                 "--name", name], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A model server and two `mcbench load-worker`s that serve one master after another, as on other machines."""
    tmp = tmp_path_factory.mktemp("farm")
    server_cores, _ = split_cores()
    port = free_port()
    with serve_in_subprocess(write_spec(tmp), server_cores) as server:
        logs = [tmp / f"{name}.log" for name in WORKERS]
        workers = [start_load_worker(port, name, log) for name, log in zip(WORKERS, logs, strict=True)]
        try:
            yield server, port, logs
        finally:
            codes = [stop(w) for w in workers]
        assert codes == [0, 0], [log.read_text() for log in logs]  # SIGTERM is how a worker is meant to end


@pytest.mark.slow
def test_mcbench_load_counts_the_requests_of_both_workers(farm, tmp_path: Path) -> None:
    server, port, logs = farm
    out = tmp_path / "out"
    code = main(["load", "--url", server.url, "--model", "m", "--out", str(out), "--concurrency", "2", "--rates", "40",
                 "--step-seconds", "3", "--max-step-seconds", "3", "--workers", "2",
                 "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--workers-wait", "120"])
    variant = load_results(out / "results.json").variants[0]
    assert code == 0 and variant.status == "ok", variant.error
    load = variant.load
    assert load.locust_workers == 2 and load.locust_master == f"127.0.0.1:{port}"
    steps = load.steps + load.open_steps
    assert [s.mode for s in steps] == ["closed", "open"]
    for step in steps:
        assert step.latency is not None and step.latency.count > 0 and step.latency.p99_ms >= step.latency.p50_ms > 0
        assert step.failures == 0  # the workers sent the master's request bodies: a wrong body would be an HTTP 400
        assert set(step.worker_requests) == set(WORKERS) and all(n > 0 for n in step.worker_requests.values())
        assert sum(step.worker_requests.values()) == step.requests  # the step's figures are over both workers' rows
    # every row came back to the master: as many as Locust's own count, which the workers reported separately
    assert load.recorded_requests == load.locust_total_requests > 0
    work = out / "work"
    for tag in ("closed_2_run0", "open_40_run0"):
        files = sorted(work.glob(f"{tag}.samples.*.npz"))
        assert [str(np.load(f)["worker"]) for f in files] == list(WORKERS)  # the master wrote one file a worker
    # each worker process served one master and exited; its load-worker started the next for the next step
    assert all(log.read_text().count(" ended") >= 1 for log in logs)


@pytest.mark.slow
def test_workers_get_the_offline_outputs_and_check_answers(farm, tmp_path: Path) -> None:
    """The same workers serve a second session; the expected outputs travel to them and answers are checked."""
    server, port, _ = farm
    feeds = [{"x": np.full((1, 4), i, np.float32)} for i in range(3)]
    expected = [[linear(f["x"])] for f in feeds]
    expected[2] = [expected[2][0] + 1.0]  # the "offline output" for request 2 is wrong on purpose
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, check_every=1)
    result = run_load(Endpoint(server.url, "m"), Requests.encode(feeds, expected), [2], [], rules, None, None, 0,
                      tmp_path / "load", workers=2, master=Master("127.0.0.1", port, 120))
    step = result.steps[0]
    assert step.failures == 0 and all(step.worker_requests[name] > 0 for name in WORKERS)
    assert result.checked == step.checked > 0
    assert 0 < result.mismatches < result.checked  # every third request's expected answer was wrong


class Metadata(BaseHTTPRequestHandler):
    """A stand-in KServe v2 server: its model metadata is all `mcbench load` reads before the load starts."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def test_workers_that_never_connect_fail_the_load_test_in_one_line(tmp_path: Path, capsys) -> None:
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    port = free_port()
    began = time.monotonic()
    try:
        code = main(["load", "--url", f"http://127.0.0.1:{stand_in.server_port}", "--model", "m", "--quick",
                     "--out", str(tmp_path / "out"), "--workers", "2", "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(port), "--workers-wait", "2"])
    finally:
        stand_in.shutdown()
    assert time.monotonic() - began < 120  # the master gave up after its wait: no hang (a generous bound)
    message = (f"0 of 2 Locust workers connected within 2 s; start them with "
               f"`mcbench load-worker --master 127.0.0.1:{port}` (the port must be reachable from their machines)")
    variant = load_results(tmp_path / "out" / "results.json").variants[0]
    assert code == 1 and variant.status == "failed" and variant.error == f"load test: {message}"
    captured = capsys.readouterr()
    assert f"m: load test: {message}\n" in captured.out
    # the stand-in answers no POST (501): neither request form is taken, and the load goes on to record that
    assert "the server answered neither form of a first request (binary data: HTTP 501" in captured.err


@pytest.mark.parametrize(("text", "expected"), [("host", ("host", 5557)), ("10.0.0.7:6000", ("10.0.0.7", 6000)),
                                                ("[::1]:7000", ("::1", 7000)), ("[fe80::2]", ("fe80::2", 5557))])
def test_master_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_master(text) == expected


@pytest.mark.parametrize("text", ["", ":5557", "host:0", "host:70000", "host:port", "[::1]:x"])
def test_bad_master_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--master must be HOST or HOST:PORT"):
        parse_master(text)


def test_bad_distributed_flags_are_exit_2(capsys) -> None:
    base = ["load", "--url", "http://127.0.0.1:9", "--model", "m"]
    assert main([*base, "--workers", "2", "--locust-workers", "2"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main([*base, "--workers", "0"]) == 2
    assert main([*base, "--workers", "1", "--master-bind-port", "0"]) == 2
    assert main(["load-worker", "--master", "host:99999"]) == 2
    assert main(["load-worker", "--master", "host", "--processes", "0"]) == 2


def rows(n: int, start: float = 0.0) -> np.ndarray:
    return np.array([(start + i / n, 0.002, 200, 0, 0) for i in range(n)], dtype=float).reshape(-1, 5)


def named(a: np.ndarray, name: str) -> Records:
    return Records.from_rows(a, [""], workers=[name])


def test_a_step_counts_requests_by_worker_across_runs() -> None:
    """Rows keep their worker's name through merging (runs of one step, files of one run) into the step."""
    run0 = named(rows(100), "a").merged(named(rows(40), "b"))
    run1 = named(rows(30), "b").merged(named(rows(0), "c"))  # c had no user this run
    both = run0.merged(run1, shift_s=5.0)
    rules = LoadPlan(step_seconds=2, warmup_s=0.5, max_step_seconds=4)
    step = step_from_records(both, [(0.0, 1.0), (5.0, 6.0)], 2, "closed", rules)
    assert step.worker_requests == {"a": 100, "b": 70, "c": 0} and step.requests == 170
    a = rows(10)
    lone = Records.from_rows(a, [""])
    assert step_from_records(lone, [(0.0, 1.0)], 1, "closed", rules).worker_requests == {}  # one unnamed process


def test_the_deploy_examples_run_mcbench_commands_that_parse() -> None:
    """The compose file and the Kubernetes manifests start `mcbench load --workers` and `mcbench load-worker`
    with arguments this mcbench accepts, and the workers point at the master's service and port."""
    yaml = pytest.importorskip("yaml")
    from mcbench.cli import build_parser

    parser = build_parser()
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]
    manifests = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]
    containers = [c for d in manifests if d["kind"] in ("Job", "Deployment")
                  for c in d["spec"]["template"]["spec"]["containers"]]
    commands = [compose["master"]["command"], compose["worker"]["command"], *[c["command"] for c in containers]]
    parsed = [parser.parse_args(c[1:]) for c in commands if c[0] == "mcbench"]
    masters = [a for a in parsed if a.command == "load"]
    workers = [a for a in parsed if a.command == "load-worker"]
    assert len(masters) == 2 and len(workers) == 2 and all(a.workers for a in masters)
    assert parse_master(workers[0].master) == ("master", masters[0].master_bind_port)
    assert compose["worker"]["deploy"]["replicas"] == masters[0].workers
    service = next(d for d in manifests if d["kind"] == "Service")
    deployment = next(d for d in manifests if d["kind"] == "Deployment")
    assert parse_master(workers[1].master) == (service["metadata"]["name"], service["spec"]["ports"][0]
                                                            ["port"])
    assert deployment["spec"]["replicas"] == masters[1].workers
