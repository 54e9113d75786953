"""ResNet-18 with random weights: speed does not depend on the weights, and nothing is downloaded."""

import torch

from framework import ModelLoader, register_model


@register_model
class ResNet18(ModelLoader):
    name = "resnet18"

    def load_pytorch_module(self) -> torch.nn.Module:
        import torchvision

        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None).eval()
