"""One conformance test over every registered pass, the way scikit-learn's `check_estimator` checks every estimator.

Fast, for every pass: its record is the one its registration makes (name, module, config read from the
function's signature, which recipes bind to), it is documented, the registry loads without a heavy library,
and its record is enforced before any work (a format it does not take, data it needs and the context lacks).
Slow, for every pass and every format it takes: applied to a tiny model of that format, it makes the format
its record says, the result runs, its files stay in its out_dir, and the input's files are untouched.
A pass whose libraries are not installed is skipped with the reason. A new pass is checked with no edit here.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module, metadata
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from mcbench.optimizer.artifact import FORMATS, Artifact, InputSpec, generated_inputs
from mcbench.optimizer.passes import (
    DATA_NAMES,
    PassContext,
    PassError,
    apply_step,
    make_record,
    records,
)
from mcbench.optimizer.recipe_syntax import RecipeError, Step, bind_arguments, parse_step

ROOT = Path(__file__).resolve().parents[1]
RECORDS = records()
NAMES = sorted(RECORDS)
HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "torch_pruning", "onnxscript")
# the runtime that runs a result of each format, and the distribution it comes from
RUNTIMES = {"torch": ("torch", "torch"), "pt2": ("torch", "torch"), "onnx": ("onnxruntime", "onnxruntime"),
            "openvino": ("openvino", "openvino")}
# passes that apply only to a kind of model: the tiny model they are checked on (the others get the CNN)
MODEL_KIND = {"fuse.transformer": "transformer", "quant.int8_static_smooth": "transformer"}
CNN_SPECS = (InputSpec("x", (1, 3, 8, 8)),)
BERT_SPECS = (InputSpec("input_ids", (1, 8), "int64", 0, 50), InputSpec("attention_mask", (1, 8), "int64", 1, 2))


def _dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower() for s in specs}


def _documented() -> tuple[dict[str, str], dict[str, str]]:
    """docs/passes.md: the generated table's row of each pass, and its entry under "What each pass does"."""
    text = (ROOT / "docs" / "passes.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_0-9]+\.[a-z_0-9]+)` \|(.*)$", text, re.MULTILINE))
    entries = dict(re.findall(r"^- \*\*`([a-z_0-9]+\.[a-z_0-9]+)`\*\* (.*)$", text, re.MULTILINE))
    return rows, entries


# --- fast: the records -----------------------------------------------------------------------------------


