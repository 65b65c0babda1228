"""`mcbench report A/results.json B/results.json`: one model and config from several machines in one report, the
machines side by side with their recommendation, capacity and cost; runs of another model or config are refused
with one line naming the file and what differs. Synthetic results, no model: fast and offline."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mcbench.cli import EXIT_BAD_INPUT, MERGED_REPORT, main
from mcbench.reports.capacity import capacity
from mcbench.reports.html import render_merged, render_report
from mcbench.reports.merge import MergeError, machine_labels, merge_runs, model_sha256
from mcbench.reports.schema import RunResult, load_results, save_results
from tests.test_report import EVIL, load, sample_run, variant
from tests.test_report_decisions import profile_run

LAPTOP = dict(cpu="AMD EPYC 7B12", cores=2, profile="local-2core-avx2", cost=0.10,
              steps=[(1, 300.0, 10.0), (4, 480.0, 30.0), (8, 520.0, 80.0)])
XEON = dict(cpu="Intel Xeon Platinum 8375C", cores=32, profile="xeon-avx512-vnni", cost=1.53,
            steps=[(1, 3000.0, 5.0), (4, 6400.0, 20.0), (8, 7000.0, 90.0)])
MODEL_SHA = "ab" * 32


def machine_run(cpu: str, cores: int, profile: str, cost: float, steps: list, budget_ms: float = 50.0) -> RunResult:
    """One machine's run with one hardware profile: the shared FP32 baseline and the profile's INT8 variant, load
    tested, its capacity computed from the sweep as the pipeline does (target 2,000 req/s under the p99 budget)."""
    sweep = load(steps)
    int8 = variant(f"{profile}:ort-int8-static", 0.969, 0.99, 0.080, 0.200, 68_000,
                   ["export.onnx", "quant.int8_static"], profile=profile, load=sweep,
                   capacity=capacity(sweep, budget_ms, target_rps=2000.0, cost_per_hour=cost))
    base = variant("torch-fp32", 0.975, 1.0, 0.400, 0.900, 240_000, [], runtime="torch")
    base.artifact["sha256"] = MODEL_SHA
    folder = f"/home/{profile}"
    return RunResult(
        run_id=f"20260101-120000-{profile}", created="2026-01-01T12:00:00+00:00",
        model={"name": "digits-cnn", "source": "onnx file", "reference": f"{folder}/digits.onnx",
               "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32", "low": 0, "high": 100}]},
        config={"model": f"{folder}/digits.onnx", "dataset": f"{folder}/data/digits.npz", "task": "auto",
                "profiles": [profile], "quick": True, "accuracy_budget": 1.0, "quality_budget": None,
                "load": {"users": [1, 4, 8], "budget_p99_ms": 50.0, "target_rps": 2000.0, "cost_per_hour": None,
                         "locust_workers": 0, "max_batch": 1}},
        environment={"cpu_model": cpu, "isa": ["avx2", "fma"], "logical_cores": cores, "python": "3.12.1",
                     "libraries": {"mcbench": "0.1.0", "onnxruntime": "1.20.0" if cores == 2 else "1.21.0"}},
        variants=[base, int8], baseline="torch-fp32",
    )


def saved(tmp_path: Path, name: str, run: RunResult) -> Path:
    path = tmp_path / name / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_results(run, path)
    return path


class TableRows(HTMLParser):
    """The cell texts (th and td) of each body row of one table (by id), as a browser reads them."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tbody":
            self.rows = []  # the heading row is not a body row
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def table(page: str, table_id: str) -> list[list[str]]:
    parser = TableRows(table_id)
    parser.feed(page)
    return [row for row in parser.rows if row]


