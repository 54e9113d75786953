"""ResNet-34 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_RESNET34 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class Resnet34(TorchvisionClassifier):
    name = "resnet34"
    architecture = "resnet34"
