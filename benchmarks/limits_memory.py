"""Peak memory of mcbench at its documented size limits (docs/reliability-and-security.md, Limits).

    python -m benchmarks.limits_memory results     # load a results.json at the results-file limit
    python -m benchmarks.limits_memory text        # tokenise a --text-file at the text-file limits (MiniLM folder)
    python -m benchmarks.limits_memory input N     # `mcbench run --quick` of a dynamic-batch model at --input x=N,4
    python -m benchmarks.limits_memory dataset N [BATCH]  # `mcbench run --quick --no-load` of one variant on N
                                                   # samples of 4 float32 and a label (N: limit fills the dataset
                                                   # limit), BATCH samples an inference (1)
    python -m benchmarks.limits_memory timing      # `mcbench run --no-load` of one variant at [timing]'s limits
    python -m benchmarks.limits_memory resamples   # the gate's bootstrap at its most resamples
    python -m benchmarks.limits_memory remeasure N # `mcbench gate --remeasure N` of a linear model's run against itself
    python -m benchmarks.limits_memory load USERS [QUEUE]  # `mcbench load` of one closed-loop step of USERS users
                                                   # (a server of a linear model beside it, its peak printed apart;
                                                   # QUEUE: its --max-queue, 64 by default: past it, 503)
    python -m benchmarks.limits_memory worker P    # `mcbench load-worker --processes P` serving a local master
    python -m benchmarks.limits_memory seq-len N   # `mcbench run --quick --no-load` of MiniLM's FP32 variant at
                                                   # --seq-len N (limit: its max_position_embeddings)
    python -m benchmarks.limits_memory file KIND   # read and parse a file at its limit, and one byte over: KIND is
                                                   # run, budgets, profile or config (a Hugging Face config.json)
    python -m benchmarks.limits_memory metadata    # `load --url`: model metadata at its limit, and one byte over
    python -m benchmarks.limits_memory server CASE # one request to the model server: body (a JSON body at
                                                   # --max-body-mb), body-over, tensor (binary data at --max-elements),
                                                   # tensor-json, tensor-over

The run cases (input, dataset, timing, remeasure, load, worker, seq-len) run as a command whose whole process tree
(the run's measuring children and servers too) is sampled from /proc every 50 ms; the figure is the largest sum of
proportional set sizes (PSS) seen: resident memory, a page that several processes share counted once in all (the
load cases' model server, a process of the benchmark's own, is sampled apart and printed beside). The reading cases
(file, metadata, server) measure one process exactly: its peak resident memory (VmHWM) is reset once it has started
and imported what it needs (/proc/PID/clear_refs), so the figure is what the reading added, `growth`, beside its
resident memory before it, `before`. Prints one line per case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pss_bytes(pid: int) -> int:
    """A process's proportional set size: its resident pages, a page shared by k processes counted 1/k (so the
    libraries every child maps are not counted once per child, as a sum of RSS would)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory_bytes(pid: int) -> int:
    """The memory of `pid` and every process below it, now (the sum of their PSS)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_bytes(p)
        todo += [c for c, parent in parents.items() if parent == p]
    return total


def peak_of(command: list[str], cwd: Path, beside: int | None = None,
            until: subprocess.Popen | None = None) -> tuple[int, float, int]:
    """(peak bytes of the process tree, seconds, exit code) of `command`; with `beside` (a process that serves the
    command: a model server), its tree's peak over the same time is printed too, and not added. A command that runs
    until stopped (`load-worker`) is sent SIGTERM once `until` (its master) has exited."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = beside_peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory_bytes(proc.pid))
        beside_peak = max(beside_peak, tree_memory_bytes(beside) if beside else 0)
        if until is not None and until.poll() is not None:
            proc.terminate()
            proc.wait(timeout=60)
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    if proc.returncode:
        print(f"  exit {proc.returncode}: {err[-1] if err else ''}", file=sys.stderr)
    if beside:
        print(f"  beside it, process {beside} (the server) peaked at {beside_peak / 2**20:.0f} MiB", file=sys.stderr)
    return peak, time.perf_counter() - started, proc.returncode


