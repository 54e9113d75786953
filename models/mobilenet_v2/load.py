"""MobileNetV2 (torchvision), random weights unless DEPLOYBENCH_CHECKPOINT_MOBILENET_V2 names a local state_dict."""

from framework import register_model
from framework.zoo import TorchvisionClassifier


@register_model
class MobilenetV2(TorchvisionClassifier):
    name = "mobilenet_v2"
    architecture = "mobilenet_v2"
