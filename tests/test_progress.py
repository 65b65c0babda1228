"""What a person watching a run sees: the status line's text, its estimate, and both ways of showing it."""

from __future__ import annotations

import io

from mcbench.progress import RunDisplay, eta_seconds, status_text
from mcbench.search import TimeBudget


def test_status_line_names_candidate_stage_and_what_is_left():
    text = status_text("screen", 3, 13, "ort-int8-static", 12.4, 40.2)
    assert text == ("[3/13] ort-int8-static · screening (build, quality, short timing) · 10 after it · "
                    "12 s elapsed · about 40 s left in this stage")
    assert status_text("load", 1, 2, "ort-fp32", 0.0, None).endswith("1 after it · 0 s elapsed")


def test_eta_follows_the_pace_and_the_budget_caps_it():
    assert eta_seconds(stage_started=0.0, index=1, total=10, now=5.0, budget=None) is None  # nothing done yet
    assert eta_seconds(0.0, 3, 10, 20.0, None) == 80.0  # 2 done in 20 s: 8 left at 10 s each
    capped = eta_seconds(0.0, 3, 10, 20.0, TimeBudget(100.0, started=-70.0))  # 70 s + ~20 s since: ~10 s left
    assert capped is not None and capped < 15


def test_plain_lines_where_the_output_is_not_a_terminal():
    out = io.StringIO()
    with RunDisplay(out) as display:
        display.say("training ...")
        display.stage("screen", 1, 2, "torch-fp32")
    lines = out.getvalue().splitlines()
    assert lines[0] == "training ..." and lines[1].startswith("[1/2] torch-fp32 · screening")


def test_a_live_display_keeps_the_lines_and_ends_cleanly():
    out = io.StringIO()
    with RunDisplay(out, live=True) as display:
        display.stage("time", 1, 3, "ort-fp32")
        display.say("  ort-fp32: p50 0.015 ms")
    assert "  ort-fp32: p50 0.015 ms" in out.getvalue()