def results_case(folder: Path) -> list[str]:
    """A results.json of one variant whose samples fill the results-file limit (floats: the costliest JSON)."""
    from mcbench.base.files import limit_of
    from mcbench.reports.schema import save_results
    from tests.test_report import sample_run

    path = folder / "results.json"
    save_results(sample_run(), path)
    data = json.loads(path.read_text())
    per = len(json.dumps([123.45, 123.45])) - len(json.dumps([123.45]))  # compact: the most floats a byte holds
    data["variants"][1]["latency"]["samples_us"] = [123.45] * ((limit_of("results file") - 200_000) // per)
    path.write_text(json.dumps(data))
    print(f"  results.json: {path.stat().st_size / 2**20:.1f} MiB", file=sys.stderr)
    return [sys.executable, "-c", f"from mcbench.reports.schema import load_results; load_results({str(path)!r})"]


def text_case(folder: Path) -> list[str]:
    """The text-file limits (16 MiB in 10,000 lines) tokenised for the MiniLM folder at the default 128 tokens."""
    from mcbench.base.files import limit_of
    from mcbench.optimizer.intake_hf import MAX_TEXT_LINES
    from tests.packaged_models import packaged_model

    words = ("the quick brown fox jumps over a lazy dog " * 400)
    line = words[: limit_of("text file") // MAX_TEXT_LINES - 1]
    path = folder / "texts.txt"
    path.write_text((line + "\n") * MAX_TEXT_LINES)
    model = packaged_model("minilm")
    code = ("from pathlib import Path; from mcbench.config import RunConfig; "
            "from mcbench.workload import user_workload; "
            f"user_workload(RunConfig(model={str(model)!r}, task='embedding', text_file=Path({str(path)!r})), "
            f"Path({str(folder / 'source')!r}))")
    return [sys.executable, "-c", code]


def input_case(folder: Path, elements: int) -> list[str]:
    """A quick run (no load test) of a dynamic-batch linear model at --input x=ELEMENTS/4,4."""
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(folder / "linear.onnx", batch="N")
    env_limit = f"MCBENCH_MAX_INPUT_ELEMENTS={elements}"
    return ["env", env_limit, sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--input",
            f"x={elements // 4},4", "--quick", "--no-load", "--no-cache", "--out", str(folder / "run")]


def dataset_case(folder: Path, samples: str, batch: int = 1) -> list[str]:
    """A quick run (no load test) of one variant of a dynamic-batch linear model on SAMPLES samples of 4 float32 with
    an int64 label each (24 bytes a sample); `limit`: as many as the dataset limit holds, x and labels together.
    BATCH samples an inference (`--input x=BATCH,4`): the copies the run holds are the same at any batch, the
    inferences are BATCH times fewer (one a sample at the limit: 537 s here, near the measuring child's 900 s)."""
    import numpy as np

    from mcbench.bench.datasets import max_dataset_bytes
    from tests.conftest import make_linear_onnx

    count = max_dataset_bytes() // (4 * 4 + 8) if samples == "limit" else int(samples)
    model = make_linear_onnx(folder / "linear.onnx", batch="N")
    x = np.random.default_rng(0).standard_normal((count, 4), dtype=np.float32)
    labels = np.arange(count, dtype=np.int64) % 3
    np.savez(folder / "data.npz", x=x, labels=labels)
    print(f"  dataset: {count:,} samples, {x.nbytes / 2**20:.0f} MiB of x, {labels.nbytes / 2**20:.0f} MiB of labels "
          f"({(x.nbytes + labels.nbytes) / 2**20:.0f} MiB, the limit {max_dataset_bytes() / 2**20:.0f} MiB)",
          file=sys.stderr)
    del x, labels
    return [sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--input", f"x={batch},4", "--dataset",
            str(folder / "data.npz"),
            "--variants", "ort-fp32", "--quick", "--no-load", "--no-cache", "--out", str(folder / "run")]


def timing_case(folder: Path) -> list[str]:
    """A run (no load test) of one variant of the linear model at the [timing] limits: 100,000 warm-up runs and at
    least 1,000,000 timed ones, every sample kept in results.json."""
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(folder / "linear.onnx")
    return [sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--variants", "ort-fp32", "--no-load",
            "--no-cache", "--warmup-runs", "100000", "--min-runs", "1000000", "--min-seconds", "0.1",
            "--out", str(folder / "run")]


def remeasure_case(folder: Path, rounds: int) -> list[str]:
    """`mcbench gate --remeasure ROUNDS` of a quick run of one linear-model variant against itself: the rounds cost
    what the model's calls cost, so the fastest model reaches the bound soonest (a round lasts 40 ms at least)."""
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(folder / "linear.onnx")
    subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--variants", "ort-fp32",
                    "--quick", "--no-load", "--no-cache", "--out", str(folder / "run")], cwd=ROOT, check=True,
                   capture_output=True)
    (folder / "budgets.toml").write_text('[[budget]]\nvariant = "*"\np50_ms = 100\n')
    results = str(folder / "run" / "results.json")
    return [sys.executable, "-m", "mcbench.cli", "gate", results, "--budgets", str(folder / "budgets.toml"),
            "--baseline", results, "--remeasure", str(rounds), "--markdown", str(folder / "summary.md")]