def test_the_registry_imports_no_heavy_library():
    code = ("import sys; from mcbench.optimizer.passes import records; records(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_every_module_that_registers_a_pass_is_in_the_registry():
    folder = ROOT / "optimizer" / "passes"
    registering = {p.stem for p in folder.glob("*.py") if "@register(" in p.read_text(encoding="utf-8")}
    registering.discard("__init__")  # its docstring shows how
    assert {r.module.rpartition(".")[2] for r in RECORDS.values()} == registering


def _fine(artifact, ctx, out_dir, ratio: float = 0.5):
    """A pass that would register."""
    return artifact


def _no_default(artifact, ctx, out_dir, ratio: float):
    return artifact


def _a_list(artifact, ctx, out_dir, ratios: list = ()):  # noqa: B006
    return artifact


def _wrong_default(artifact, ctx, out_dir, mode: Literal["a", "b"] = "c"):
    return artifact


def _no_out_dir(artifact, ctx, ratio: float = 0.5):
    return artifact


@pytest.mark.parametrize(("name", "fn", "takes", "makes", "needs", "libraries", "message"), [
    ("fine", _fine, ("onnx",), None, (), ("onnx",), "the name must be 'family.pass'"),
    ("p.q", _fine, ("tflite",), None, (), ("onnx",), "unknown artifact format 'tflite'"),
    ("p.q", _fine, ("onnx",), "tflite", (), ("onnx",), "unknown artifact format 'tflite'"),
    ("p.q", _fine, (), None, (), ("onnx",), "takes no artifact format"),
    ("p.q", _fine, ("onnx",), None, ("labels",), ("onnx",), "needs unknown data 'labels'"),
    ("p.q", _fine, ("onnx",), None, (), (), "names no library"),
    ("p.q", _no_default, ("onnx",), None, (), ("onnx",), "parameter ratio has no default"),
    ("p.q", _a_list, ("onnx",), None, (), ("onnx",), "parameter ratios: annotate it bool, int, float, str"),
    ("p.q", _wrong_default, ("onnx",), None, (), ("onnx",), "parameter mode: default 'c' is not a str in"),
    ("p.q", _no_out_dir, ("onnx",), None, (), ("onnx",), "_no_out_dir must start with (artifact, ctx, out_dir)"),
])
def test_a_record_that_does_not_hold_together_is_refused_at_registration(name, fn, takes, makes, needs, libraries,
                                                                         message):
    with pytest.raises(TypeError, match=f"^pass {re.escape(name)}: {re.escape(message)}"):
        make_record(name, fn, takes, makes, needs, libraries)


def test_a_name_registered_twice_is_refused(monkeypatch):
    from mcbench.optimizer import passes

    monkeypatch.setattr(passes, "_RECORDS", dict(RECORDS))
    twice = ("^pass quant.fp16: registered twice, by mcbench.optimizer.passes.quantize.fp16 "
             "and tests.test_pass_conformance._fine$")
    with pytest.raises(TypeError, match=twice):
        passes.register("quant.fp16", takes=("onnx",), libraries=("onnx",))(_fine)
    passes.register("quant.fp16", takes=("onnx",), libraries=("onnx",))(RECORDS["quant.fp16"].fn)  # a reload


@pytest.mark.parametrize("name", NAMES)
def test_the_record_is_its_registration(name):
    record = RECORDS[name]
    assert record.name == name and name.islower()
    assert record.module == record.fn.__module__ and record.module.startswith("mcbench.optimizer.passes.")
    assert getattr(import_module(record.module), record.fn.__name__) is record.fn
    again = make_record(name, record.fn, record.takes, record.makes, record.needs, record.libraries)
    assert again == record  # nothing in the record is declared apart from the function's signature
    signature = list(inspect.signature(record.fn).parameters.values())
    assert [p.name for p in signature[:3]] == ["artifact", "ctx", "out_dir"]
    assert [(p.name, p.default) for p in signature[3:]] == [(p.name, p.default) for p in record.config]
    assert set(record.takes) <= set(FORMATS) and record.makes in (None, *FORMATS)
    assert set(record.needs) <= set(DATA_NAMES)
    assert set(record.libraries) <= _dependencies(), "a pass's libraries are mcbench's dependencies"
    assert record.summary(), "a pass says what it does in its docstring's first line"


@pytest.mark.parametrize("name", NAMES)
def test_recipes_bind_to_the_declared_config(name):
    record = RECORDS[name]
    assert bind_arguments(Step(name), record.fn) == {}  # every parameter has a default: the bare name is a recipe
    explicit = Step(name, kwargs=tuple((p.name, p.default) for p in record.config))
    assert parse_step(str(explicit)) == explicit
    assert bind_arguments(explicit, record.fn) == {p.name: p.default for p in record.config}
    with pytest.raises(RecipeError, match="has no parameter 'no_such_parameter' .it takes: "):
        bind_arguments(Step(name, kwargs=(("no_such_parameter", 1),)), record.fn)
    for p in record.config:
        wrong = "not-a-number" if p.type in (int, float) else (1.5 if p.type is bool else True)
        with pytest.raises(RecipeError, match=f"{p.name} must be"):
            apply_step(Artifact(Path("unused"), record.takes[0], CNN_SPECS, factory="f:f"),
                       Step(name, kwargs=((p.name, wrong),)), PassContext(), Path("unused"))
        if p.choices:
            with pytest.raises(RecipeError, match=f"{p.name} must be one of {', '.join(map(str, p.choices))}"):
                apply_step(Artifact(Path("unused"), record.takes[0], CNN_SPECS, factory="f:f"),
                           Step(name, kwargs=((p.name, "no_such_choice"),)), PassContext(), Path("unused"))


@pytest.mark.parametrize("name", NAMES)
def test_the_docs_document_the_pass_and_its_parameters(name):
    rows, entries = _documented()
    row = rows.get(name)
    assert row is not None, (f"docs/passes.md's pass table has no row for `{name}`: "
                             "run python -m mcbench.docs_tables --write")
    for p in RECORDS[name].config:
        assert f"`{p.name}`: " in row, f"docs/passes.md's row for `{name}` does not name its parameter `{p.name}`"
    takes = {"torch": "PyTorch", "pt2": "PyTorch", "onnx": "ONNX", "openvino": "OpenVINO IR"}
    assert f"({takes[RECORDS[name].takes[0]]}" in entries.get(name, ""), \
        f"docs/passes.md has no entry for `{name}` under 'What each pass does and records'"


def _absent_artifact(tmp_path: Path, fmt: str) -> Artifact:
    """An artifact whose file does not exist: a pass that did any work on it would fail otherwise."""
    return Artifact(tmp_path / "absent" / "model", fmt, CNN_SPECS, factory="tests.zoo:conv_net")


def _full_context(specs: tuple[InputSpec, ...] = CNN_SPECS, classes: int = 10) -> PassContext:
    rng = np.random.default_rng(0)
    feeds = generated_inputs(specs, 16, seed=1)
    train = ({s.name: np.concatenate([s.sample(rng) for _ in range(32)]) for s in specs},
             rng.integers(0, classes, 32))
    return PassContext(generated_inputs(specs, 8, seed=2), "generated", train=train,
                       validation=(feeds, rng.integers(0, classes, len(feeds))))


NEEDS = [(name, need) for name in NAMES for need in RECORDS[name].needs]


@pytest.mark.parametrize(("name", "need"), NEEDS, ids=[f"{n}-{d}" for n, d in NEEDS])
def test_needs_are_enforced_before_any_work(name, need, tmp_path):
    full = _full_context()
    ctx = PassContext(full.calibration if need != "calibration" else None, full.calibration_source,
                      train=full.train if need != "train" else None,
                      validation=full.validation if need != "validation" else None)
    out = tmp_path / "out"
    with pytest.raises(PassError) as err:
        apply_step(_absent_artifact(tmp_path, RECORDS[name].takes[0]), name, ctx, out)
    assert str(err.value) == f"{name} needs {DATA_NAMES[need]}, and none was given"
    assert not out.exists() and ctx.messages == []


def test_the_needs_checks_cover_calibration_and_validation():
    assert {"calibration", "validation"} <= {need for _, need in NEEDS}


OTHER_FORMATS = [(name, fmt) for name in NAMES for fmt in FORMATS if fmt not in RECORDS[name].takes]


@pytest.mark.parametrize(("name", "fmt"), OTHER_FORMATS, ids=[f"{n}-{f}" for n, f in OTHER_FORMATS])
def test_formats_it_does_not_take_are_refused_before_any_work(name, fmt, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(PassError, match=f"^{re.escape(name)} needs an? .* model(; put export.onnx before it|, not )"):
        apply_step(_absent_artifact(tmp_path, fmt), name, _full_context(), out)
    assert not out.exists()


# --- slow: every pass on a tiny model of each format it takes ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[tuple[str, str], Artifact]:
    """(kind, format) -> a tiny model: a CNN as a state_dict, a torch.export archive and ONNX; a BERT-like ONNX."""
    torch = pytest.importorskip("torch")
    from tests.zoo import conv_net

    folder = tmp_path_factory.mktemp("tiny-models")
    module = conv_net().eval()
    torch.save(module.state_dict(), folder / "cnn.pt")
    example = (torch.zeros(CNN_SPECS[0].shape),)
    torch.export.save(torch.export.export(module, example), str(folder / "cnn.pt2"))
    _export_onnx(torch, module, example, ["x"], folder / "cnn.onnx")
    models = {("cnn", "torch"): Artifact(folder / "cnn.pt", "torch", CNN_SPECS, factory="tests.zoo:conv_net"),
              ("cnn", "pt2"): Artifact(folder / "cnn.pt2", "pt2", CNN_SPECS),
              ("cnn", "onnx"): Artifact(folder / "cnn.onnx", "onnx", CNN_SPECS)}
    from mcbench.models import bert_like

    bert = bert_like(layers=1, hidden=32, heads=2, ffn=64, vocab=50, max_len=8, num_classes=3).eval()
    example = tuple(torch.from_numpy(s.sample(np.random.default_rng(0))) for s in BERT_SPECS)
    _export_onnx(torch, bert, example, [s.name for s in BERT_SPECS], folder / "bert.onnx")
    models["transformer", "onnx"] = Artifact(folder / "bert.onnx", "onnx", BERT_SPECS)
    return models


def _export_onnx(torch, module, example, names, path: Path) -> None:
    """TorchScript export (quick, and the graph onnxruntime's transformer fusions match)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=names, output_names=["output"], dynamo=False,
                          opset_version=17)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under folder, by relative path, with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _missing(libraries) -> list[str]:
    missing = []
    for name in libraries:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


APPLIED = [(name, fmt) for name in NAMES for fmt in RECORDS[name].takes]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fmt"), APPLIED, ids=[f"{n}-{f}" for n, f in APPLIED])
def test_the_pass_makes_what_its_record_says_and_touches_only_its_out_dir(name, fmt, tiny_models, tmp_path,
                                                                          monkeypatch):
    from mcbench.optimizer.targets import Target, open_session

    record = RECORDS[name]
    made = record.makes_from(fmt)
    missing = _missing((*record.libraries, RUNTIMES[made][1]))
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}, not installed")
    kind = MODEL_KIND.get(name, "cnn")
    if (kind, fmt) not in tiny_models:
        pytest.fail(f"this test builds no tiny {kind} model as {fmt}: add one to tiny_models")
    source = tiny_models[kind, fmt]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in source.files():
        shutil.copy2(f, inputs / f.name)
    artifact = Artifact(inputs / source.path.name, source.format, source.inputs, factory=source.factory)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # a pass that wrote to the working directory would leave it here
    before = _tree(tmp_path)
    out = tmp_path / "out"
    ctx = _full_context(source.inputs, classes=3 if kind == "transformer" else 10)

    result = apply_step(artifact, name, ctx, out)

    assert result.format == made
    assert result.inputs == artifact.inputs
    assert all(f.is_file() and f.resolve().is_relative_to(out.resolve()) for f in result.files())
    assert len(result.passes) == len(artifact.passes) + 1 and result.passes[-1]["pass"] == name
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before  # input files untouched
    session = open_session(result, Target(RUNTIMES[made][0]))
    outputs = session.run(generated_inputs(result.inputs, 1, seed=5)[0])
    assert outputs and all(np.all(np.isfinite(np.asarray(o, np.float64))) for o in outputs)
