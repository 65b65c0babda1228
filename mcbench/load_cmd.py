"""`mcbench load --url URL --model NAME`: the command line of the two sweeps and capacity figures against any
KServe v2 server (the work: mcbench.api.load, over mcbench.remote_load), and the table it prints."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mcbench.base.errors import UsageError


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


def cmd_load(args: argparse.Namespace) -> int:
    from mcbench.api import load
    from mcbench.config import QUICK_LOAD, LoadPlan
    from mcbench.remote_load import default_out

    plan = plan_from_args(args, QUICK_LOAD if args.quick else LoadPlan())
    master = master_from_args(args)
    out = args.out or default_out(args.model)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    run = load(args.url, args.model, out=out, plan=plan, token=args.token, consts=args.const,
               cores=usable_cores(args.cores, "load: --cores"), master=master, workers=args.workers, progress=say)
    result = run.variants[0]
    print(load_table(result))
    print(f"\nresults: {out / 'results.json'}")
    return 0 if result.status == "ok" else 1


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
