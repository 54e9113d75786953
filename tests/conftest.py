from pathlib import Path

import pytest

FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture
def fixture_registry():
    from framework.registry import discover

    return discover([FIXTURE_MODELS], use_default_dirs=False, entry_points=False)


def pytest_collection_modifyitems(config, items):
    """GPU and TensorRT tests skip, with the reason shown, where the machine cannot run them."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    try:
        import tensorrt  # noqa: F401

        has_tensorrt = True
    except ImportError:
        has_tensorrt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here"))
        if "tensorrt" in item.keywords and not has_tensorrt:
            item.add_marker(pytest.mark.skip(reason="needs the tensorrt package, which is not importable here"))


def summaries(root) -> list[dict]:
    """Every result under ``root`` as its summary.json says it (the file format users and scripts read)."""
    from framework.results.store import load_results

    return [r.to_json() for r in load_results(root)]
