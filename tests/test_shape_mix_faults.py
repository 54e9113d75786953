"""Shapes as served (issue 16) under faults: a bucket the model cannot run is named in the failure."""

import json

from framework.cli import main
from tests.test_faults import make_model


def test_a_bucket_the_model_cannot_run_is_named_in_the_failure(tmp_path, capsys):
    """The model refuses images wider than 40: the experiment fails, and its reason says which bucket."""
    forward = "return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3))) if image.shape[-1] <= 40 else torch.ones(3).reshape(7)"
    models = make_model(tmp_path / "models", "narrow", forward=forward)
    (tmp_path / "seen.csv").write_text("height,width\n16,16\n16,48\n")
    code = main(["run", "narrow", "--models-dir", str(models), "--shape-distribution", str(tmp_path / "seen.csv"), "--engines", "pytorch-cpu",
                 "--iterations", "5", "--mix-iterations", "10", "--in-process", "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 1
    result = json.loads((tmp_path / "out" / "narrow" / "shape_mix" / "pytorch-cpu__fp32__bs1" / "shape_mix.json").read_text())
    assert result["status"] == "failed" and result["reason"].startswith("DeployBenchError: bucket [16, 48]: RuntimeError: shape '[7]'")
    assert "bucket [16, 48]" in (tmp_path / "out" / "narrow" / "shape_mix" / "shape_mix.md").read_text()
