"""`mcbench load --url URL --model NAME`: the same two sweeps and capacity figures against any KServe v2 server.

Triton, OpenVINO Model Server, KServe or `mcbench serve`: the inputs come from the server's own model
metadata (GET /v2/models/NAME), filled with generated values; answers are not checked (there is no
offline output to check them against).
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcbench.base.errors import UsageError

if TYPE_CHECKING:
    from mcbench.reports.schema import RunResult


def add_sweep_arguments(parser: argparse.ArgumentParser, command: str = "load") -> None:
    """The load plan's flags that `command` takes (the sweeps and the capacity figures), from the schema."""
    from mcbench.config import LoadPlan
    from mcbench.config_flags import add_flags

    add_flags(parser, command, LoadPlan, title="load test: sweeps and capacity")


def plan_from_args(args: argparse.Namespace, base):
    """`base` (a LoadPlan) with the sweep flags of `mcbench load` applied; a bad value: a UsageError naming the flag."""
    from mcbench.config import ConfigError, LoadPlan, apply
    from mcbench.config_flags import flag_error, flag_values, sweep_rules

    flags = sweep_rules(flag_values(args, "load", LoadPlan), vars(base))
    try:
        return apply(base, flags)
    except ConfigError as exc:
        raise flag_error(exc, LoadPlan, flags) from None


def add_parser(sub) -> None:
    load = sub.add_parser("load", help="load-test any KServe v2 server: both sweeps, capacity figures",
                          description="Load-test a model on any KServe v2 HTTP server.")
    load.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    load.add_argument("--model", required=True, help="the model's name on that server")
    load.add_argument("--token", help="bearer token to send (or set MCBENCH_SERVER_TOKEN)")
    load.add_argument("--out", type=Path, help="folder for results.json and Locust's files (default: runs/...)")
    load.add_argument("--quick", action="store_true", help="short steps: a first look in under a minute")
    load.add_argument("--cores", help="comma-separated CPU cores for Locust (default: all)")
    load.add_argument("--const", action="append", default=[], metavar="NAME=VALUE[:DTYPE]",
                      help="the value of a 0-d or constant input, as for mcbench run (a 0-d integer input needs one)")
    add_sweep_arguments(load)
    several = load.add_argument_group("load from several machines (see `mcbench load-worker`)")
    several.add_argument("--workers", type=int, metavar="N",
                         help="run only Locust's master here and wait for N `mcbench load-worker` processes, on "
                              "this or other machines, to generate the load")
    several.add_argument("--master-bind-host", default="*", metavar="HOST",
                         help="the interface the master listens on for its workers (default: all)")
    several.add_argument("--master-bind-port", type=int, default=5557, metavar="PORT",
                         help="the port it listens on (default 5557, Locust's)")
    several.add_argument("--workers-wait", type=float, default=120.0, metavar="SECONDS",
                         help="how long each step waits for the workers to connect (default 120); past it the "
                              "load test fails with the count that came")


def master_from_args(args: argparse.Namespace):
    """The `Master` that --workers asks for, or None (Locust runs on this machine)."""
    from mcbench.bench.load import Master

    if args.workers is None:
        return None
    if args.workers < 1:
        raise UsageError(f"load: --workers must be at least 1, got {args.workers}")
    if args.locust_workers:
        raise UsageError("load: --workers (on other machines) and --locust-workers (on this one) exclude each other")
    if not 0 < args.master_bind_port < 65536:
        raise UsageError(f"load: --master-bind-port must be 1 to 65535, got {args.master_bind_port}")
    if not args.workers_wait > 0:
        raise UsageError(f"load: --workers-wait must be positive, got {args.workers_wait:g}")
    check_listen(args.master_bind_host, args.master_bind_port)
    return Master(args.master_bind_host, args.master_bind_port, args.workers_wait)


