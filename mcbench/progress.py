"""What a person watching a run sees: mcbench's lines, and where the search stands.

On a terminal a live status line (rich) stays under the lines: the stage, candidates done and left, elapsed
time and an estimate of what is left. Where the output is not a terminal (a CI log, a pipe) the same status is
a plain line when a candidate starts a stage, so a log reads top to bottom.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO

from mcbench.search import TimeBudget

STAGE_NAMES = {"screen": "screening (build, quality, short timing)", "time": "timing in full",
               "load": "load-testing"}


def eta_seconds(stage_started: float, index: int, total: int, now: float, budget: TimeBudget | None) -> float | None:
    """What is left of this stage at its pace so far, capped by the time budget; None before the first is done."""
    done = index - 1
    if done < 1:
        return None if budget is None or budget.seconds is None else max(budget.left(), 0.0)
    left = (now - stage_started) / done * (total - done)
    if budget is not None and budget.seconds is not None:
        left = min(left, max(budget.left(), 0.0))
    return left


def status_text(stage: str, index: int, total: int, name: str, elapsed: float, eta: float | None) -> str:
    eta_text = f" · about {eta:.0f} s left in this stage" if eta is not None else ""
    return (f"[{index}/{total}] {name} · {STAGE_NAMES.get(stage, stage)} · {total - index} after it · "
            f"{elapsed:.0f} s elapsed{eta_text}")


class RunDisplay:
    """`say` for lines, `stage` for the status; a `with` around the run starts and stops the live line."""

    def __init__(self, terminal: TextIO, live: bool | None = None) -> None:
        self.terminal = terminal
        self.live = terminal.isatty() if live is None else live
        self.started = time.monotonic()
        self._stage: tuple[str, float] | None = None
        self._live = None
        self._console = None

    def __enter__(self) -> RunDisplay:
        if self.live:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._console = Console(file=self.terminal, highlight=False)
            self._live = Live(Text(""), console=self._console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, message: str) -> None:
        if self._live is not None and self._console is not None:
            self._console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.terminal, flush=True)

    def stage(self, stage: str, index: int, total: int, name: str, budget: TimeBudget | None = None) -> None:
        now = time.monotonic()
        if self._stage is None or self._stage[0] != stage:
            self._stage = (stage, now)
        eta = eta_seconds(self._stage[1], index, total, now, budget)
        text = status_text(stage, index, total, name, now - self.started, eta)
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text, style="bold"))
        else:
            print(text, file=self.terminal, flush=True)
