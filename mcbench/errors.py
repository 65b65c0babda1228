"""The errors a user can act on, under one root: `UserError` (printed as one line `mcbench: ...`, exit code 2).

Every such error derives from `UserError`: ConfigError (a run's settings), UsageError (arguments),
IntakeError, RecipeError, ProfileError (the optimizer), DatasetError (bench), SchemaError, ReportError,
MergeError, QualityBudgetError, GateConfigError, GateDataError (reports), TrackingError (MLflow) and
OutputError (an unusable run folder; ResultsWriteError mid-run exits 1). The root lives in
reports/errors.py, the one module every package may import (reports imports nothing else).
"""

from __future__ import annotations

from mcbench.bench.settings import ConfigError
from mcbench.reports.errors import UserError

__all__ = ["ConfigError", "UsageError", "UserError"]


class UsageError(UserError, ValueError):
    """Bad input the user can fix; printed as one line, exit code 2."""