def served(folder: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """`mcbench serve` of a linear model on a free port, ready (the process, its URL); the caller stops it."""
    import socket
    import urllib.request

    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(folder / "linear.onnx")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "serve", str(model), "--port", str(port), *extra],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=1):
                return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


def load_case(folder: Path, url: str, users: int) -> list[str]:
    """`mcbench load` of one closed-loop step of USERS users (10 s) and one open-loop step at 10 req/s."""
    return [sys.executable, "-m", "mcbench.cli", "load", "--url", url, "--model", "linear", "--concurrency",
            str(users), "--step-seconds", "10", "--max-step-seconds", "10", "--rates", "10",
            "--out", str(folder / "load")]


def worker_case(folder: Path, url: str, processes: int) -> tuple[subprocess.Popen, list[str]]:
    """`mcbench load-worker --processes P` for a master (`mcbench load --workers P`, started here, one step of 8
    users a process): the master, and the worker's command to measure."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    master = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "load", "--url", url, "--model", "linear",
                               "--concurrency", str(8 * processes), "--step-seconds", "10", "--max-step-seconds",
                               "10", "--rates", "10", "--workers", str(processes), "--master-bind-host",
                               "127.0.0.1", "--master-bind-port", str(port), "--out", str(folder / "load")],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return master, [sys.executable, "-m", "mcbench.cli", "load-worker", "--master", f"127.0.0.1:{port}",
                    "--processes", str(processes)]


def seq_len_case(folder: Path, length: str) -> list[str]:
    """A quick run (no load test) of the MiniLM folder's FP32 variant at --seq-len LENGTH (`limit`: the config's
    max_position_embeddings)."""
    from tests.packaged_models import packaged_model

    model = packaged_model("minilm")
    if length == "limit":
        length = str(json.loads((model / "config.json").read_text())["max_position_embeddings"])
    return [sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--task", "embedding", "--seq-len",
            length, "--variants", "ort-fp32", "--quick", "--no-load", "--no-cache", "--out", str(folder / "run")]


def resamples_case() -> None:
    """The gate's bootstrap interval at MAX_RESAMPLES over two series of the most samples it keeps."""
    from mcbench.reports.gate_budgets import MAX_RESAMPLES
    from mcbench.reports.gate_stats import MAX_BOOTSTRAP_SAMPLES

    setup = ("import random\nfrom mcbench.reports.gate_stats import bootstrap_ratio_ci\n"
             f"base = [random.gauss(10, 1) for _ in range({MAX_BOOTSTRAP_SAMPLES * 10})]\ncand = list(base)")
    got = growth_of(setup, f"bootstrap_ratio_ci(base, cand, 0.95, {MAX_RESAMPLES}, 0)")
    print(f"resamples {MAX_RESAMPLES:,} over {MAX_BOOTSTRAP_SAMPLES * 10:,} samples a series: growth "
          f"{got['growth'] / 2**20:.1f} MiB over {got['before'] / 2**20:.0f} MiB; {got['error']}")


GROWTH = """
import json, sys, traceback

def status_kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))

SETUP
with open("/proc/self/clear_refs", "w") as refs:  # the peak (VmHWM) starts again from now
    refs.write("5")
before, error = status_kb("VmRSS"), None
try:
    WORK
except Exception as exc:
    error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
print(json.dumps({"before": before * 1024, "growth": (status_kb("VmHWM") - before) * 1024, "error": error}))
"""


def growth_of(setup: str, work: str) -> dict:
    """{before, growth, error} of a Python process that runs `setup`, then `work` (see GROWTH)."""
    code = GROWTH.replace("SETUP", setup).replace("WORK", work)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def densest(limit: int, opening: str, item: str, closing: str) -> str:
    """Text of exactly `limit` bytes: `opening`, then `item` repeated, then `closing` (padded with spaces)."""
    count = (limit - len(opening) - len(closing)) // len(item)
    text = opening + item * count + closing
    return text[:-1] + " " * (limit - len(text)) + text[-1]


