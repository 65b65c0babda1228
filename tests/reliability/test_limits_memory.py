"""Issue 32: what reading a file at its size limit costs in memory (docs/reliability-and-security.md, Limits).

The figures in the docs come from `python -m benchmarks.limits_memory`; these tests hold the fixes those measurements
asked for: the nesting check walked a parsed file with a (child, level) pair per child, as much memory again as the
parsed value (a 16 MiB config.json of `{},` grew the process by 806 MiB; 421 MiB after).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from mcbench.base.parsing import MAX_DEPTH, depth


def test_the_nesting_check_takes_memory_by_depth_not_by_entries():
    wide = [{} for _ in range(200_000)]  # 12 MB of parsed objects, as a dense config.json holds
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep, 1]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        assert depth(wide) == 2 and depth({"a": wide, "b": [[]]}) == 3
        assert depth(deep) == MAX_DEPTH + 1  # past the limit: counted no further than one level over
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"the walk took {peak} bytes"


def test_every_limit_in_the_docs_says_what_it_costs_in_memory():
    page = (Path(__file__).resolve().parents[2] / "docs" / "reliability-and-security.md").read_text()
    table = page[page.index("| what | limit | peak memory at the limit |"):].split("\n\n")[0].splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in table]
    assert len(table) > 15 and all(len(row) == 4 for row in cells), [row[0] for row in cells if len(row) != 4]
    blank = [row[0] for row in cells if not row[2]]
    assert not blank, f"no peak memory for {blank}"
