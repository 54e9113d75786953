"""Train DigitsCNN on scikit-learn's bundled handwritten digits and write weights.pt and data.npz.

The split is fixed (seed 0, 20% held out, stratified), so the held-out accuracy is reproducible.
data.npz keeps the held-out images and labels (the accuracy set) and 64 training images (the int8
calibration set), so measuring needs neither scikit-learn nor a download. Retrain with:

    pip install scikit-learn && python models/digits_cnn/train.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SEED = 0


def main() -> None:
    import importlib.util

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    spec = importlib.util.spec_from_file_location("digits_cnn_load", HERE / "load.py")
    model_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_module)

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    train_x, test_x, train_y, test_y = train_test_split(images, digits.target, test_size=0.2, random_state=SEED, stratify=digits.target)
    torch.manual_seed(SEED)
    model = model_module.DigitsCNN()
    x = torch.from_numpy(model_module.normalise(train_x))
    y = torch.from_numpy(train_y.astype(np.int64))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _epoch in range(40):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            index = order[start : start + 64]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(model_module.normalise(test_x))).argmax(1).numpy()
    accuracy = float((predicted == test_y).mean())
    print(f"held-out accuracy: {accuracy:.4f} on {len(test_y)} images")
    torch.save(model.state_dict(), HERE / "weights.pt")
    np.savez_compressed(HERE / "data.npz", test_images=test_x, test_labels=test_y.astype(np.int64), calibration_images=train_x[:64])


if __name__ == "__main__":
    main()
