"""What one Locust process of a load step is told: one typed settings file, written by bench.load, read once.

bench.load writes a step's `LoadSettings` as JSON into the run's folder and starts Locust with
MCBENCH_LOAD_SETTINGS holding that file's path (the only variable between the two); bench/locustfile.py reads and
checks it at start-up and ends the process with one line if it is bad. In distributed mode the master sends the
`shared()` part to each worker (Locust's custom messages), and a worker keeps its own name and patience.
The standard library and mcbench.base only: the locustfile imports it after Locust has patched the process.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError

ENV = "MCBENCH_LOAD_SETTINGS"  # the variable that holds the settings file's path
ARRIVALS = ("poisson", "constant")
WAKES = ("thread", "loop")
OWN = ("samples", "worker_name", "setup_wait_s", "bodies", "expected")  # a process's own: never sent to a worker


class LoadSettingsError(UserError):
    """A settings file (or a master's settings message) the locustfile cannot run by."""


@dataclass(frozen=True)
class LoadSettings:
    """Everything a Locust process needs beyond Locust's own flags (host, users, run time, user class)."""

    seconds: float = 1.0  # the step, from the first user's start
    grace_s: float = 1.0  # after the step, for the last answers
    rate: float = 0.0  # open loop: requests a second over all users of all workers
    streams: int = 1  # open loop: the users that share that rate (Locust's --users)
    arrivals: str = "poisson"  # open loop: exponential gaps, or constant ones
    wake: str = "thread"  # open loop: wait for a send on a native thread's nanosleep, or on the event loop's timer
    yield_us: float = 400.0  # open loop, "thread": the longest last stretch before a send spent yielding (0: none)
    path: str = "/"  # the URL path requests go to
    headers: dict[str, str] = field(default_factory=dict)
    bodies: str = ""  # a folder of pre-encoded requests request_0.bin ... (sent in turn); "": one empty body
    expected: str = ""  # an .npz of the offline outputs for those requests ("i/k": request i, output k); "": none
    check_every: int = 0  # check every Nth answer against `expected` (0: never)
    max_in_flight: int = 2000  # a user's requests out at once; beyond it a send is recorded as the generator's backlog
    request_timeout_s: float = 30.0
    samples: str = ""  # path prefix of the records (bench.locustfile says which files); "": none written
    worker_name: str = ""  # distributed: this worker's name in the records ("": HOSTNAME-PID)
    setup_wait_s: float = 60.0  # distributed: how long a worker's users wait for the master's settings

    def __post_init__(self) -> None:
        problems = _type_problems(self) or _range_problems(self)  # ranges only of values of the right type
        if problems:
            raise LoadSettingsError("; ".join(problems))

    def shared(self) -> dict[str, Any]:
        """What the master sends its workers: all but each process's own fields."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in OWN}

    def with_shared(self, sent: dict[str, Any]) -> LoadSettings:
        """These settings with a master's `shared()` over them; a LoadSettingsError if the message is not one."""
        unknown = sorted(set(sent) - (set(_names()) - set(OWN)))
        if unknown:
            raise LoadSettingsError(f"the master sent settings this worker does not know: {', '.join(unknown)} "
                                    "(is it the same mcbench version?)")
        return dataclasses.replace(self, **sent)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, path: Path) -> LoadSettings:
        """The settings in a file written by `write`; a LoadSettingsError naming the file if it cannot be read."""
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict):
                raise LoadSettingsError(f"expected a JSON object, got {type(data).__name__}")
            unknown = sorted(set(data) - set(_names()))
            if unknown:
                raise LoadSettingsError(f"unknown settings {', '.join(unknown)}")
            return cls(**data)
        except (OSError, ValueError, LoadSettingsError) as exc:
            raise LoadSettingsError(f"cannot read the load settings {path}: {exc}") from None

    @classmethod
    def from_environment(cls) -> LoadSettings:
        """The file MCBENCH_LOAD_SETTINGS names; the defaults where it names none (a Locust process started by
        hand, or a module that imports the locustfile for its functions)."""
        path = os.environ.get(ENV)
        return cls.read(Path(path)) if path else cls()


def _names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(LoadSettings))


def _type_problems(settings: LoadSettings) -> list[str]:
    """Each field of the wrong JSON type (an int where a float is expected is fine; a bool is no number)."""
    out = []
    for f in dataclasses.fields(settings):
        value, expected = getattr(settings, f.name), {"float": (int, float), "int": int, "str": str}.get(str(f.type))
        if expected is None:  # the headers
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        else:
            ok = isinstance(value, expected) and not isinstance(value, bool)
        if not ok:
            out.append(f"{f.name} must be {'a JSON object of strings' if expected is None else f.type}, got {value!r}")
    return out


def _range_problems(s: LoadSettings) -> list[str]:
    checks = [(s.seconds > 0, "seconds must be positive"), (s.grace_s >= 0, "grace_s must be 0 or more"),
              (s.rate >= 0, "rate must be 0 or more"), (s.streams >= 1, "streams must be 1 or more"),
              (s.arrivals in ARRIVALS, f"arrivals must be one of {', '.join(ARRIVALS)}, got {s.arrivals!r}"),
              (s.wake in WAKES, f"wake must be one of {', '.join(WAKES)}, got {s.wake!r}"),
              (s.yield_us >= 0, "yield_us must be 0 or more"), (s.path.startswith("/"), "path must start with /"),
              (s.check_every >= 0, "check_every must be 0 or more"),
              (s.max_in_flight >= 1, "max_in_flight must be 1 or more"),
              (s.request_timeout_s > 0, "request_timeout_s must be positive"),
              (s.setup_wait_s > 0, "setup_wait_s must be positive")]
    return [problem for ok, problem in checks if not ok]
