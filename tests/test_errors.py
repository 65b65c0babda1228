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


def _all_user_errors() -> set[type]:
    """Every subclass of UserError defined in mcbench, found by walking the classes (the modules above imported)."""
    import mcbench.api  # noqa: F401  the rest of the product's light modules
    import mcbench.code_rule  # noqa: F401
    import mcbench.optimizer.artifact  # noqa: F401
    import mcbench.reports.decision  # noqa: F401

    _user_errors()
    found, todo = set(), [UserError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("mcbench.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_user_error_derives_from_the_one_root_only():
    """Not also from ValueError, RuntimeError or OSError: an `except ValueError` written for a library's error
    must not swallow a user error (issue 31)."""
    from mcbench import UserError as public_root

    assert public_root is UserError
    errors = _all_user_errors()
    assert {e.__name__ for e in errors} >= {c.__name__ for c in _user_errors()} | {"FileError", "ParseError"}
    for cls in errors:
        assert not issubclass(cls, ValueError | RuntimeError | OSError | TypeError | KeyError), cls


def test_no_exception_class_is_passed_as_a_parameter():
    """Each function raises its own error (or the foundations' UsageError); none takes the class to raise."""
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1]
    for folder in ("mcbench", "bench", "optimizer", "reports"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    for arg in node.args.args + node.args.kwonlyargs:
                        hint = ast.unparse(arg.annotation) if arg.annotation else ""
                        assert not (hint.startswith("type[") and "Error" in hint) and not arg.arg.endswith("_error"), \
                            f"{path.relative_to(root)}: {node.name}({arg.arg}: {hint})"


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
