"""The documentation: the tables in docs/ that copy the code are generated from it and current; the pages link up."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from mcbench import docs_tables
from mcbench.docs_tables import COMMAND, blocks, commands, read_block, stale, write

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"


def test_every_generated_table_in_docs_is_current():
    problems = stale()
    assert not problems, f"stale documentation: {'; '.join(problems)}: regenerate it with `{COMMAND}` and commit it"


def test_the_cli_page_has_every_command_and_every_flag():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert {"mcbench run", "mcbench gate", "mcbench serve", "mcbench load", "mcbench load-worker",
            "mcbench profiles show", "mcbench report", "mcbench compare", "mcbench export"} <= set(commands())
    for name, parser in commands().items():
        block = read_block(text, name)
        assert block is not None, f"docs/cli.md has no generated block for `{name}`"
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help":
                assert f"`{action.option_strings[-1]}`" in block, f"`{name}`: {action.option_strings} not in its table"
    run = read_block(text, "mcbench run")
    assert "| `--quality-budget` | `POINTS\\|METRIC>=X\\|METRIC<=X` |" in run  # a pipe in a metavar is escaped
    assert "*the HTTP load test: sweeps and capacity figures*" in run  # the parser's groups head their tables
    assert "| `--max-body-mb` | `MAX_BODY_MB` | `16.0` | largest request body in MiB (default 16) |" in \
        read_block(text, "mcbench serve")  # argparse's %(default)g, expanded


def test_the_pass_table_has_a_row_for_each_registered_pass():
    from mcbench.optimizer.passes import records

    table = read_block((DOCS / "passes.md").read_text(encoding="utf-8"), "passes")
    rows = dict(re.findall(r"^\| `([a-z_0-9]+\.[a-z_0-9]+)` \|(.*)$", table, re.MULTILINE))
    assert set(rows) == set(records())
    assert rows["nncf.int8"].startswith(" ONNX → OpenVINO IR |") and "| calibration |" in rows["nncf.int8"]
    assert "`method`: `minmax` \\| `entropy` \\| `percentile` = `minmax`" in rows["quant.int8_static"]


def test_the_results_schema_page_lists_every_field_of_every_record():
    from mcbench.reports import schema

    table = read_block((DOCS / "results-schema.md").read_text(encoding="utf-8"), "results-schema")
    for cls in (schema.RunResult, schema.VariantResult, schema.Accuracy, schema.LatencyStats, schema.LoadResult,
                schema.LoadStep, schema.Capacity):
        assert f"**`{cls.__name__}`**" in table
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in table, f"{cls.__name__}.{f.name} is not in docs/results-schema.md"
    # the meaning comes from the field's comment in the source, continuation lines included
    assert "| `samples_us` | `list[float]` | no | to 0.01 us: whole microseconds moved a 15 us model's median" in table
    assert "| `run_id` | `str` | yes |" in table


def test_a_stale_or_missing_block_is_found_and_rewritten(tmp_path, monkeypatch, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "passes.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `quant.fp16` |", "| `quant.fp16_old` |"),
                    encoding="utf-8")
    assert stale(docs) == ["passes.md: block 'passes' is stale"]
    monkeypatch.setattr(docs_tables, "DOCS", docs)
    assert docs_tables.main([]) == 1
    err = capsys.readouterr().err
    assert "mcbench: docs/passes.md: block 'passes' is stale" in err and COMMAND in err
    assert docs_tables.main(["--write"]) == 0
    assert "wrote docs/passes.md" in capsys.readouterr().out
    assert stale(docs) == [] and docs_tables.main([]) == 0
    assert write(docs) == ([], [])  # nothing left to change

    cli = docs / "cli.md"
    cli.write_text(cli.read_text(encoding="utf-8").replace("<!-- END GENERATED: mcbench gate -->", ""),
                   encoding="utf-8")
    assert stale(docs) == ["cli.md: no block 'mcbench gate' (add its markers: <!-- BEGIN GENERATED: mcbench gate "
                           "--> ... <!-- END GENERATED: mcbench gate -->)"]
    assert docs_tables.main(["--write"]) == 1
    assert "no block 'mcbench gate'" in capsys.readouterr().err


def test_each_block_lives_on_an_existing_page():
    pages = {page for page, _ in blocks().values()}
    assert pages == {"run-files.md", "passes.md", "results-schema.md", "cli.md"}
    assert all((DOCS / page).is_file() for page in pages)


# --- the pages link up ------------------------------------------------------------------------------------------


def _headings(text: str) -> list[str]:
    found, fence = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"^#{1,6} ", line):
            found.append(line.split(" ", 1)[1].strip())
    return found


def _anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors: set[str] = set()
    for heading in _headings(text):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = 0
        while (anchor if n == 0 else f"{anchor}-{n}") in anchors:
            n += 1
        anchors.add(anchor if n == 0 else f"{anchor}-{n}")
    return anchors


PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no such file"
        if fragment and dest.suffix == ".md":
            assert fragment in _anchors(dest.read_text(encoding="utf-8")), f"{page.name}: no heading for {target}"


def test_the_index_and_the_readme_reach_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/index.md)" in readme and "](benchmarks/RESULTS.md" in readme
    # the README is the package's description on PyPI: a short page with the commands CI runs
    assert len(readme.encode()) < 12_000
    for command in ("make install", "make test", "make check", "make demo", "pip install .", "pip install -e ."):
        assert command in readme
