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
    """ResNet-18's layout (4 stages of 2 basic blocks, 64-512 channels), 1.8 G multiply-adds (3.6 GFLOPs) at 224x224."""
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


BERT_FACTORY = "mcbench.models:bert_like"
BERT_SEQUENCE = 128
BERT_VOCAB = 30522
BERT_HEAD_DIM = 64


def _encoder_layer(nn, torch, hidden: int, heads: int, ffn: int):
    class EncoderLayer(nn.Module):
        """Post-norm BERT layer. The head count is read from the Q projection's width (head_dim fixed at 64),
        so a copy with attention heads removed by structured pruning still runs."""

        def __init__(self) -> None:
            super().__init__()
            self.head_dim = BERT_HEAD_DIM  # read by prune.structured: heads are pruned whole
            self.query = nn.Linear(hidden, heads * BERT_HEAD_DIM)
            self.key = nn.Linear(hidden, heads * BERT_HEAD_DIM)
            self.value = nn.Linear(hidden, heads * BERT_HEAD_DIM)
            self.attn_out = nn.Linear(heads * BERT_HEAD_DIM, hidden)
            self.norm1 = nn.LayerNorm(hidden)
            self.ffn_in = nn.Linear(hidden, ffn)
            self.act = nn.GELU()
            self.ffn_out = nn.Linear(ffn, hidden)
            self.norm2 = nn.LayerNorm(hidden)

        def _split(self, x):
            b, s, _ = x.shape
            return x.reshape(b, s, -1, BERT_HEAD_DIM).transpose(1, 2)

        def forward(self, x, bias):
            q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) * (BERT_HEAD_DIM ** -0.5) + bias
            context = torch.matmul(scores.softmax(-1), v).transpose(1, 2)
            context = context.reshape(x.shape[0], x.shape[1], -1)
            x = self.norm1(x + self.attn_out(context))
            return self.norm2(x + self.ffn_out(self.act(self.ffn_in(x))))

    return EncoderLayer()


def bert_like(layers: int = 6, hidden: int = 384, heads: int = 6, ffn: int = 1536, vocab: int = BERT_VOCAB,
              max_len: int = BERT_SEQUENCE, num_classes: int = 2, seed: int = 0):
    """A small BERT-like encoder (6 layers, hidden 384, 6 heads, FFN 1536; MiniLM's shape), random weights.

    forward(input_ids, attention_mask), both int64 (1, 128); returns class logits from the first token.
    About 2.7 GFLOPs at sequence 128, nearly all in the encoder's matrix products.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class BertLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab, hidden)
            self.positions = nn.Embedding(max_len, hidden)
            self.embed_norm = nn.LayerNorm(hidden)
            self.layers = nn.ModuleList([_encoder_layer(nn, torch, hidden, heads, ffn) for _ in range(layers)])
            self.pooler = nn.Linear(hidden, hidden)
            self.classifier = nn.Linear(hidden, num_classes)

        def forward(self, input_ids, attention_mask):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.embed_norm(self.tokens(input_ids) + self.positions(positions)[None])
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -1e4
            for layer in self.layers:
                x = layer(x, bias)
            return self.classifier(torch.tanh(self.pooler(x[:, 0])))

    model = BertLike()
    model.eval()
    return model


def bert_like_inputs() -> tuple:
    """The BERT-like model's input specs: token ids in [0, vocab) and an all-ones attention mask."""
    from mcbench.optimizer.artifact import InputSpec

    return (InputSpec("input_ids", (1, BERT_SEQUENCE), "int64", 0, BERT_VOCAB),
            InputSpec("attention_mask", (1, BERT_SEQUENCE), "int64", 1, 2))
