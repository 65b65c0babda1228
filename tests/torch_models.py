"""PyTorch modules for the packaged state dicts of tests/packaged_models.py, given to mcbench as factories.

`onet()` is MTCNN's output network (48x48 face crops): three outputs from one trunk, box offsets [N, 4],
five landmarks [N, 10] and face/not-face probabilities [N, 2], in that order. The layer names follow the
state dict's keys; the weights are read with `weights_only=True`.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.packaged_models import packaged_model


def _stage(cin: int, cout: int, kernel: int, pool: nn.Module | None) -> list[tuple[str, nn.Module]]:
    return [("conv", nn.Conv2d(cin, cout, kernel_size=kernel)), ("prelu", nn.PReLU(cout)), ("pool", pool)]


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        pools = (nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, ceil_mode=True),
                 nn.MaxPool2d(2, 2, ceil_mode=True), None)
        shapes = ((3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2))
        for i, ((cin, cout, kernel), pool) in enumerate(zip(shapes, pools, strict=True), start=1):
            for kind, module in _stage(cin, cout, kernel, pool):
                if module is not None:
                    self.add_module(f"{kind}{i}", module)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for i in range(1, 5):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def onet() -> nn.Module:
    """MTCNN's ONet with its trained weights, in eval mode: input [N, 3, 48, 48], three outputs."""
    model = ONet()
    model.load_state_dict(torch.load(packaged_model("facenet") / "onet.pt", weights_only=True))
    return model.eval()
