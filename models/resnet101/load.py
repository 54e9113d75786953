"""ResNet-101 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_RESNET101 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class Resnet101(TorchvisionClassifier):
    name = "resnet101"
    architecture = "resnet101"