def test_two_machines_in_one_report_each_with_its_recommendation_capacity_and_cost(tmp_path, capsys):
    a = saved(tmp_path, "laptop", machine_run(**LAPTOP))
    b = saved(tmp_path, "xeon", machine_run(**XEON))
    out = tmp_path / "both.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"report: {out} (2 machines: laptop, xeon)\n"
    page = out.read_text(encoding="utf-8")
    assert "<title>mcbench report: digits-cnn on 2 machines</title>" in page
    assert "laptop · local-2core-avx2" in page and "xeon · xeon-avx512-vnni" in page
    assert "AMD EPYC 7B12, 2 logical cores" in page and "Intel Xeon Platinum 8375C, 32 logical cores" in page
    # the capacity table: machine, profile, variant, budget, max req/s, basis, target, replicas, cost/h, cost/M
    assert table(page, "capacity-table") == [
        ["laptop", "local-2core-avx2", "local-2core-avx2:ort-int8-static", "50.0", "480",
         "closed-loop (no open-loop sweep ran)", "2,000", "5", "0.50", "0.06"],
        ["xeon", "xeon-avx512-vnni", "xeon-avx512-vnni:ort-int8-static", "50.0", "6,400",
         "closed-loop (no open-loop sweep ran)", "2,000", "1", "1.53", "0.07"],
    ]
    # each machine's recommendation, in its own words: its peak (over the budget), replicas and cost
    assert ("under HTTP load it reached 520 req/s at 8 users, and serving 2,000 req/s under a p99 of 50 ms takes "
            "5 replicas at 0.50 per hour.") in page
    assert ("under HTTP load it reached 7,000 req/s at 8 users, and serving 2,000 req/s under a p99 of 50 ms takes "
            "1 replica at 1.53 per hour.") in page
    assert page.count('class="recommend ship"') == 2
    # the shared baseline shows once a machine, labelled with it
    rows = [r for r in table(page, "variant-table") if r[1].startswith("torch-fp32")]
    assert [r[0] for r in rows] == ["laptop", "xeon"]
    # what differs: CPU, cores, a library version, the profiles and the model's path; the rest is shared
    differs = {row[0]: row[1:] for row in table(page, "differences")}
    assert differs["results file"] == [str(a), str(b)]
    assert differs["profiles"] == ["local-2core-avx2", "xeon-avx512-vnni"]
    assert differs["libraries.onnxruntime"] == ["1.20.0", "1.21.0"]
    assert differs["config.dataset"] == ["/home/local-2core-avx2/data/digits.npz",
                                         "/home/xeon-avx512-vnni/data/digits.npz"]
    assert "python" not in differs and "config.quick" not in differs


def test_several_files_default_to_a_merged_report_in_the_current_folder(tmp_path, monkeypatch, capsys):
    a = saved(tmp_path, "runs/laptop", machine_run(**LAPTOP))
    b = saved(tmp_path, "runs/xeon", machine_run(**XEON))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "runs/laptop/results.json", "runs/xeon/results.json"]) == 0
    assert capsys.readouterr().out == f"report: {MERGED_REPORT} (2 machines: laptop, xeon)\n"
    assert (tmp_path / MERGED_REPORT).is_file()
    assert not (a.parent / "report.html").exists() and not (b.parent / "report.html").exists()


def test_another_model_is_refused_with_both_hashes_and_exit_2(tmp_path, capsys):
    other = machine_run(**XEON)
    other.variants[0].artifact["sha256"] = "cd" * 32
    a, b = saved(tmp_path, "laptop", machine_run(**LAPTOP)), saved(tmp_path, "xeon", other)
    out = tmp_path / "both.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == EXIT_BAD_INPUT == 2
    assert capsys.readouterr().err == (f"mcbench: cannot merge {b}: model sha256 differs from {a} "
                                       "(cdcdcdcdcdcd… here, abababababab… there)\n")
    assert not out.exists()


@pytest.mark.parametrize(("change", "what", "values"), [
    (lambda r: r.config["load"].update(budget_p99_ms=20.0), "config key load.budget_p99_ms differs",
     "20.0 here, 50.0 there"),
    (lambda r: r.config.update(accuracy_budget=0.5), "config key accuracy_budget differs", "0.5 here, 1.0 there"),
    (lambda r: r.config.update(dataset="/home/x/data/other.npz"), "config key dataset differs",
     '"other.npz" here, "digits.npz" there'),  # a dataset is compared by file name, not by folder
    (lambda r: r.config["load"].update(users=[1, 2]), "config key load.users differs",
     "[1, 2] here, [1, 4, 8] there"),
    (lambda r: r.model["inputs"][0].update(shape=[8, 1, 8, 8]), "model inputs differ",
     "x: 8×1×8×8 float32 here, x: 1×1×8×8 float32 there"),  # another batch size
])
def test_another_config_is_refused_naming_the_key(tmp_path, capsys, change, what, values):
    other = machine_run(**XEON)
    change(other)
    a, b = saved(tmp_path, "laptop", machine_run(**LAPTOP)), saved(tmp_path, "xeon", other)
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "both.html")]) == 2
    assert capsys.readouterr().err == f"mcbench: cannot merge {b}: {what} from {a} ({values})\n"
    assert not (tmp_path / "both.html").exists()


