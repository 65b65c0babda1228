"""What `mcbench load` and `mcbench.load` do against a KServe v2 server: its model's inputs from the server's own
metadata, the form its requests take, both sweeps, and the results file.

Triton, OpenVINO Model Server, KServe or `mcbench serve`: inputs are filled with generated values; answers are
not checked (there is no offline output to check them against).
"""

from __future__ import annotations

import http.client
import math
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcbench.base.errors import UsageError

if TYPE_CHECKING:
    from mcbench.reports.schema import RunResult


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


def default_out(model: str) -> Path:
    """Where a load test's results go when no folder is given: runs/<UTC time>-load-<model>."""
    return Path("runs") / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-load-{model}"


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
