"""Plugin discovery: folders, --models-dir, entry points; duplicates and broken plugins are named."""

import collections
import sys
import textwrap

import pytest

from framework.errors import RegistryError
from framework.registry import discover
from tests.conftest import FIXTURE_MODELS

PLUGIN = """
from framework import ModelLoader, register_model

@register_model
class Loader(ModelLoader):
    name = "{name}"
"""


def make_plugin(root, folder, name, body=PLUGIN):
    path = root / folder
    path.mkdir(parents=True)
    (path / "load.py").write_text(textwrap.dedent(body.format(name=name)))
    return path / "load.py"


def test_discovers_fixture_models_and_the_projects_own(fixture_registry):
    assert fixture_registry.names() == ["tiny_cnn", "tiny_two_inputs"]
    assert fixture_registry.errors == []
    both = discover([FIXTURE_MODELS], entry_points=False)
    assert {"resnet18", "resnet50", "tiny_cnn"} <= set(both.names())


def test_found_model_builds_a_loader_with_its_config(fixture_registry):
    loader = fixture_registry.get("tiny_cnn").create()
    assert loader.config.name == "tiny_cnn"
    assert loader.example_shapes == [(16, 16, 3)]
    assert loader.runtime_inputs()[0].shape == (1, 3, 16, 16)


def test_two_loaders_with_the_same_name_name_both_files(tmp_path):
    first = make_plugin(tmp_path, "a", "same")
    second = make_plugin(tmp_path, "b", "same")
    make_plugin(tmp_path, "c", "other")
    registry = discover([tmp_path], use_default_dirs=False, entry_points=False)
    assert registry.names() == ["other"]  # the conflict fails that name only
    with pytest.raises(RegistryError) as caught:
        registry.get("same")
    assert str(caught.value) == f"two loaders register the model name 'same': {first} and {second}"
    assert str(caught.value) in registry.errors


def test_broken_plugins_are_listed_and_do_not_hide_the_others(tmp_path):
    make_plugin(tmp_path, "good", "good")
    raising = make_plugin(tmp_path, "raises", "x", body="raise RuntimeError('boom in plugin')\n")
    empty = make_plugin(tmp_path, "empty", "x", body="X = 1\n")
    registry = discover([tmp_path], use_default_dirs=False, entry_points=False)
    assert registry.names() == ["good"]
    assert f"{raising}:1: import failed: RuntimeError: boom in plugin" in registry.errors
    assert f"{empty}: no class decorated with @register_model" in registry.errors
    with pytest.raises(RegistryError, match=r"unknown model .missing.; known models: good; could not load: "):
        registry.get("missing")


def test_register_model_refuses_classes_that_are_not_loaders():
    from framework import register_model

    with pytest.raises(RegistryError, match="expects a subclass of framework.ModelLoader"):
        register_model(object)


def test_config_name_must_match_the_loader_name(tmp_path):
    make_plugin(tmp_path, "m", "m")
    (tmp_path / "m" / "config.yaml").write_text((FIXTURE_MODELS / "tiny_cnn" / "config.yaml").read_text())
    registry = discover([tmp_path], use_default_dirs=False, entry_points=False)
    with pytest.raises(Exception, match=r"config.yaml: name: is 'tiny_cnn', but the loader in .* registers 'm'"):
        registry.get("m").create()


def test_entry_point_group_adds_models_from_installed_packages(tmp_path, monkeypatch):
    """A real distribution on sys.path, with entry_points.txt, as pip would install it."""
    package = tmp_path / "site" / "extra_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN.format(name="from_entry_point")))
    (package / "config.yaml").write_text(
        (FIXTURE_MODELS / "tiny_cnn" / "config.yaml").read_text().replace("name: tiny_cnn", "name: from_entry_point")
    )
    dist = tmp_path / "site" / "extra_models-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[deploybench.models]\nextra = extra_models\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        registry = discover(use_default_dirs=False)
        assert "from_entry_point" in registry.names()
        assert registry.models["from_entry_point"].source == "entry point extra = extra_models"
        assert registry.get("from_entry_point").create().config.name == "from_entry_point"
    finally:
        sys.modules.pop("extra_models", None)


def test_torchvision_models_load_a_local_checkpoint_weights_only(tmp_path, monkeypatch):
    import torch

    from framework.errors import DeployBenchError
    from framework.registry import discover

    registry = discover()
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2"} <= set(registry.names())
    loader = registry.get("resnet18").create()
    state = loader.load_pytorch_module().state_dict()
    state["fc.bias"] = torch.full_like(state["fc.bias"], 7.0)
    torch.save(state, tmp_path / "resnet18.pt")
    monkeypatch.setenv("DEPLOYBENCH_CHECKPOINT_RESNET18", str(tmp_path / "resnet18.pt"))
    assert torch.all(loader.load_pytorch_module().fc.bias == 7.0)
    torch.save({"weights": collections.Counter("abc")}, tmp_path / "pickled_code.pt")  # a pickled class: weights_only refuses it
    monkeypatch.setenv("DEPLOYBENCH_CHECKPOINT_RESNET18", str(tmp_path / "pickled_code.pt"))
    with pytest.raises(DeployBenchError, match="DEPLOYBENCH_CHECKPOINT_RESNET18=.*pickled_code.pt: cannot load it into resnet18"):
        loader.load_pytorch_module()
