"""JSON against binary answers, side by side on one server: where a large output's request time goes.

    python -m benchmarks.answers [--requests 40] [--width 256]

Serves ddddocr's CTC recogniser (common.onnx: one [T, 1, 8210] output; the test-model cache of
tests/packaged_models.py) with mcbench's server on onnxruntime, one thread, and sends the same input alternately
asking for a JSON answer and a binary one (the KServe v2 binary tensor extension), one request at a time on one
keep-alive connection. Per form it prints the medians of the server's own times by its Server-Timing header (the
handler, the model call, the encoding), the client's latency and the answer's size.

Not benchmarks.harness: each request is timed on its own, by the client and by the server's Server-Timing header,
and the two forms already alternate request by request on one connection.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mcbench.bench.http_client import Connection, Origin, encode_post, parse_server_timing
from mcbench.bench.launcher import serve_in_subprocess
from mcbench.bench.protocol import HEADER_LENGTH, decode_infer_response, encode_infer_request
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from tests.packaged_models import packaged_model


def measure(requests: int, width: int) -> dict[str, dict[str, float]]:
    artifact = Artifact(packaged_model("ddddocr") / "common.onnx", "onnx", (InputSpec("input1", (1, 1, 64, width)),))
    feeds = {"input1": np.random.default_rng(0).uniform(0, 1, (1, 1, 64, width)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "ocr.json"
        spec.write_text(json.dumps({"name": "ocr", "artifact": artifact.to_dict(),
                                    "target": Target("onnxruntime", threads=1).to_dict()}))
        with serve_in_subprocess(spec, None) as server:
            origin = Origin.parse(server.url)
            wire = {form: encode_post(origin, "/v2/models/ocr/infer", headers, body)
                    for form, (body, headers) in (("json", encode_infer_request(feeds, binary_answer=False)),
                                                  ("binary", encode_infer_request(feeds, binary_answer=True)))}
            conn = Connection(origin, 60.0)
            rows: dict[str, list[dict[str, float]]] = {"json": [], "binary": []}
            for i in range(2 * requests + 2):
                form = ("json", "binary")[i % 2]  # interleaved: both forms see the same machine
                start = time.perf_counter()
                answer = conn.exchange(wire[form])
                latency_ms = (time.perf_counter() - start) * 1e3
                assert answer.status == 200, answer.body[:200]
                outputs = decode_infer_response(answer.body, answer.headers.get(HEADER_LENGTH.lower()))
                if i >= 2:  # the first of each form warms up
                    timing = parse_server_timing(answer.headers["server-timing"])
                    rows[form].append({**timing, "latency": latency_ms, "bytes": len(answer.body),
                                       "shape": next(iter(outputs.values())).shape})
            conn.close()
    return {form: {key: statistics.median(r[key] for r in form_rows) for key in
                   ("app", "model", "encode", "latency", "bytes")} | {"shape": form_rows[0]["shape"]}
            for form, form_rows in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per form")
    parser.add_argument("--width", type=int, default=256, help="the text line's width (input1 [1, 1, 64, W])")
    args = parser.parse_args()
    figures = measure(args.requests, args.width)
    print(f"ddddocr common.onnx, input1 [1, 1, 64, {args.width}], output {list(figures['json']['shape'])}; "
          f"{args.requests} requests a form, interleaved; medians")
    print("| answer | server (app) ms | model ms | encode ms | encode share | client latency ms | answer bytes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for form, f in figures.items():
        print(f"| {form} | {f['app']:.2f} | {f['model']:.2f} | {f['encode']:.2f} | {f['encode'] / f['app']:.0%} | "
              f"{f['latency']:.2f} | {f['bytes']:,.0f} |")


if __name__ == "__main__":
    main()
