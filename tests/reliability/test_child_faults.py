"""A child that aborts, segfaults, runs out of memory or hangs becomes a ChildError with its status and stderr."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from mcbench.bench.isolate import ChildError, call_in_child, exit_status_text
from tests.reliability import faults


def _child_error(fn, *args, **kwargs) -> ChildError:
    with pytest.raises(ChildError) as info:
        call_in_child(fn, *args, **kwargs)
    return info.value


def test_abort_reports_sigabrt_and_stderr_tail():
    err = _child_error(faults.abort)
    assert err.kind == "crashed"
    assert err.exit_status == -signal.SIGABRT
    assert str(err).startswith("the process died: signal SIGABRT (exit status -6)")
    assert "about to abort" in err.stderr_tail
    assert "Fatal Python error: Aborted" in err.stderr_tail  # faulthandler's traceback is kept


def test_segfault_reports_sigsegv_and_stderr_tail():
    err = _child_error(faults.segfault)
    assert err.kind == "crashed"
    assert err.exit_status == -signal.SIGSEGV
    assert "signal SIGSEGV (exit status -11)" in str(err)
    assert "about to read address 0" in err.stderr_tail
    assert "Segmentation fault" in err.stderr_tail


def test_memory_limit_becomes_oom():
    err = _child_error(faults.allocate, 4096, memory_limit_bytes=1536 * 1024 * 1024)
    assert err.kind == "oom"
    assert str(err).startswith("out of memory (limit 1610612736 bytes): MemoryError")


def test_hang_past_timeout_is_killed_with_its_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    err = _child_error(faults.hang_with_grandchild, str(pid_file), timeout_s=6)
    assert time.monotonic() - started < 60  # bounded: it did not wait the 600 s the child asked for
    assert err.kind == "timeout"
    assert str(err).startswith("timed out after 6 s; the child was killed")
    assert err.exit_status == -signal.SIGKILL
    grandchild = int(Path(pid_file).read_text())
    faults.assert_gone(grandchild, "survived its parent's timeout")


def test_exception_keeps_its_traceback_in_the_stderr_tail():
    err = _child_error(faults.raise_deep)
    assert err.kind == "error" and err.exit_status == 0
    assert str(err) == "RuntimeError: the runtime refused the graph"
    assert err.stderr_tail.startswith("Traceback (most recent call last):")
    assert 'in inner\n    raise RuntimeError("the runtime refused the graph")' in err.stderr_tail


def test_stderr_tail_is_bounded_and_keeps_the_last_line():
    err = _child_error(faults.write_stderr_and_exit, 3)
    assert str(err) == ("the process died: exit code 3; last stderr line: "
                        "the real reason: runtime could not open libfoo.so")
    assert len(err.stderr_tail) <= 2000
    assert err.stderr_tail.endswith("the real reason: runtime could not open libfoo.so")
    assert "noise line 0\n" not in err.stderr_tail


@pytest.mark.parametrize(("code", "text"), [(0, "exit code 0"), (-9, "signal SIGKILL (exit status -9)"),
                                            (None, "no exit status"), (-200, "signal 200 (exit status -200)")])
def test_exit_status_text(code, text):
    assert exit_status_text(code) == text


def test_arguments_that_cannot_be_sent_raise_their_own_error():
    """A lock cannot be pickled to a spawned child: the pickling error is what the caller sees, promptly."""
    import threading

    with pytest.raises(TypeError, match="cannot pickle '_thread.lock' object"):
        call_in_child(sum, [threading.Lock()])


class _ExitWhenUnpickled:
    """An argument whose unpickling ends the process: the child dies while reading its arguments."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def _bounded(fn, *args, limit_s: float = 120, **kwargs) -> ChildError:
    """call_in_child in a thread: a hang fails this test after `limit_s` instead of hanging the suite."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(_child_error, fn, *args, **kwargs)
    try:
        return future.result(timeout=limit_s)
    finally:
        pool.shutdown(wait=False)


def test_death_at_import_with_a_megabyte_of_arguments_is_reported_not_hung(monkeypatch):
    """More than a pipe buffers (64 KiB) of arguments once blocked start() forever when the child died at import."""
    from tests.reliability import dies_on_import

    monkeypatch.setenv("MCBENCH_TEST_FAULT_ON_IMPORT", "1")

    err = _bounded(dies_on_import.work, b"x" * 1_000_000, timeout_s=30)
    assert err.kind == "error" and str(err) == "ImportError: this module cannot be imported in the child"
    assert 'raise ImportError("this module cannot be imported in the child")' in err.stderr_tail


def test_death_while_reading_arguments_is_reported():
    err = _bounded(len, [_ExitWhenUnpickled(), b"x" * 1_000_000], timeout_s=30)
    assert err.kind == "crashed" and err.exit_status == 3
    assert str(err).startswith("the process died: exit code 3")


def test_hang_before_the_first_line_of_fn_times_out(monkeypatch):
    from tests.reliability import hangs_on_import

    monkeypatch.setenv("MCBENCH_TEST_FAULT_ON_IMPORT", "1")

    started = time.monotonic()
    err = _bounded(hangs_on_import.work, b"x" * 1_000_000, timeout_s=5)
    assert err.kind == "timeout" and str(err).startswith("timed out after 5 s; the child was killed")
    assert time.monotonic() - started < 60  # the start-up counted under the timeout
