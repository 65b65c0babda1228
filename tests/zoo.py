"""Small PyTorch modules the tests load through `--model tests.zoo:NAME` (built at run time, random weights)."""

import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(50, 8), nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(dim=1))


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet()


def two_inputs() -> nn.Module:
    torch.manual_seed(0)
    return TwoInputs()


def token_model() -> nn.Module:
    torch.manual_seed(0)
    return TokenModel()


def raises() -> nn.Module:
    raise ValueError("no checkpoint here")


def not_a_module():
    return 42


def mean_output(outputs, labels):
    """A user metric: the mean of all outputs."""
    return float(outputs.mean())
