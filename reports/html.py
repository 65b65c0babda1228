"""The self-contained HTML report: one file, no external URL, every value escaped.

The page is `report_view(run)` laid out by `templates/report.html.j2`; the template holds no
computation. Autoescaping is on for every template and no data is marked safe, so a model or
variant name cannot inject markup (research A3); a Content-Security-Policy `<meta>` allows only
the page's own inline style and script and data: images.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from mcbench.base.files import write_text_atomic
from mcbench.reports.merge import MultiRun
from mcbench.reports.page import report_view
from mcbench.reports.schema import RunResult

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
COMPARE_TEMPLATE = "compare.html.j2"
MERGED_TEMPLATE = "merged.html.j2"


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """Autoescape everything (also strings rendered with from_string); fail on an undefined name, not blank it."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(run: RunResult) -> str:
    return template_environment().get_template(TEMPLATE).render(view=report_view(run))


def render_comparison(a: RunResult, b: RunResult) -> str:
    from mcbench.reports.compare import compare_runs

    return template_environment().get_template(COMPARE_TEMPLATE).render(cmp=compare_runs(a, b))


def render_merged(multi: MultiRun) -> str:
    """Several machines' runs of one model (reports.merge) as one page."""
    from mcbench.reports.merged_page import merged_view

    return template_environment().get_template(MERGED_TEMPLATE).render(view=merged_view(multi))


def write_report(run: RunResult, path: Path, inputs: tuple[Path, ...] = ()) -> Path:
    """Render and write atomically (temporary file beside it, then rename): a browser never opens half a page;
    `path` must not be one of `inputs` (the results it was made from) nor a device (mcbench.base.files)."""
    return write_text_atomic(path, render_report(run), inputs)
