"""PyTorch references per batch size (``sweep.references``): the batch of one's outputs repeated only where a
batch of two shows the model treats samples apart, a forward pass of its own otherwise; cached between runs."""

import json

import numpy as np
import torch

from framework.cli import main
from tests.test_faults import make_model, run

BATCH_SCALED = "return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3))) * image.shape[0]"  # mixes the batch


def references(out, name: str, batch_size: int) -> tuple[np.ndarray, str]:
    """The batch's reference outputs and how they were computed (the cache's record)."""
    [path] = (out / name / "cache").glob(f"*/inputs_references_bs{batch_size}.npz")
    with np.load(path) as data:
        logits = data["reference:logits"]
    info = json.loads(path.with_name(path.name + ".meta.json").read_text())["info"]
    return logits, info["computed"]


def forward(models, name: str, batch_size: int) -> np.ndarray:
    """The module's own outputs on the sweep's batch: the example input repeated."""
    from framework.registry import discover

    loader = discover([models], use_default_dirs=False, entry_points=False).get(name).create()
    [image] = loader.runtime_inputs()
    with torch.inference_mode():
        return loader.load_pytorch_module().eval()(torch.from_numpy(np.repeat(image, batch_size, axis=0))).numpy()


def test_a_model_that_treats_samples_apart_gets_the_batch_of_one_repeated_and_it_equals_the_forward_pass(tmp_path, capsys):
    models = make_model(tmp_path / "models", "apart")
    assert run(models, "apart", tmp_path / "out", "--engines", "pytorch-cpu", "--batch-sizes", "1,4") == 0
    one, _ = references(tmp_path / "out", "apart", 1)
    four, how = references(tmp_path / "out", "apart", 4)
    assert how == "batch of one repeated"
    assert np.array_equal(four, np.repeat(one, 4, axis=0))
    np.testing.assert_allclose(four, forward(models, "apart", 4), rtol=1e-5, atol=1e-6)
    assert "forward pass at every batch size" not in capsys.readouterr().out


def test_a_model_that_mixes_the_batch_gets_a_forward_pass_per_batch_size_and_says_why(tmp_path, capsys):
    models = make_model(tmp_path / "models", "mixing", forward=BATCH_SCALED)
    assert run(models, "mixing", tmp_path / "out", "--engines", "pytorch-cpu", "--batch-sizes", "1,4", "--quiet") == 0
    one, _ = references(tmp_path / "out", "mixing", 1)
    four, how = references(tmp_path / "out", "mixing", 4)
    assert how == "forward pass"
    np.testing.assert_allclose(four, forward(models, "mixing", 4), rtol=1e-6)
    np.testing.assert_allclose(four, 4 * np.repeat(one, 4, axis=0), rtol=1e-5)  # what repeating would have got wrong
    [summary] = (tmp_path / "out" / "mixing").glob("*/pytorch-cpu__fp32__bs4/summary.json")
    assert json.loads(summary.read_text())["validity"] == "valid"


def test_references_are_reused_by_the_next_run_and_made_again_when_the_weights_change(tmp_path):
    models = make_model(tmp_path / "models", "cached")
    out = tmp_path / "out"
    assert run(models, "cached", out, "--engines", "pytorch-cpu", "--batch-sizes", "1,4") == 0
    [path] = (out / "cached" / "cache").glob("*/inputs_references_bs4.npz")
    first = path.stat().st_mtime_ns
    assert run(models, "cached", out, "--engines", "pytorch-cpu", "--batch-sizes", "1,4", "--force") == 0
    assert path.stat().st_mtime_ns == first
    load_py = models / "cached" / "load.py"
    load_py.write_text(load_py.read_text().replace("torch.manual_seed(0)", "torch.manual_seed(1)"))
    assert run(models, "cached", out, "--engines", "pytorch-cpu", "--batch-sizes", "1,4") == 0
    assert path.stat().st_mtime_ns != first
    np.testing.assert_allclose(references(out, "cached", 4)[0], forward(models, "cached", 4), rtol=1e-5, atol=1e-6)


LATE = "out = self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))\n                return out * 2 if image.shape[0] > 2 else out"


def test_a_model_that_changes_only_above_batch_two_is_told_about_and_full_references_measures_it_right(tmp_path, capsys):
    models = make_model(tmp_path / "models", "late", forward=LATE)
    argv = ["run", "late", "--models-dir", str(models), "--output", str(tmp_path / "repeated"), "--iterations", "3", "--warmup", "0",
            "--min-duration", "0", "--engines", "pytorch-cpu", "--batch-sizes", "1,2,4"]  # fmt: skip
    assert main(argv) == 0
    assert "above batch 1 are the batch of one's outputs repeated" in capsys.readouterr().out  # the shortcut says what it assumed
    assert references(tmp_path / "repeated", "late", 4)[1] == "batch of one repeated"
    assert run(models, "late", tmp_path / "full", "--engines", "pytorch-cpu", "--batch-sizes", "1,2,4", "--full-references") == 0
    four, how = references(tmp_path / "full", "late", 4)
    assert how == "forward pass"
    np.testing.assert_allclose(four, forward(models, "late", 4), rtol=1e-6)
    [summary] = (tmp_path / "full" / "late").glob("*/pytorch-cpu__fp32__bs4/summary.json")
    assert json.loads(summary.read_text())["validity"] == "valid"