FILES = {  # kind: (the reader's limit kind, the file's text opening and closing, the code that reads it)
    # the densest objects a byte makes: an empty inline table or JSON object every 3 bytes (24 MiB parsed a MiB)
    "run": ("run file", ("a = [", "{},", "{}]\n"), "from mcbench.config_file import read_toml as read",
            "read(PATH)"),
    "budgets": ("budgets file", ("a = [", "{},", "{}]\n"),
                "from mcbench.reports.gate_budgets import load_budgets as read", "read(PATH)"),
    "profile": ("profile", ("a = [", "{},", "{}]\n"), "from mcbench.optimizer.profiles import load_profile as read",
                "read(PATH)"),
    "config": ("config", ('{"a": [', "{},", "{}]}"), "from mcbench.optimizer.intake_hf import inspect_folder as read",
               "read(PATH.parent, 'auto')"),
}


def file_case(folder: Path, kind: str) -> None:
    """A file of the kind filled to its limit with the densest objects a parser makes, then one byte longer."""
    from mcbench.base.files import limit_of

    limit_kind, (opening, item, closing), setup, work = FILES[kind]
    limit = limit_of(limit_kind)
    path = folder / ("config.json" if kind == "config" else f"{kind}.toml")
    for size in (limit, limit + 1):
        path.write_text(densest(size, opening, item, closing))
        got = growth_of(f"from pathlib import Path\n{setup}\nPATH = Path({str(path)!r})", work)
        print(f"file {kind} at {size:,} bytes: growth {got['growth'] / 2**20:.1f} MiB over "
              f"{got['before'] / 2**20:.0f} MiB; {got['error']}")


def metadata_case(folder: Path) -> None:
    """`load --url`'s metadata read: a server answering with exactly the limit's bytes of JSON objects, then one
    byte more (served from a thread of this process: only the reading process is measured)."""
    import http.server
    import threading

    from mcbench.remote_load import MAX_METADATA_BYTES

    class Handler(http.server.BaseHTTPRequestHandler):
        body = b""

        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    setup = ("from mcbench.remote_load import model_inputs\nfrom mcbench.base.errors import UserError\n"
             "import numpy, onnx")
    try:
        for size in (MAX_METADATA_BYTES, MAX_METADATA_BYTES + 1):
            Handler.body = densest(size, "[", "{},", "{}]").encode()
            got = growth_of(setup, f"model_inputs({url!r}, 'm', {{}}, UserError)")
            print(f"metadata at {size:,} bytes: growth {got['growth'] / 2**20:.1f} MiB over "
                  f"{got['before'] / 2**20:.0f} MiB; {got['error']}")
    finally:
        server.shutdown()


def reduce_model(folder: Path, elements: int) -> Path:
    """An ONNX model of one input [1, ELEMENTS] float32 whose one output is its sum [1, 1]: a small answer."""
    from onnx import TensorProto, helper

    from tests.conftest import save_graph

    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1)], "sum",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, elements])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    return save_graph(graph, folder / f"sum{elements}.onnx")


def server_case(folder: Path, case: str) -> None:
    """One request to `python -m mcbench.bench.server_cli` at a limit (or just past it); the server's own growth."""
    import numpy as np

    from mcbench.bench.guards import ServerLimits
    from mcbench.bench.launcher import serve_in_subprocess
    from mcbench.bench.protocol import encode_infer_request
    from mcbench.optimizer.artifact import Artifact, InputSpec
    from mcbench.optimizer.targets import Target

    body_limit, element_limit = ServerLimits().max_body_bytes, ServerLimits().max_elements
    value = "0.5,"  # the densest float JSON has: a Python float object each 4 bytes of body
    json_elements = (body_limit - 100) // len(value)
    elements, extra, binary = {
        "body": (json_elements, [], False), "body-over": (json_elements, [], False),
        "tensor": (element_limit, ["--max-body-mb", "65"], True),
        "tensor-json": (element_limit, ["--max-body-mb", str(element_limit * len(value) // 2**20 + 1)], False),
        "tensor-over": (element_limit + 1, ["--max-body-mb", "65"], True)}[case]
    artifact = Artifact(reduce_model(folder, elements), "onnx", (InputSpec("x", (1, elements)),))
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"name": "m", "artifact": artifact.to_dict(),
                                "target": Target("onnxruntime", threads=1).to_dict()}))
    if binary:
        body, headers = encode_infer_request({"x": np.full((1, elements), 0.5, np.float32)})
    else:
        opening = '{"inputs":[{"name":"x","shape":[1,' + str(elements) + '],"datatype":"FP32","data":['
        body = (opening + value * (elements - 1) + '0.5]}]}').encode()
        headers = {"Content-Type": "application/json"}
        if case == "body-over":
            body += b" " * (body_limit + 1 - len(body))
    with serve_in_subprocess(spec, cores=None, timeout_s=600, extra=extra) as server:
        answer, growth, before = _one_request(server, body, headers, not case.endswith("-over"))
    print(f"server {case}: {elements:,} elements, body {len(body):,} bytes: growth {growth / 2**20:.1f} MiB over "
          f"{before / 2**20:.0f} MiB; answer {answer}")


