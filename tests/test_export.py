"""ONNX export: dynamic dims from the config, checked numerically against PyTorch at several shapes."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from framework.artifacts.export import export_onnx, run_onnx_cpu
from framework.errors import ExportError


def export_tiny_cnn(registry, tmp_path, exporter="torchscript"):
    loader = registry.get("tiny_cnn").create()
    module = loader.load_pytorch_module()
    result = export_onnx(module, loader.runtime_inputs(), loader.config, tmp_path / "m.onnx", exporter=exporter)
    return loader, module, result


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dynamic_dims_are_named_and_match_pytorch_at_two_runtime_shapes(fixture_registry, tmp_path, exporter):
    loader, module, result = export_tiny_cnn(fixture_registry, tmp_path, exporter)
    model = onnx.load(str(result.path))
    assert [i.name for i in model.graph.input] == ["image"]
    assert dims(model.graph.input[0]) == ["batch_size", 3, "height", "width"]
    assert dims(model.graph.output[0]) == ["batch_size", 5]
    assert result.node_count == len(model.graph.node) > 0
    assert result.max_abs_error < 1e-5
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 16, 16), (3, 3, 40, 24)]:  # a second shape the export never saw
        x = rng.random(shape, dtype=np.float32)
        got = run_onnx_cpu(result.path, loader.config, [x])["logits"]
        want = module(torch.from_numpy(x)).detach().numpy()
        assert got.shape == (shape[0], 5)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_an_operator_the_exporter_cannot_handle_is_a_clear_export_error(fixture_registry, tmp_path):
    loader = fixture_registry.get("tiny_cnn").create()

    class FFT(torch.nn.Module):
        def forward(self, image):
            return torch.fft.fft(image).real.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 5)

    with pytest.raises(ExportError, match=r"torch.onnx.export \(torchscript\) failed for model 'tiny_cnn': .*fft"):
        export_onnx(FFT(), loader.runtime_inputs(), loader.config, tmp_path / "fft.onnx")


def test_an_export_that_disagrees_with_pytorch_is_refused(fixture_registry, tmp_path):
    """A module whose traced graph differs from its eager behaviour (data-dependent Python branch)."""
    loader = fixture_registry.get("tiny_cnn").create()

    class Flaky(torch.nn.Module):
        calls = 0

        def forward(self, image):
            Flaky.calls += 1  # tracing sees call 1; the check runs eager call 2
            return image.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 5) * (1.0 if Flaky.calls == 1 else 2.0)

    with pytest.raises(ExportError, match="differs from PyTorch on the example input .* the export is not faithful"):
        export_onnx(Flaky(), loader.runtime_inputs(), loader.config, tmp_path / "flaky.onnx")


class Branchy(torch.nn.Module):
    """Python control flow on a tensor's value: the trace keeps the branch the example input took."""

    def forward(self, image):
        pooled = image.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 5)
        if image.sum() > 0:  # the TracerWarning's line
            return pooled * 2.0
        return pooled


def test_tracer_warnings_are_recorded_one_line_each_with_their_source_and_deprecation_chatter_is_not(fixture_registry, tmp_path):
    loader = fixture_registry.get("tiny_cnn").create()
    result = export_onnx(Branchy(), loader.runtime_inputs(), loader.config, tmp_path / "branchy.onnx")
    assert len(result.warnings) == 1, result.warnings
    line = next(n for n, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "the TracerWarning's line" in text)
    assert result.warnings[0].startswith(f"{__file__}:{line}: TracerWarning: Converting a tensor to a Python boolean might cause the trace")
    assert "\n" not in result.warnings[0]
    assert export_tiny_cnn(fixture_registry, tmp_path)[2].warnings == ()  # the legacy exporter's DeprecationWarnings are dropped
