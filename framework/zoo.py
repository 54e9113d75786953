"""Loaders shared by model folders: torchvision image classifiers, random weights by default.

Speed does not depend on the weights, so nothing is downloaded. For real accuracy, point a model at a
local checkpoint (a state_dict saved with ``torch.save``) through ``DEPLOYBENCH_CHECKPOINT_<NAME>``, e.g.
``DEPLOYBENCH_CHECKPOINT_RESNET50=/data/resnet50.pt``; it is read with ``torch.load(weights_only=True)``,
which refuses pickled code.
"""

from __future__ import annotations

import os

from framework.errors import DeployBenchError
from framework.loader import ModelLoader


class TorchvisionClassifier(ModelLoader):
    architecture = ""  # a function of torchvision.models, e.g. "resnet50"

    def load_pytorch_module(self):
        import torch
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, self.architecture)(weights=None)
        variable = f"DEPLOYBENCH_CHECKPOINT_{self.name.upper()}"
        checkpoint = os.environ.get(variable)
        if checkpoint:
            try:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
                model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            except Exception as exc:
                raise DeployBenchError(f"{variable}={checkpoint}: cannot load it into {self.architecture}: {exc}") from exc
        return model.eval()