def check_listen(host: str, port: int) -> None:
    """Bind the master's address once, before the test: a port in use or an address not on this machine is one
    line now, not Locust's traceback in every step."""
    import socket

    address = "0.0.0.0" if host in ("*", "") else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
    except (OSError, OverflowError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"load: the master cannot listen on {host}:{port} ({why}); choose another "
                         "--master-bind-host or --master-bind-port") from None


def usable_cores(text: str | None, flag: str) -> list[int]:
    """`--cores 0,2` as a list, each one a core this process may run on; empty text: none given."""
    allowed = sorted(os.sched_getaffinity(0))
    if not text:
        return []
    try:
        cores = [int(c) for c in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text[:40]!r}") from None
    wrong = [c for c in cores if c not in allowed]
    if wrong:
        raise UsageError(f"{flag}: core {wrong[0]} is not one this machine lets mcbench use "
                         f"({', '.join(map(str, allowed))})")
    return cores


def model_inputs(url: str, model: str, headers: dict[str, str],
                 consts: list[str] | None = None) -> dict[str, np.ndarray]:
    """Generated inputs of the shapes and types the server's metadata declares (dynamic dimensions as 1); an input
    `consts` names is filled with its value, and a 0-d integer input (a setting that may select a branch, such as a
    sample rate) is never random."""
    from mcbench.base.parsing import json_data
    from mcbench.optimizer.artifact import InputSpec
    from mcbench.optimizer.intake import constant_specs, parse_constants

    request = urllib.request.Request(f"{url.rstrip('/')}/v2/models/{model}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read(MAX_METADATA_BYTES + 1)
    except urllib.error.HTTPError as err:
        raise UsageError(f"load: {url} answered {err.code} for model {model!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UsageError(f"load: cannot read model metadata from {url}: {getattr(exc, 'reason', exc)}") from None
    source = f"load: the metadata of {model!r} at {url}"
    if len(raw) > MAX_METADATA_BYTES:
        raise UsageError(f"{source}: more than {MAX_METADATA_BYTES} bytes")
    meta = json_data(raw, source)
    entries = meta.get("inputs") if isinstance(meta, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{source}: lists no inputs, which mcbench makes its requests from (MLServer lists "
                         "them only where the model's model-settings.json declares them)")
    rng = np.random.default_rng(0)
    specs = []
    for entry in entries:
        name, dtype, shape = _metadata_input(entry, source)
        integer = not dtype.startswith("float")
        specs.append(InputSpec(name, tuple(shape), dtype, 0, 10, selects_branch=integer and not shape))
    return {s.name: s.sample(rng) for s in constant_specs(tuple(specs), parse_constants(consts or []))}


MAX_METADATA_BYTES = 2**20


def _metadata_input(entry: object, source: str) -> tuple[str, str, list[int]]:
    """(name, dtype, shape with dynamic dimensions as 1) of one metadata input, within the local models' limits."""
    from mcbench.bench.protocol import FROM_V2
    from mcbench.optimizer.intake import MAX_INPUT_ELEMENTS_ENV, max_input_elements

    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise UsageError(f"{source}: an input is not an object with a name")
    name, dims = entry["name"][:80], entry.get("shape")
    dtype = FROM_V2.get(entry.get("datatype")) if isinstance(entry.get("datatype"), str) else None
    if dtype is None:
        raise UsageError(f"load: input {name!r} has datatype {str(entry.get('datatype'))[:40]!r}, "
                         "which mcbench cannot generate")
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1
                                             for d in dims):
        raise UsageError(f"{source}: input {name!r} has shape {str(dims)[:60]}, not a list of dimensions "
                         "(whole numbers, -1 for a dynamic one)")
    shape = [d if d > 0 else 1 for d in dims]
    elements, limit = math.prod(shape), max_input_elements()
    if elements > limit:
        raise UsageError(f"{source}: input {name!r} of shape {dims} is {elements} elements, over the limit of "
                         f"{limit} elements per input (set {MAX_INPUT_ELEMENTS_ENV} to raise it)")
    return name, dtype, shape


def request_form(url: str, model: str, feeds: dict[str, np.ndarray], headers: dict[str, str], answers: str,
                 say) -> str:
    """How the load's requests carry their tensors: "binary" (the KServe v2 binary tensor data extension) where the
    server answers a first such request with a 2xx, else "json" where it answers that form (MLServer, for one, reads
    no binary data in requests). A server that answers neither keeps "binary": the load test records its errors."""
    from mcbench.bench.protocol import encode_infer_request

    refused = []
    for form in ("binary", "json"):
        body, form_headers = encode_infer_request(feeds, binary=form == "binary", binary_answer=answers == "binary")
        request = urllib.request.Request(f"{url.rstrip('/')}/v2/models/{model}/infer", data=body, method="POST",
                                         headers={**form_headers, **headers})
        status, text = _answer(request)
        if 200 <= status < 300:
            if refused:
                say(f"the server refused tensors as binary data ({refused[0]}): requests carry JSON")
            return form
        refused.append((f"HTTP {status}" if status else "no answer") + (f": {text}" if text else ""))
    say(f"the server answered neither form of a first request (binary data: {refused[0]}; JSON: {refused[1]}); "
        "the load test goes on and records the errors")
    return "binary"


def _answer(request: urllib.request.Request) -> tuple[int, str]:
    """The status of one request (0 where none came) and the start of its body or error, on one line."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as err:
        try:
            return err.code, " ".join(err.read(200).decode(errors="replace").split())[:160]
        except (OSError, http.client.HTTPException):
            return err.code, ""
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, " ".join(f"{type(reason).__name__}: {reason}".split())[:160]


def cmd_load(args: argparse.Namespace) -> int:
    from mcbench import api
    from mcbench.config import QUICK_LOAD, LoadPlan

    plan = plan_from_args(args, QUICK_LOAD if args.quick else LoadPlan())
    master = master_from_args(args)
    out = args.out or Path("runs") / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-load-{args.model}"
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    run = api.load(args.url, args.model, out=out, plan=plan, token=args.token, consts=args.const,
                   cores=usable_cores(args.cores, "load: --cores"), master=master, workers=args.workers,
                   progress=say)
    result = run.variants[0]
    print(load_table(result))
    print(f"\nresults: {out / 'results.json'}")
    return 0 if result.status == "ok" else 1


def load_url(url: str, model: str, plan, out: Path, headers: dict[str, str], consts: list[str],
             cores: list[int], master, workers: int | None, say) -> RunResult:
    """Both sweeps against the server's model, saved as `out`/results.json with one variant (the model at the URL):
    what `mcbench load` and `mcbench.load` do. A load test that fails is that variant's error, not an exception."""
    from mcbench.base.settings_json import to_json
    from mcbench.bench.environment import environment
    from mcbench.bench.load import Endpoint, LoadError, Requests, run_load
    from mcbench.load_stage import capacity_of, plan_text, step_rules
    from mcbench.reports.schema import RunResult, VariantResult, save_results

    feeds = model_inputs(url, model, headers, consts)
    if (out / "results.json").exists():
        raise UsageError(f"{out} already holds a results.json; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    rules = step_rules(plan, plan.budget_p99_ms, check_answers=False)  # no offline outputs to check against
    say(f"load test of {model} at {url}: {plan_text(plan, plan.budget_p99_ms)}")
    if master:
        say(f"each step waits up to {master.wait_s:g} s for {workers} Locust workers: on each load machine run "
            f"`mcbench load-worker --master {master.address}` (they must reach {url} too)")
    result = VariantResult(model, "remote", [], status="ok", settings={"url": url})
    try:
        inputs = request_form(url, model, feeds, headers, plan.answers, say)
        requests = Requests.encode([feeds], answers=plan.answers, inputs=inputs)
        result.load = run_load(Endpoint(url.rstrip("/"), model, headers), requests,
                               list(plan.users), plan.open_rates, rules, None if master else
                               (cores or sorted(os.sched_getaffinity(0))), None, 0, out / "work",
                               workers=workers if master else plan.locust_workers, say=say, master=master)
        result.capacity = capacity_of(result.load, plan, None)
    except LoadError as exc:
        result.status, result.error = "failed", f"load test: {exc}"
    run = RunResult(run_id=out.name, created=datetime.now(UTC).isoformat(timespec="seconds"),
                    model={"name": model, "url": url}, config={"load": to_json(plan)},
                    environment=environment(), variants=[result])
    save_results(run, out / "results.json")
    return run


def level_text(step) -> str:
    return f"{step.offered_rps:g}/s" if step.mode == "open" else f"{step.users} users"


def load_table(result) -> str:
    """One line a step, then the capacity figures: what a capacity planner reads first."""
    from mcbench.bench.load import ENCODING_SHARE, encoding_share

    if result.load is None:
        return f"{result.name}: {result.error}"
    steps = result.load.steps + result.load.open_steps
    timed = any(s.server_timed for s in steps)  # the server sent Server-Timing: its share of the p50 beside it
    nan = float("nan")
    lines = [f"{'sweep':<7}{'level':>10}{'offered':>10}{'achieved':>10}{'p50 ms':>9}"
             + (f"{'server':>8}{'model':>8}" if timed else "")
             + f"{'p99 ms':>9}{'p99.9 ms':>10}{'errors':>8}{'gen CPU':>9}{'late p99':>9}  stable"]
    for s in steps:
        level = level_text(s)
        lat = s.latency
        split = f"{s.server_p50_ms or nan:>8.2f}{s.server_model_p50_ms or nan:>8.2f}" if timed else ""
        late = "-" if s.send_lag_p99_ms is None else f"{s.send_lag_p99_ms:.2f}"
        lines.append(f"{s.mode:<7}{level:>10}{(s.offered_rps or 0):>10.0f}{s.throughput_rps:>10.0f}"
                     f"{(lat.p50_ms if lat else nan):>9.2f}{split}{(lat.p99_ms if lat else nan):>9.2f}"
                     f"{(s.p999_ms or nan):>10.2f}{s.failures:>8}{(s.loadgen_cpu_percent or 0):>8.0f}%"
                     f"{late:>9}  {'yes' if s.stable else 'NO'}")
    for sweep, why in result.load.stopped.items():
        lines.append(f"{sweep} loop stopped: {why}")
    if timed:
        lines.append("server, model: the server's own p50s by its Server-Timing header (the handler; the model call)")
        lines += [f"{s.mode} {level_text(s)}: {share:.0%} of the server's time went to encoding the answer"
                  for s in steps if (share := encoding_share(s)) is not None and share > ENCODING_SHARE]
    if result.load.open_steps:
        lines.append("late p99: open loop, how late the generator sent after the schedule (ms), in every latency")
    by_worker: dict[str, int] = {}
    for s in steps:
        for name, n in s.worker_requests.items():
            by_worker[name] = by_worker.get(name, 0) + n
    if by_worker:
        lines.append("requests by worker: " + ", ".join(f"{name} {n}" for name, n in sorted(by_worker.items())))
    c = result.capacity
    if c is not None:
        best = "none" if c.max_rps_under_budget is None else f"{c.max_rps_under_budget:.0f} req/s ({c.basis})"
        lines.append(f"max throughput under p99 {c.budget_p99_ms:g} ms: {best}")
        if c.replicas is not None:
            lines.append(f"replicas for {c.target_rps:g} req/s: {c.replicas}")
        if c.cost_per_hour is not None:
            lines.append(f"cost: {c.cost_per_hour:.2f} per hour")
        if c.cost_per_million is not None:
            lines.append(f"cost per million requests: {c.cost_per_million:.4f}")
    return "\n".join(lines)
