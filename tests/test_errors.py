"""One root for the errors a user can act on (where it may be imported from: tests/test_structure.py)."""

from __future__ import annotations

import pytest

from mcbench.base.errors import UserError
from mcbench.cli import main


def _user_errors() -> list[type]:
    from mcbench.base.errors import UsageError
    from mcbench.bench.datasets import DatasetError
    from mcbench.config import ConfigError
    from mcbench.optimizer.intake import IntakeError
    from mcbench.optimizer.profiles import ProfileError
    from mcbench.optimizer.recipe_syntax import RecipeError
    from mcbench.reports.gate import GateDataError
    from mcbench.reports.gate_budgets import GateConfigError
    from mcbench.reports.merge import MergeError
    from mcbench.reports.plots import ReportError
    from mcbench.reports.quality import QualityBudgetError
    from mcbench.reports.schema import SchemaError
    from mcbench.runguard import OutputError
    from mcbench.tracking import TrackingError

    return [ConfigError, UsageError, IntakeError, DatasetError, ProfileError, RecipeError, SchemaError, ReportError,
            MergeError, QualityBudgetError, TrackingError, GateConfigError, GateDataError, OutputError]


def test_every_user_error_derives_from_the_one_root_and_keeps_its_old_base():
    from mcbench.base.errors import UserError as ReportsRoot

    assert UserError is ReportsRoot
    for cls in _user_errors():
        assert issubclass(cls, UserError), cls
        assert issubclass(cls, ValueError | RuntimeError | OSError), cls  # callers that caught the old base still do


@pytest.mark.parametrize("cls", _user_errors(), ids=lambda c: c.__name__)
def test_main_prints_a_user_error_as_one_line_with_exit_2(monkeypatch, capsys, cls):
    import mcbench.cli as cli

    def fail(args):
        raise cls("what to fix")

    monkeypatch.setattr(cli, "cmd_compare", fail)
    assert main(["compare", "a.json", "b.json"]) == 2
    assert capsys.readouterr().err == "mcbench: what to fix\n"


def test_a_results_write_that_fails_mid_run_exits_1_and_anything_else_is_internal(monkeypatch, capsys):
    import mcbench.cli as cli
    from mcbench.runguard import ResultsWriteError

    def write_fails(args):
        raise ResultsWriteError("cannot write r/results.json: No space left on device")

    monkeypatch.setattr(cli, "cmd_compare", write_fails)
    assert main(["compare", "a.json", "b.json"]) == 1
    assert capsys.readouterr().err == "mcbench: cannot write r/results.json: No space left on device\n"

    def bug(args):
        raise KeyError("x")

    monkeypatch.setattr(cli, "cmd_compare", bug)
    assert main(["compare", "a.json", "b.json"]) == 1
    assert capsys.readouterr().err.startswith("mcbench: internal error: KeyError: 'x'")
