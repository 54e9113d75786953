"""ResNet-18 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_RESNET18 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class Resnet18(TorchvisionClassifier):
    name = "resnet18"
    architecture = "resnet18"
