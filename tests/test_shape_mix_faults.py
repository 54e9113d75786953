"""Shapes as served (issue 16): a bucket the model cannot run is named in the failure; the recommended profiles
leave no length unserved."""

import json
from pathlib import Path

from framework.cli import main
from framework.config import load_config
from framework.distribution import file_distribution
from framework.results.profiles import recommend_profiles
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


def test_recommended_profiles_leave_no_length_between_or_below_the_buckets_unserved():
    """Buckets 8, 16, 32, 64 in two profiles: the second starts right after the first ends (a length of 20 or 40
    is served), and the first snippet keeps the config's min (1) for lengths below the smallest bucket."""
    from framework.report.shape_section import shape_markdown
    from framework.results.shape_mix_record import BucketLatency, MixRun, ShapeMixResult

    values, weights = [(8,), (16,), (32,), (64,)], [0.4, 0.3, 0.2, 0.1]
    first, second = recommend_profiles(values, weights, [float(v[0]) for v in values], k=2, opt_penalty=0.3).profiles
    assert second.min == (first.max[0] + 1,) and first.min == (8,)
    buckets = tuple(BucketLatency(v, w, float(v[0]), (v[0], v[0]), 10, "converged") for v, w in zip(values, weights))
    mix = MixRun("unpadded", 0, (0, 1, 2, 3), tuple(values), (8.0, 16.0, 32.0, 64.0))
    result = ShapeMixResult("m", "onnxruntime-cpu", "fp32", 1, {}, ("sequence",), buckets=buckets, mixes=(mix,))
    text = "\n".join(shape_markdown([result], None, Path(__file__).parent / "fixtures" / "models" / "tiny_two_inputs" / "config.yaml"))
    assert "# K=1, profile 1 of 1: sequence 8..64\ninputs:\n  - name: tokens\n    shapes:\n      optimization: {min: [1, 1], opt:" in text


def test_observed_shapes_exported_with_a_byte_order_mark_are_read(tmp_path):
    """Excel and pandas' utf-8-sig exports start with a BOM: it is not part of the first dim's name."""
    config = load_config(Path(__file__).parent / "fixtures" / "models" / "tiny_cnn" / "config.yaml")
    (tmp_path / "seen.csv").write_bytes(b"\xef\xbb\xbfheight,width\r\n16,16\r\n32,32\r\n")
    (tmp_path / "seen.json").write_bytes(b'\xef\xbb\xbf[{"height": 16, "width": 16}]')
    assert file_distribution(tmp_path / "seen.csv", config).values == ((16, 16), (32, 32))
    assert file_distribution(tmp_path / "seen.json", config).values == ((16, 16),)


def test_a_model_without_a_dynamic_dim_besides_batch_is_told_a_shape_mix_does_not_apply(tmp_path):
    import pytest

    from framework.errors import DeployBenchError

    (tmp_path / "seen.csv").write_text("height\n8\n")
    config = load_config(Path(__file__).parent.parent / "models" / "digits_cnn" / "config.yaml")  # runtime [-1, 1, 8, 8]
    with pytest.raises(DeployBenchError, match=r"seen.csv: .dims\[0\]: .*digits_cnn/config.yaml has no dynamic dim besides batch_size"):
        file_distribution(tmp_path / "seen.csv", config)


def test_padding_is_recommended_only_when_it_beats_no_padding_by_more_than_the_medians_precision():
    """8 ms unpadded against 7.98 ms padded to 32 (0.25% apart, within the medians' ±2%): no padding is recommended."""
    from framework.report.shape_section import shape_markdown
    from framework.results.shape_mix_record import BucketLatency, MixRun, ShapeMixResult

    def table(latencies: list[float]) -> str:
        buckets = tuple(BucketLatency(v, 0.5, ms, (ms, ms), 10, "converged") for v, ms in zip([(16,), (32,)], latencies))
        mix = MixRun("unpadded", 0, (0, 1), ((16,), (32,)), tuple(latencies))
        result = ShapeMixResult("m", "onnxruntime-cpu", "fp32", 1, {}, ("sequence",), buckets=buckets, mixes=(mix,))
        return "\n".join(shape_markdown([result], None, None))

    assert "| onnxruntime-cpu fp32 bs1 | none **(recommended)** |" in table([8.0, 7.96])
    assert "| onnxruntime-cpu fp32 bs1 | multiple of 32 **(recommended)** |" in table([8.0, 7.0])
