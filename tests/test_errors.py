"""One root for the errors a user can act on, and the dependency rule that lets every package raise it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from mcbench.cli import main
from mcbench.errors import UserError

ROOT = Path(__file__).parents[1]


def _user_errors() -> list[type]:
    from mcbench.bench.datasets import DatasetError
    from mcbench.config import ConfigError
    from mcbench.errors import UsageError
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
    from mcbench.reports.errors import UserError as ReportsRoot

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


def _mcbench_imports(folder: str) -> dict[str, set[str]]:
    """file -> the mcbench modules it imports (mcbench.x.y)."""
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = {n for n in names if n.split(".")[0] == "mcbench"}
    return out


FOUNDATIONS = ("mcbench.reports.errors", "mcbench.reports.parsing", "mcbench.reports.files")


def test_the_dependency_rule_holds_with_its_one_exception():
    """reports imports only reports; optimizer imports nothing of bench or reports but reports.errors,
    reports.parsing and reports.files (the foundations: stdlib and the error root only); bench not the app;
    reports/errors.py imports only the standard library."""
    for path, names in _mcbench_imports("reports").items():
        assert all(n.startswith("mcbench.reports") for n in names), (path, names)
    for path, names in _mcbench_imports("optimizer").items():
        assert all(n.startswith("mcbench.optimizer") or n in FOUNDATIONS for n in names), (path, names)
    for path, names in _mcbench_imports("bench").items():
        assert all(n.split(".")[1] in ("bench", "optimizer", "reports") for n in names), (path, names)
    tree = ast.parse((ROOT / "reports" / "errors.py").read_text(encoding="utf-8"))
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = {a.name for n in imported if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in imported if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "re"}, modules  # the standard library's, for first_line
    for name in ("parsing.py", "files.py"):
        tree = ast.parse((ROOT / "reports" / name).read_text(encoding="utf-8"))
        assert {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module.startswith("mcbench")} \
            == {"mcbench.reports.errors"}, name  # the standard library and the error root only
    assert "mcbench.reports.errors" in sys.modules  # and it is what every package raises from
