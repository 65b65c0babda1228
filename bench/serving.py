"""A serving configuration: how one server process runs a model, the unit `mcbench.serving_search` searches over.

`instances` model sessions in one server, each serving one call at a time on `threads` runtime threads (the
server's cores shared out among them), dynamic batching up to `max_batch` requests waiting at most `max_wait_ms`,
and, for OpenVINO, its performance hint and streams. The server takes the first two as flags (`--instances`,
`--max-batch`, `--max-wait-ms`) and the rest as the target's settings in its spec, so a configuration measured in a
run is the one `mcbench serve RUN:VARIANT` starts.
"""

from __future__ import annotations

import math
import queue
from dataclasses import asdict, dataclass
from typing import Any

MAX_INSTANCES = 64  # sessions in one server: each holds the model's weights and its own arena
HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class ServingConfig:
    instances: int = 1
    threads: int | None = None  # runtime threads per instance; None: the runtime's default
    max_batch: int = 1  # 1: no dynamic batching
    max_wait_ms: float = 2.0
    hint: str | None = None  # OpenVINO's PERFORMANCE_HINT (LATENCY or THROUGHPUT); None: the target's own
    streams: int | None = None  # OpenVINO's NUM_STREAMS; None: what the hint picks

    def __post_init__(self) -> None:
        """A configuration also comes from a results file (`mcbench serve RUN:VARIANT`), which is data: every field
        is checked, so a file cannot start 100,000 sessions or hand OpenVINO a setting it did not measure."""
        def whole(value: object, low: int, high: int) -> bool:
            return type(value) is int and low <= value <= high

        if not (whole(self.instances, 1, MAX_INSTANCES) and whole(self.max_batch, 1, 4096)
                and (self.threads is None or whole(self.threads, 1, 1024))
                and (self.streams is None or whole(self.streams, 1, MAX_INSTANCES))):
            raise ValueError(f"instances (1-{MAX_INSTANCES}), max_batch (1-4096), threads and streams must be whole "
                             f"numbers in range: {self}")
        wait = self.max_wait_ms
        if type(wait) not in (int, float) or not (math.isfinite(wait) and 0 <= wait <= 60_000):
            raise ValueError(f"max_wait_ms must be a number from 0 to 60000: {wait!r}")
        if self.hint is not None and self.hint not in HINTS:
            raise ValueError(f"hint must be one of {', '.join(HINTS)}: {self.hint!r}")

    @property
    def label(self) -> str:
        """Short and unique within a search: `2x1t b8/2ms ov:THROUGHPUT/2`."""
        text = f"{self.instances}x{self.threads or 'd'}t"
        text += f" b{self.max_batch}/{self.max_wait_ms:g}ms" if self.max_batch > 1 else " nobatch"
        if self.hint or self.streams:
            text += f" ov:{self.hint or '-'}/{self.streams or '-'}"
        return text

    def server_flags(self) -> list[str]:
        """The server flags of this configuration (threads and OpenVINO settings go in the spec's target)."""
        flags = ["--instances", str(self.instances)]
        if self.max_batch > 1:
            flags += ["--max-batch", str(self.max_batch), "--max-wait-ms", f"{self.max_wait_ms:g}"]
        return flags

    def target_dict(self, target: dict[str, Any]) -> dict[str, Any]:
        """The spec's target (Target.to_dict) with this configuration's threads and runtime settings."""
        options = dict(target.get("options", {}))
        if self.hint:
            options["hint"] = self.hint
        if self.streams:
            options["streams"] = self.streams
        return {**target, "threads": self.threads, "options": options}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingConfig:
        """The configuration a dict holds; a ValueError naming what is wrong (a results file is data)."""
        if not isinstance(d, dict):
            raise ValueError(f"a serving configuration is a table of settings, not {type(d).__name__}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class SessionPool:
    """`instances` sessions of one model; `run` takes a free one, so up to that many calls run at once."""

    def __init__(self, sessions: list) -> None:
        self.sessions = sessions
        self.output_names = sessions[0].output_names
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for session in sessions:
            self._free.put(session)

    def run(self, feeds: dict) -> list:
        session = self._free.get()
        try:
            return session.run(feeds)
        finally:
            self._free.put(session)
