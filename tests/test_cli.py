"""The CLI end to end on tiny models: files on disk, sane numbers, a real JPEG, failures recorded."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from framework.cli import main
from framework.results.tables import CSV, columns
from tests.conftest import FIXTURE_MODELS


def run(*args):
    return main(["run", *args, "--models-dir", str(FIXTURE_MODELS), "--iterations", "8", "--warmup", "2", "--min-duration", "0", "--quiet"])


def read_summary(model_dir):
    with (model_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_run_writes_every_result_file_with_sane_values(tmp_path):
    assert run("tiny_cnn", "--output", str(tmp_path), "--batch-sizes", "1,2", "--shapes", "[(16,16,3)]", "[(24,20,3)]") == 0
    model_dir = tmp_path / "tiny_cnn"
    rows = read_summary(model_dir)
    assert list(rows[0]) == [c.name for c in columns(CSV)]
    assert len(rows) == 2 * 2 * 2  # shapes x batch sizes x engines
    assert {(r["shape"], r["engine"], r["batch_size"]) for r in rows} == {
        (s, e, b) for s in ("16x16x3", "24x20x3") for e in ("pytorch-cpu", "onnxruntime-cpu") for b in ("1", "2")
    }
    for row in rows:
        assert row["status"] == "ok", row
        lo, med, hi = float(row["min_ms"]), float(row["median_ms"]), float(row["max_ms"])
        assert 0 < lo <= med <= hi
        assert float(row["median_ci99_low_ms"]) == lo and float(row["median_ci99_high_ms"]) == hi  # n=8: widest interval
        assert row["p90_ms"] == row["p99_ms"] == ""  # 8 samples support no tail percentile
        assert row["validity"] == "valid" and row["invalid_reasons"] == ""
        assert float(row["throughput_items_per_s"]) > 0
        assert row["n"] == "8" and row["all_close"] == "True"
        assert float(row["max_abs_error"]) < 1e-4
    experiment = model_dir / "24x20x3" / "onnxruntime-cpu__fp32__bs2"
    latencies = (experiment / "latencies.csv").read_text().splitlines()
    assert latencies[0] == "iteration,latency_ms" and len(latencies) == 9
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["engine_settings"]["providers"] == ["CPUExecutionProvider"]
    assert summary["export"]["onnx_nodes"] > 0 and summary["export"]["export_s"] > 0 and summary["parameters"] == 3 * 4 * 9 + 4 + 4 * 5 + 5
    assert summary["clock"] == "perf_counter_ns" and summary["warmup"] == 2
    assert summary["load_s"] > 0 and summary["first_inference_ms"] > 0 and summary["build_s"] >= 0
    env = json.loads((model_dir / "environment.json").read_text())
    assert env["cpu_cores_logical"] >= 1 and env["packages"]["torch"] and env["packages"]["onnx"]
    table = (model_dir / "summary.md").read_text()
    assert "## shape 16x16x3" in table and table.count("| onnxruntime-cpu | fp32 |") == 4
    assert "| min ms |" in table and "| speedup (99% CI) |" in (model_dir / "report.md").read_text()
    assert f"| {float(rows[0]['min_ms']):,.3f} |" in table
    assert table.count("| valid") == 8 and "INVALID" not in table  # "valid", or "valid; warning: ..." when CV > 10%
    assert "n/a" in table  # p99 of 8 samples is shown as not available
    for shape in ("16x16x3", "24x20x3"):
        plot = model_dir / "plots" / shape / "cpu_time_measurements.jpg"
        with Image.open(plot) as image:
            assert image.format == "JPEG"
            assert image.size[0] >= 800 and image.size[1] >= 400
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 10, "the plot is blank"
        assert not (model_dir / "plots" / shape / "cuda_time_measurements.jpg").exists()


def test_a_failing_experiment_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    plugins = tmp_path / "plugins"
    shutil.copytree(FIXTURE_MODELS / "tiny_cnn", plugins / "fixed_batch")
    config = (plugins / "fixed_batch" / "config.yaml").read_text()
    config = config.replace("name: tiny_cnn", "name: fixed_batch").replace("runtime: [-1, 3, -1, -1]", "runtime: [1, 3, -1, -1]")
    config = config.replace("max: [8, 3, 64, 64]", "max: [1, 3, 64, 64]")
    (plugins / "fixed_batch" / "config.yaml").write_text(config)
    load = (plugins / "fixed_batch" / "load.py").read_text().replace('name = "tiny_cnn"', 'name = "fixed_batch"')
    (plugins / "fixed_batch" / "load.py").write_text(load)
    code = main(["run", "fixed_batch", "--models-dir", str(plugins), "--output", str(tmp_path / "out"),
                 "--batch-sizes", "1,2", "--precisions", "fp32,fp16", "--iterations", "3", "--warmup", "0", "--min-duration", "0",
                 "--quiet"])  # fmt: skip
    assert code == 1
    assert "3 of 8 experiments failed" in capsys.readouterr().err  # pytorch-cpu's fp16 rows are skipped, not failed
    rows = {(r["engine"], r["precision"], r["batch_size"]): r for r in read_summary(tmp_path / "out" / "fixed_batch")}
    assert len(rows) == 8
    for engine in ("pytorch-cpu", "onnxruntime-cpu"):
        assert rows[(engine, "fp32", "1")]["status"] == "ok"
        failed = rows[(engine, "fp32", "2")]
        assert failed["status"] == "failed"
        assert "runtime fixes batch_size to 1; batch size 2 cannot run" in failed["reason"]
    skipped = rows[("pytorch-cpu", "fp16", "1")]
    assert skipped["status"] == "skipped" and "pytorch-cpu does not run fp16" in skipped["reason"]
    assert rows[("onnxruntime-cpu", "fp16", "1")]["status"] == "ok"
    assert "failed: DeployBenchError: input 'image': runtime fixes batch_size" in (tmp_path / "out" / "fixed_batch" / "summary.md").read_text()


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    assert run("no_such_model", "--output", str(tmp_path)) == 2
    assert "unknown model 'no_such_model'; known models: " in capsys.readouterr().err
    assert run("tiny_cnn", "--output", str(tmp_path), "--engines", "warp-drive") == 2
    assert "unknown engines ['warp-drive']" in capsys.readouterr().err


def test_a_shape_the_model_cannot_take_is_refused_before_anything_runs(tmp_path, capsys):
    assert run("tiny_cnn", "--output", str(tmp_path), "--shapes", "[(16,16)]", "[(16,16,3)]") == 2
    err = capsys.readouterr().err
    assert "--shapes '[(16, 16)]': input 'image': (16, 16) has 2 dims, but runtime [-1, 3, -1, -1] has 4" in err
    assert "config.yaml" not in err and not (tmp_path / "tiny_cnn").exists()


def test_console_script_lists_models_and_engines():
    out = subprocess.run(
        [sys.executable, "-m", "framework.cli", "list", "--models-dir", str(FIXTURE_MODELS)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "tiny_cnn" in out and "resnet50" in out
    assert "pytorch-cpu              available" in out and "onnxruntime-cpu          available" in out


@pytest.mark.parametrize("text, expected", [("[(224,224,3)]", [(224, 224, 3)]), ("(8,8)", [(8, 8)]), ("[(1,6),(1,1)]", [(1, 6), (1, 1)])])
def test_shape_parsing(text, expected):
    from framework.shapes import parse_example_shapes, shape_tag

    assert parse_example_shapes(text) == expected
    assert shape_tag(expected) == "_".join("x".join(map(str, s)) for s in expected)


def test_the_readme_walkthrough_model_runs_as_written(tmp_path):
    """The README's 'Adding a model' example, extracted verbatim, must stay a working plugin."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = dict(re.findall(r"`models/tiny_mlp/(\S+)`\n```\w+\n(.*?)```", readme, re.S))
    assert set(blocks) == {"config.yaml", "load.py"}
    folder = tmp_path / "models" / "tiny_mlp"
    folder.mkdir(parents=True)
    for name, body in blocks.items():
        (folder / name).write_text(body)
    code = main(["run", "tiny_mlp", "--models-dir", str(tmp_path / "models"), "--output", str(tmp_path / "out"),
                 "--iterations", "3", "--warmup", "1", "--min-duration", "0", "--batch-sizes", "1,8", "--quiet"])  # fmt: skip
    assert code == 0
    rows = read_summary(tmp_path / "out" / "tiny_mlp")
    assert [r["status"] for r in rows] == ["ok"] * 4
