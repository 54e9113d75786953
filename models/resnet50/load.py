"""ResNet-50 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_RESNET50 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class Resnet50(TorchvisionClassifier):
    name = "resnet50"
    architecture = "resnet50"