def _one_request(server, body: bytes, headers: dict[str, str], send_body: bool) -> tuple[str, int, int]:
    """(the answer's status and first bytes, the server's peak RSS growth, its RSS before) of one request; without
    `send_body` only its headers are sent (Content-Length says the body's size), as a refusal must come first."""
    import http.client

    status = Path(f"/proc/{server.pid}/status")

    def kb(key: str) -> int:
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith(key + ":"))

    Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    before = kb("VmRSS")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    connection.putrequest("POST", "/v2/models/m/infer")
    for key, value in {**headers, "Content-Length": str(len(body))}.items():
        connection.putheader(key, value)
    connection.endheaders(body if send_body else None)
    response = connection.getresponse()
    answer = f"{response.status} {response.read(200)!r}"
    connection.close()
    return answer, (kb("VmHWM") - before) * 1024, before * 1024


def main(argv: list[str]) -> None:
    case = argv[0]
    with tempfile.TemporaryDirectory(prefix="mcbench-limits-") as tmp:
        folder = Path(tmp)
        readers = {"file": lambda: file_case(folder, argv[1]), "metadata": lambda: metadata_case(folder),
                   "resamples": resamples_case,
                   "server": lambda: server_case(folder, argv[1])}
        if case in readers:
            readers[case]()
            return
        if case in ("load", "worker"):
            served_case(folder, case, int(argv[1]), argv)
            return
        command = {"results": lambda: results_case(folder), "text": lambda: text_case(folder),
                   "remeasure": lambda: remeasure_case(folder, int(argv[1])),
                   "seq-len": lambda: seq_len_case(folder, argv[1]),
                   "input": lambda: input_case(folder, int(argv[1])),
                   "dataset": lambda: dataset_case(folder, argv[1], int((argv[2:] or [1])[0])),
                   "timing": lambda: timing_case(folder)}[case]()
        peak, seconds, code = peak_of(command, ROOT)
        results = folder / "run" / "results.json"
        if results.exists():
            variants = json.loads(results.read_text())["variants"]
            status = ", ".join(f"{v['name']} {v['status']}{': ' + v['error'][:80] if v.get('error') else ''}"
                               for v in variants)
            print(f"  results.json: {results.stat().st_size / 2**20:.1f} MiB; {status}", file=sys.stderr)
        if (folder / "summary.md").exists():  # the gate's: how many rounds it re-measured
            said = [line for line in (folder / "summary.md").read_text().splitlines() if "re-measured" in line]
            print(f"  summary.md: {said[0][:300] if said else 'no re-measurement said'}", file=sys.stderr)
    print(f"{' '.join(argv)}: peak {peak / 2**20:.0f} MiB, {seconds:.0f} s, exit {code}")


def say_steps(results: Path) -> None:
    """What each load step of a results.json did: its users (or rate), requests, errors and throughput."""
    if not results.exists():
        print("  no results.json", file=sys.stderr)
        return
    for variant in json.loads(results.read_text())["variants"]:
        load = variant.get("load") or {}
        for step in load.get("steps", []) + load.get("open_steps", []):
            print(f"  {variant['name']} {step['mode']} step: {step['users']} users, {step['requests']} requests, "
                  f"errors {step.get('errors') or {}}, {step['throughput_rps']:.0f} req/s; "
                  f"{load.get('locust_workers', 0)} Locust workers", file=sys.stderr)


def served_case(folder: Path, case: str, count: int, argv: list[str]) -> None:
    """The load cases: a model server beside the measured command (its own peak printed apart), and for `worker`
    the master the workers join."""
    queue = argv[2:3] if case == "load" else []  # load USERS QUEUE: the server lets QUEUE requests wait (64)
    server, url = served(folder, ["--max-queue", *queue] if queue else [])
    master = None
    try:
        if case == "load":
            command = load_case(folder, url, count)
        else:
            master, command = worker_case(folder, url, count)
        peak, seconds, code = peak_of(command, ROOT, beside=server.pid, until=master)
        if master is not None:
            print(f"  the master exited {master.wait(timeout=120)}", file=sys.stderr)
        say_steps(folder / "load" / "results.json")
    finally:
        for process in (master, server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    print(f"{' '.join(argv)}: peak {peak / 2**20:.0f} MiB, {seconds:.0f} s, exit {code}")


if __name__ == "__main__":
    main(sys.argv[1:])