def test_what_belongs_to_the_machine_may_differ():
    laptop, xeon = machine_run(**LAPTOP), machine_run(**XEON)
    xeon.config["load"].update(cost_per_hour=1.53, locust_workers=4)  # profile-less cost, the load generator
    xeon.config["weights"] = "/elsewhere/w.safetensors"
    xeon.config["cache_dir"] = "/scratch/cache"
    multi = merge_runs([("laptop/results.json", laptop), ("xeon/results.json", xeon)])
    assert multi.labels() == ["laptop", "xeon"] and multi.warnings == []


def test_every_variant_record_is_labelled_with_its_machine():
    a, b = sample_run(), sample_run()
    b.run_id, b.environment = "other", {**b.environment, "cpu_model": "Other CPU"}
    multi = merge_runs([("m1/results.json", a), ("m2/results.json", b)])
    records = [(r.machine, r.variant.name) for r in multi.records()]
    assert records.count(("m1", "ort-fp32")) == 1 and records.count(("m2", "ort-fp32")) == 1
    assert len(records) == 10
    page = render_merged(multi)
    assert page.count('data-variant="ort-fp32"') == 2  # the same name from two machines: two rows


def test_the_same_run_twice_or_a_run_without_model_hash_is_refused():
    run = sample_run()
    with pytest.raises(MergeError, match=r"^cannot merge b/results.json: it is the same run as a/results.json "
                                         r"\(run 20260101-120000-digits\): give each machine's results once$"):
        merge_runs([("a/results.json", run), ("b/results.json", copy.deepcopy(run))])
    bare = sample_run()
    bare.run_id = "bare"
    for v in bare.variants:
        v.artifact = {}
    assert model_sha256(bare) is None
    with pytest.raises(MergeError, match=r"^cannot merge c/results.json: it records no model sha256 \(its baseline "
                                         r"torch-fp32 has no artifact\)"):
        merge_runs([("a/results.json", run), ("c/results.json", bare)])


def test_different_p99_budgets_are_merged_with_a_warning():
    laptop, xeon = machine_run(**LAPTOP), machine_run(**XEON, budget_ms=20.0)  # the xeon profile's own budget
    multi = merge_runs([("laptop/results.json", laptop), ("xeon/results.json", xeon)])
    assert multi.warnings == [
        "the p99 budgets differ between the machines (50.0 ms on laptop (local-2core-avx2); 20.0 ms on xeon "
        "(xeon-avx512-vnni)): their capacity figures are not like for like"]
    assert "the p99 budgets differ between the machines" in render_merged(multi)


def test_machine_labels_are_the_run_folders_told_apart():
    assert machine_labels(["runs/a/results.json", "runs/b/results.json"]) == ["a", "b"]
    assert machine_labels(["x/run/results.json", "y/run/results.json"]) == ["x/run", "y/run"]
    assert machine_labels(["r/results.json", "r/old.json"]) == ["r (results.json)", "r (old.json)"]


def test_the_merged_page_escapes_names():
    a, b = sample_run(model_name=EVIL), sample_run(model_name=EVIL)
    b.run_id = "two"
    b.variants[1].name = EVIL
    page = render_merged(merge_runs([("a/results.json", a), ("b/results.json", b)]))
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_single_file_is_rendered_as_before(tmp_path, capsys):
    results = saved(tmp_path, "run", machine_run(**LAPTOP))
    assert main(["report", str(results)]) == 0
    assert capsys.readouterr().out == f"report: {results.with_name('report.html')}\n"
    page = results.with_name("report.html").read_text(encoding="utf-8")
    assert page == render_report(load_results(results))
    assert "mcbench report · " not in page and 'id="differences"' not in page
    # the profile card as it always was (now an include shared with the merged page): no machine line
    assert ('    <div class="card">\n      <h3>cpu-small</h3>\n      <p class="muted">2 variants</p>\n'
            in render_report(profile_run()))
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(results), "--out", str(out)]) == 0 and out.is_file()


def test_a_missing_or_broken_file_among_several_is_named(tmp_path, capsys):
    a = saved(tmp_path, "laptop", machine_run(**LAPTOP))
    missing = tmp_path / "xeon" / "results.json"
    assert main(["report", str(a), str(missing), "--out", str(tmp_path / "both.html")]) == 2
    assert capsys.readouterr().err == f"mcbench: {missing}: no such file\n"
