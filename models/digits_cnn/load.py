"""A small CNN trained on scikit-learn's handwritten digits: real weights and real labelled data, so the
report shows what fp16 and int8 cost in accuracy. Trained by train.py (held-out accuracy 98.3% in fp32);
the weights (156 kB) and the held-out split live in this folder, so nothing is downloaded."""

from pathlib import Path

import numpy as np
import torch

from framework import ModelLoader, register_model

HERE = Path(__file__).resolve().parent


class DigitsCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def normalise(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) pixel values 0..16 -> (N, 1, 8, 8) float32 in [0, 1]."""
    return np.ascontiguousarray((np.asarray(images, dtype=np.float32) / 16.0)[:, None, :, :])


@register_model
class DigitsCNNLoader(ModelLoader):
    name = "digits_cnn"

    def _data(self):
        with np.load(HERE / "data.npz") as data:
            return {k: data[k] for k in data.files}

    def load_pytorch_module(self) -> torch.nn.Module:
        model = DigitsCNN()
        model.load_state_dict(torch.load(HERE / "weights.pt", weights_only=True))
        return model.eval()

    def load_example_inputs(self) -> list[np.ndarray]:
        """The first held-out digit, as an 8x8x1 image in [0, 1]."""
        return [normalise(self._data()["test_images"][:1])[0].transpose(1, 2, 0)]

    def load_dataset(self):
        data = self._data()
        return [normalise(data["test_images"])], data["test_labels"]

    def load_calibration_data(self):
        return [normalise(self._data()["calibration_images"])]  # training images, never the accuracy set
