"""Reference architectures built in code, for performance work (no weights are downloaded).

Their cost is dominated by compute rather than per-call overhead, which the 8x8 digits CNN is not.
Weights are random (seeded): these models are measured for speed and for fidelity to their own
FP32 baseline, never for task accuracy.
"""

from __future__ import annotations

RESNET18_FACTORY = "mcbench.models:resnet18_like"
RESNET18_INPUT = ("image", (1, 3, 224, 224))


def _basic_block(nn, in_ch: int, out_ch: int, stride: int):
    class BasicBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_ch)
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU()
            self.down = None
            if stride != 1 or in_ch != out_ch:
                self.down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

        def forward(self, x):
            identity = x if self.down is None else self.down(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    return BasicBlock()


def resnet18_like(num_classes: int = 1000, seed: int = 0):
    """ResNet-18's layout (4 stages of 2 basic blocks, 64-512 channels), about 1.8 GFLOPs at 224x224."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    in_ch = 64
    for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_basic_block(nn, in_ch, out_ch, stride), _basic_block(nn, out_ch, out_ch, 1)]
        in_ch = out_ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    model = nn.Sequential(*layers)
    model.eval()
    return model
