"""CSV and Markdown exports of the variant table."""

from __future__ import annotations

import csv
import io

from mcbench.cli import main
from mcbench.reports.export import to_csv, to_markdown
from mcbench.reports.schema import save_results
from tests.test_report import EVIL, sample_run


def test_csv_has_one_row_per_variant_with_raw_numbers():
    rows = list(csv.DictReader(io.StringIO(to_csv(sample_run()))))
    assert [r["variant"] for r in rows] == ["torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-fp32"]
    ort = rows[1]
    assert (ort["p50_ms"], ort["p99_ms"], ort["top1"], ort["speedup"], ort["peak_rps"]) == ("0.1", "0.3", "0.975",
                                                                                             "4", "3100")
    assert ort["size"] == "220000" and ort["frontier"] == "yes" and ort["accuracy_budget"] == "within"
    assert rows[2]["drop_points"] == "1.4" and rows[2]["accuracy_budget"] == "over"
    assert rows[4]["p50_ms"] == "" and rows[4]["error"] == "TargetError: openvino is not installed"


def test_markdown_is_a_table_with_escaped_cells():
    run = sample_run()
    run.variants[1].name = "a|b " + EVIL
    lines = to_markdown(run).splitlines()
    assert lines[0].startswith("| variant | profile | status |") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + len(run.variants)
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
    assert "a\\|b &lt;script&gt;alert(1)&lt;/script&gt;" in lines[3] and "<script>" not in "\n".join(lines)
    assert "| 97.5% | 100.0% |" in lines[3] and "| 4.00× |" in lines[3]


def test_export_command_prints_or_writes(tmp_path, capsys):
    save_results(sample_run(), tmp_path / "results.json")
    assert main(["export", str(tmp_path / "results.json"), "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("| variant |")
    assert main(["export", str(tmp_path / "results.json"), "--out", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().startswith("variant,profile,status")
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err
