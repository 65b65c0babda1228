from pathlib import Path

import pytest

from mcbench.optimizer.intake import InputOverride, IntakeError, load_onnx, parse_inputs
from tests.conftest import make_linear_onnx


def test_parse_inputs_reads_name_and_dims():
    assert parse_inputs(["image=1,3,224,224", "ids=1,128"]) == {
        "image": InputOverride((1, 3, 224, 224)), "ids": InputOverride((1, 128))
    }


def test_parse_inputs_reads_dtype_and_integer_range():
    assert parse_inputs(["ids=1,128:int64:5-30522"]) == {"ids": InputOverride((1, 128), "int64", 5, 30522)}
    assert parse_inputs(["x=2,3:float16"]) == {"x": InputOverride((2, 3), "float16")}


def test_parse_inputs_rejects_unknown_dtype():
    with pytest.raises(IntakeError, match="dtype 'complex' is not one of float32"):
        parse_inputs(["x=1,2:complex"])


def test_load_onnx_rejects_dtype_the_model_does_not_take(linear_onnx):
    with pytest.raises(IntakeError, match="--input x says int64, the model takes float32"):
        load_onnx(linear_onnx, {"x": InputOverride((1, 4), "int64")})


BAD_INPUTS = ["image", "image=", "=1,2", "image=1,x", "image=1,0"]  # a bad range: test_hostile_services, an empty
# one: test_hostile_cli


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_parse_input_shapes_rejects_malformed(bad):
    with pytest.raises(IntakeError, match="expected NAME=D1,D2"):
        parse_inputs([bad])


def test_load_onnx_reads_static_input_spec(linear_onnx):
    artifact = load_onnx(linear_onnx)
    assert [(s.name, s.shape, s.dtype) for s in artifact.inputs] == [("x", (1, 4), "float32")]


def test_load_onnx_fills_symbolic_batch_from_input_shapes(tmp_path):
    path = make_linear_onnx(tmp_path / "dyn.onnx", batch="batch")
    assert load_onnx(path, {"x": InputOverride((8, 4))}).inputs[0].shape == (8, 4)


def test_load_onnx_names_unresolved_dimension(tmp_path):
    path = make_linear_onnx(tmp_path / "dyn.onnx", batch="batch")
    expected = r"input 'x' has unresolved dimensions 0 \(batch\); give them with --input x=N,4"
    with pytest.raises(IntakeError, match=expected):
        load_onnx(path)


def test_load_onnx_rejects_shape_that_contradicts_model(linear_onnx):
    with pytest.raises(IntakeError, match="dimension 1 is 5, the model fixes it at 4"):
        load_onnx(linear_onnx, {"x": InputOverride((1, 5))})


def test_load_onnx_rejects_unknown_input_name(linear_onnx):
    with pytest.raises(IntakeError, match=r"--input names y not among the model's inputs \(x\)"):
        load_onnx(linear_onnx, {"y": InputOverride((1, 4))})


def test_load_onnx_missing_file(tmp_path):
    with pytest.raises(IntakeError, match=r"nope.onnx: no such file"):
        load_onnx(tmp_path / "nope.onnx")


def test_load_onnx_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(IntakeError, match="empty.onnx: the file is empty"):
        load_onnx(path)


def test_load_onnx_text_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    with pytest.raises(IntakeError, match="notes.onnx: not a readable ONNX model"):
        load_onnx(path)


def _with_external_location(tmp_path: Path, location: str) -> Path:
    """A copy of the linear model whose first weight claims to live at `location`."""
    import onnx

    model = onnx.load(str(make_linear_onnx(tmp_path / "m.onnx")))
    weight = model.graph.initializer[0]
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    (tmp_path / "sub").mkdir(exist_ok=True)
    path = tmp_path / "sub" / "evil.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "a/../../secret.bin"])
def test_load_onnx_refuses_external_data_outside_folder(tmp_path, location):
    path = _with_external_location(tmp_path, location)
    with pytest.raises(IntakeError, match=f"external data '{location}' points outside the model folder"):
        load_onnx(path)


def test_load_onnx_refuses_external_data_through_a_symlink(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    path = _with_external_location(tmp_path, "link.bin")
    (tmp_path / "sub" / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(IntakeError, match="external data 'link.bin' points outside the model folder"):
        load_onnx(path)
