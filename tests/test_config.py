"""config.yaml validation: a valid file parses; each mistake names the file, the field and the problem."""

import textwrap

import numpy as np
import pytest

from framework.config import load_config
from framework.errors import ConfigError
from framework.loader import ModelLoader

VALID = """
name: resnet50
inputs:
  - name: image
    dtype_str: float32
    shapes:
      dims_names: [batch_size, channels, height, width]
      example: [224, 224, 3]
      runtime: [1, 3, -1, -1]
      optimization: {min: [1,3,128,128], opt: [1,3,256,256], max: [1,3,512,512]}
outputs:
  - name: probs
    shape: {runtime: [1, 1000], dims_names: [batch_size, probs]}
"""


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_example_parses_into_typed_objects(tmp_path):
    config = load_config(write(tmp_path, VALID))
    (image,) = config.inputs
    assert config.name == "resnet50"
    assert image.dtype == np.float32
    assert image.runtime == (1, 3, -1, -1)
    assert image.dynamic_axes == {2: "height", 3: "width"}
    assert image.batch_axis == 0
    assert image.optimization.opt == (1, 3, 256, 256)
    assert config.output_names == ["probs"]
    # batch_size is fixed here, so the output's batch dim is not dynamic either
    assert config.output_dynamic_axes(config.outputs[0]) == {}


@pytest.mark.parametrize(
    "old, new, field, problem",
    [
        ("    dtype_str: float32\n", "", "inputs[0].dtype_str", "missing required field"),
        ("dtype_str: float32", "dtype_str: float33", "inputs[0].dtype_str", "unknown dtype 'float33'"),
        ("dims_names: [batch_size, channels, height, width]", "dims_names: [batch_size, channels, height]",
         "inputs[0].shapes.dims_names", "3 names, but runtime has 4 dims"),
        ("min: [1,3,128,128]", "min: [1,3,128]", "inputs[0].shapes.optimization.min", "3 dims, but runtime has 4"),
        ("opt: [1,3,256,256]", "opt: [1,3,600,256]", "inputs[0].shapes.optimization",
         "dim 2 (height) needs min <= opt <= max, got 128, 600, 512"),
        ("max: [1,3,512,512]", "max: [2,3,512,512]", "inputs[0].shapes.optimization.max[0]",
         "is 2, but runtime fixes dim 0 (batch_size) to 1"),
        ("runtime: [1, 3, -1, -1]", "runtime: [1, 3, -2, -1]", "inputs[0].shapes.runtime[2]",
         "expected a positive integer or -1 (dynamic), got -2"),
        ("example: [224, 224, 3]", "example: [224, 224, 0]", "inputs[0].shapes.example[2]",
         "expected a positive integer, got 0"),
        ("name: resnet50", "name: ../escape", "name", "may only contain letters"),
        ("outputs:\n  - name: probs", "outputs:\n  - name: image", "outputs", "also input names"),
        ("    shape: {runtime: [1, 1000], dims_names: [batch_size, probs]}\n", "", "outputs[0].shape",
         "missing required field"),
        ("example: [224, 224, 3]", "example: 224", "inputs[0].shapes.example", "expected a non-empty list of integers"),
    ],
)  # fmt: skip
def test_each_mistake_names_file_field_and_problem(tmp_path, old, new, field, problem):
    assert old in VALID, "the test's edit must apply"
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert problem in message
    assert caught.value.field == field


def test_duplicate_input_names(tmp_path):
    doubled = VALID.replace("outputs:", VALID.split("inputs:\n")[1].split("outputs:", maxsplit=1)[0] + "outputs:", 1)
    path = write(tmp_path, doubled)
    with pytest.raises(ConfigError, match=r"inputs\[1\]\.name: duplicate name 'image' \(also inputs\[0\]\)"):
        load_config(path)


def test_invalid_yaml_and_empty_file_name_the_file(tmp_path):
    broken = write(tmp_path, "name: [unclosed\n", "broken.yaml")
    with pytest.raises(ConfigError, match=rf"^{broken}: not valid YAML"):
        load_config(broken)
    empty = write(tmp_path, "", "empty.yaml")
    with pytest.raises(ConfigError, match=rf"^{empty}: file is empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    path = write(tmp_path, "!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_example_shape_incompatible_with_runtime_after_preprocessing(tmp_path):
    # A grey 2-D example cannot become the 4-D NCHW runtime tensor: the default preprocessing leaves it 2-D.
    path = write(tmp_path, VALID.replace("example: [224, 224, 3]", "example: [224, 224]"))
    loader = ModelLoader(load_config(path))
    with pytest.raises(ConfigError) as caught:
        loader.runtime_inputs()
    message = str(caught.value)
    assert message.startswith(f"{path}: inputs[0].shapes.example: [224, 224] becomes (224, 224) after preprocessing")
    assert "2 dims, but runtime [1, 3, -1, -1] has 4" in message


def test_default_preprocess_turns_hwc_into_nchw_float32(tmp_path):
    loader = ModelLoader(load_config(write(tmp_path, VALID)), example_shapes=[(32, 48, 3)])
    (tensor,) = loader.runtime_inputs()
    assert tensor.shape == (1, 3, 32, 48)
    assert tensor.dtype == np.float32
    (example,) = loader.load_example_inputs()
    np.testing.assert_array_equal(tensor[0, 1], example[:, :, 1])  # channel 1 moved, not mixed
