"""The built-in demo: a small CNN trained on scikit-learn's bundled 8x8 digits (real data, no download)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_FACTORY = "mcbench.demo:digits_cnn"
INPUT_NAME = "image"
INPUT_SHAPE = (1, 1, 8, 8)


@dataclass
class DigitsData:
    x_train: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class TrainedDemo:
    weights: Path
    data: DigitsData
    train_seconds: float
    epochs: int


def digits_cnn():
    """Two conv layers and a classifier: 8x8 grey digit -> 10 logits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsData:
    """The 1,797 digits, stratified into train and held-out test splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return DigitsData(x_train, y_train, x_test, y_test)


def train_demo(out_dir: Path, epochs: int = 15, seed: int = 0) -> TrainedDemo:
    """Train the digits CNN and save its state_dict; returns the weights and the data split."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    data = load_digits_split(seed=seed)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
    train_seconds = time.perf_counter() - start
    weights = Path(out_dir) / "digits_cnn.pt"
    torch.save(model.state_dict(), weights)
    return TrainedDemo(weights, data, train_seconds, epochs)
