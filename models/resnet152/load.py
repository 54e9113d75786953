"""ResNet-152 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_RESNET152 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class Resnet152(TorchvisionClassifier):
    name = "resnet152"
    architecture = "resnet152"
