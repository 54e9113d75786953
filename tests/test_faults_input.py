"""Bad input, more of it: a plugin that does not import, a model name registered twice, a YAML alias bomb,
--shapes the model cannot take, a bad compare --factor, damaged result files, an empty or missing --models-dir.
Each gives one clear line naming the file (and line) or the argument at fault, and what an earlier run measured
survives (the ``earlier`` fixture of test_faults checks it)."""

import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from framework.cli import main
from framework.config import load_config
from framework.errors import DeployBenchError
from framework.files import write_json
from framework.measure.stats import latency_summary
from framework.measure.timing import Timing
from framework.results.record import Experiment, Result, Samples
from framework.results.store import save_result
from tests import test_faults
from tests.conftest import FIXTURE_MODELS
from tests.test_faults import FAST, make_model, run, snapshot

measured, earlier = test_faults.measured, test_faults.earlier  # the fixtures, used here by name

TINY_CNN = FIXTURE_MODELS / "tiny_cnn" / "config.yaml"


def error_line(capsys) -> str:
    """The one line ``deploybench: error: ...`` the CLI printed (asserting it is one line)."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deploybench: error: "), err
    return err


# 1. A plugin whose load.py does not import: file AND line, in `list` and in `run`.


def test_a_syntax_error_in_load_py_names_file_and_line_in_list_and_run(earlier, capsys):
    models, out = earlier
    (models / "broken").mkdir()
    load_py = (models / "broken" / "load.py").resolve()
    load_py.write_text("import os\n\ndef load(:\n    pass\n")
    assert main(["list", "--models-dir", str(models)]) == 0
    listed = capsys.readouterr().out
    assert f"(broken) {load_py}:3: import failed: SyntaxError: invalid syntax" in listed, listed
    assert "  healthy " in listed  # the others are still found
    assert run(models, "broken", out) == 2
    assert f"{load_py}:3: import failed: SyntaxError: invalid syntax" in error_line(capsys)


def test_an_exception_at_import_names_the_deepest_line_inside_the_plugin(earlier, capsys):
    models, out = earlier
    (models / "raising").mkdir()
    load_py = (models / "raising" / "load.py").resolve()
    load_py.write_text("import json\n\ndef fetch():\n    return json.loads('{not json')\n\nWEIGHTS = fetch()\n")
    assert run(models, "raising", out) == 2
    line = error_line(capsys)
    assert f"{load_py}:4: import failed: JSONDecodeError: Expecting property name" in line, line


def test_a_syntax_error_in_a_module_the_plugin_imports_is_located_too(tmp_path):
    from framework.registry import discover

    (tmp_path / "helped").mkdir()
    (tmp_path / "helped" / "helper_mod.py").write_text("x = 1\ny = (\n")
    load_py = tmp_path / "helped" / "load.py"
    load_py.write_text(
        "import importlib.util, pathlib\n"
        "spec = importlib.util.spec_from_file_location('helper_mod', pathlib.Path(__file__).with_name('helper_mod.py'))\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    (error,) = discover([tmp_path], use_default_dirs=False, entry_points=False).errors
    assert error.startswith(f"{load_py.resolve()}:3: import failed: SyntaxError: ") and "helper_mod.py:2)" in error, error


# 2. A model name registered twice fails that name only.


def test_a_duplicate_model_name_fails_only_the_models_that_share_it(earlier, capsys):
    models, out = earlier
    shutil.copytree(models / "healthy", models / "healthy_copy")
    make_model(models, "other")
    assert run(models, "healthy", out) == 2
    line = error_line(capsys)
    assert "two loaders register the model name 'healthy'" in line
    assert str((models / "healthy" / "load.py").resolve()) in line and str((models / "healthy_copy" / "load.py").resolve()) in line
    assert run(models, "other", out, "--engines", "onnxruntime-cpu") == 0
    assert main(["list", "--models-dir", str(models)]) == 0
    listed = capsys.readouterr().out
    assert "  other " in listed and "(broken) two loaders register the model name 'healthy'" in listed, listed
    assert "  healthy " not in listed


# 3. YAML aliases: a billion laughs must not be expanded.

BOMB = "".join(
    f"lol{i}: &l{i} [" + ",".join(['"lol"'] * 9 if i == 0 else [f"*l{i - 1}"] * 9) + "]\n" for i in range(9)
)  # 9 ** 9 = 387 million strings from 450 bytes


def test_a_yaml_alias_bomb_is_refused_at_once_naming_file_and_line(earlier, capsys):
    models, out = earlier
    config = models / "healthy" / "config.yaml"
    config.write_text(BOMB + config.read_text().replace("inputs:\n", "inputs: *l8\nunused:\n", 1))
    start = time.monotonic()
    assert run(models, "healthy", out) == 2
    assert time.monotonic() - start < 2.0
    assert f"{config.resolve()}: line 1: YAML aliases (&/*) are not allowed" in error_line(capsys)


def test_any_anchor_or_alias_is_refused_even_a_harmless_one(tmp_path):
    text = TINY_CNN.read_text().replace("example: [16, 16, 3]", "example: &ex [16, 16, 3]")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(DeployBenchError, match=r"config.yaml: line 7: YAML aliases \(&/\*\) are not allowed"):
        load_config(tmp_path / "config.yaml")
    assert load_config(TINY_CNN).name == "tiny_cnn"  # plain YAML still loads


# 4. --shapes the model cannot take: blamed on --shapes, before anything runs.


@pytest.mark.parametrize(
    "shapes, reason",
    [
        ([(16, 16)], "input 'image': (16, 16) has 2 dims, but runtime [-1, 3, -1, -1] has 4: give 4 dims, or 3 (the batch dim is then added)"),
        (
            [(16, 16, 5)],
            "input 'image': (16, 16, 5) becomes (1, 16, 16, 5) after the default preprocessing (batch dim added): "
            "dim 1 (channels) is 16, but runtime fixes it to 3",
        ),  # fmt: skip
        ([(1, 16, 16, 3)], "input 'image': (1, 16, 16, 3): dim 1 (channels) is 16, but runtime fixes it to 3"),
        ([(16, 16, 3), (1, 2)], "2 shapes given, but model 'tiny_cnn' has 1 inputs ('image'): one tuple per input, in order"),
    ],
    ids=["wrong-rank", "channels-not-3", "nhwc-at-runtime-rank", "too-many-inputs"],
)
def test_check_example_shapes_blames_shapes(shapes, reason):
    from framework.shapes import check_example_shapes

    text = "[" + ", ".join(str(s) for s in shapes) + "]"
    with pytest.raises(DeployBenchError) as caught:
        check_example_shapes(load_config(TINY_CNN), [None, [(32, 32, 3)], shapes])
    assert str(caught.value) == f"--shapes {text!r}: {reason}"
    assert "config.yaml" not in str(caught.value)


def test_check_example_shapes_passes_what_runs_and_trusts_a_custom_preprocess():
    from framework.loader import ModelLoader
    from framework.shapes import check_example_shapes

    config = load_config(TINY_CNN)
    check_example_shapes(config, [None, [(16, 16, 3)], [(64, 48, 3)], [(3, 16, 16)], [(2, 3, 16, 16)]])

    class Resizes(ModelLoader):
        name = "resizes"

        def preprocess(self, example_inputs):
            return example_inputs

    check_example_shapes(config, [[(16, 16)]], Resizes)  # its preprocess may do anything with the rank
    with pytest.raises(DeployBenchError, match="2 shapes given"):
        check_example_shapes(config, [[(16, 16), (16, 16)]], Resizes)
    with pytest.raises(DeployBenchError, match=r"\(16, 16\) has 2 dims.*; --shapes '\[\(16, 16, 5\)\]'"):
        check_example_shapes(config, [[(16, 16)], [(16, 16, 5)]], ModelLoader)  # every bad value, one line


@pytest.mark.parametrize("runtime, names", [([-1, 3, -1, -1], None), ([-1, -1, -1, -1], None), ([4, -1, 1], ["c", "batch_size", "w"])])
@pytest.mark.parametrize("shape", [(16, 16, 3), (16, 16, 1), (3, 16, 16), (16, 16, 5), (1, 3, 16, 16), (16, 16), (7, 5)])
def test_the_shape_rule_matches_default_preprocess(runtime, names, shape):
    from framework.config import InputSpec
    from framework.loader import default_preprocess
    from framework.shapes import default_preprocessed_shape

    dims_names = tuple(names or ["batch_size", "channels", "height", "width"])
    spec = InputSpec("image", "float32", dims_names, shape, tuple(runtime), None)
    if len(shape) not in (len(runtime), len(runtime) - 1):
        return
    assert default_preprocessed_shape(shape, spec) == default_preprocess(np.zeros(shape, np.float32), spec).shape


def test_bad_shapes_through_the_cli_are_bad_input_blaming_shapes(earlier, capsys):
    models, out = earlier
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--shapes", "[(16,16)]") == 2
    line = error_line(capsys)
    assert "--shapes '[(16, 16)]': input 'image': (16, 16) has 2 dims" in line and "config.yaml" not in line
    assert not (out / "healthy" / "16x16").exists()


# 5. compare: the factor, and damaged files.

ENV = {"cpu_model": "Test CPU", "python": "3.11.7", "gpus": [], "packages": {"torch": "2.14.1"}}


def write_measured(root: Path, engines: list[str], seed: int = 0) -> Path:
    """One model, one experiment per engine, as a run writes it: 200 samples and their statistics."""
    rng = np.random.default_rng(seed)
    write_json(root / "m" / "environment.json", ENV)
    for engine in engines:
        experiment = Experiment("m", "8x8", ((8, 8),), engine, "fp32", 1)
        ns = tuple(int(v) for v in 10e6 * (1 + 0.01 * rng.standard_normal(200)))
        latency = latency_summary(Timing(ns, sum(ns), 0, "perf_counter_ns"), 1)
        result = Result(experiment, "test", "cpu", "ok", validity="valid", samples=Samples(ns), latency=latency)
        save_result(experiment.folder(root), result)
    return root


@pytest.mark.parametrize("factor", ["0", "nan", "-1", "inf", "0.5", "-inf"])
def test_compare_refuses_a_factor_that_is_not_a_finite_number_of_at_least_1(tmp_path, capsys, factor):
    a, b = write_measured(tmp_path / "a", ["e"]), write_measured(tmp_path / "b", ["e"], seed=1)
    before = snapshot(a)
    assert main(["compare", str(a), str(b), f"--factor={factor}"]) == 2
    assert f"--factor {float(factor)!r}: must be a finite number >= 1" in error_line(capsys)
    from framework.results.compare import compare

    with pytest.raises(DeployBenchError, match="must be a finite number >= 1"):
        compare(a, b, float(factor))
    assert main(["compare", str(a), str(b), "--factor", "1"]) == 0
    assert snapshot(a) == before


def test_compare_skips_damaged_files_with_warnings_naming_them_and_reports_the_rest(tmp_path, capsys):
    a, b = write_measured(tmp_path / "a", ["e", "f", "g"]), write_measured(tmp_path / "b", ["e", "f", "g"], seed=1)
    before = snapshot(a)
    not_json = b / "m" / "8x8" / "e__fp32__bs1" / "summary.json"
    not_json.write_text("[1,2]")
    truncated = b / "m" / "8x8" / "f__fp32__bs1" / "latencies.csv"
    truncated.write_text(truncated.read_text()[:1500])
    (b / "m" / "environment.json").write_text('{"cpu_model": ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["compare", str(a), str(b)])
    out, messages = capsys.readouterr().out, [str(w.message) for w in caught]
    assert code == 0, out
    assert any(str(not_json) in m and "not a deploybench result" in m for m in messages), messages
    assert any(str(truncated) in m and "summary.json counts 200" in m for m in messages), messages
    assert any(str(b / "m" / "environment.json") in m for m in messages), messages
    assert "m 8x8 g fp32 bs1" in out and "geometric mean of B/A over 1 pairs" in out
    assert "m 8x8 f fp32 bs1: not compared, B: latencies.csv holds" in out and "m 8x8 e fp32 bs1: only in A" in out
    assert snapshot(a) == before
    assert json.loads((a / "m" / "8x8" / "e__fp32__bs1" / "summary.json").read_text())["engine"] == "e"


# 6. --models-dir that is missing, empty, a file, or one model's own folder.


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "holds no model plugin (no {path}/<model>/load.py)"),
        (lambda root: (root / "file.txt").write_text("x") and root / "file.txt", "is not a folder"),
    ],
    ids=["missing", "empty", "a-file"],
)
@pytest.mark.parametrize("command", ["run", "list"])
def test_a_models_dir_without_plugins_is_named(earlier, tmp_path, capsys, make, message, command):
    _, out = earlier
    path = make(tmp_path).resolve()
    argv = ["run", "healthy", "--output", str(out), *FAST] if command == "run" else ["list"]
    assert main([*argv, "--models-dir", str(path)]) == 2
    assert f"models folder {path} {message.format(path=path)}" in error_line(capsys)


def test_a_models_dir_that_is_one_models_folder_says_to_give_its_parent(earlier, capsys):
    models, out = earlier
    assert run(models / "healthy", "healthy", out) == 2
    assert f"it holds a load.py itself, so give its parent folder {models.resolve()}" in error_line(capsys)
