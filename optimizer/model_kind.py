"""What kind of model a run has (transformer encoder, convolutional network, other), read from its graph.

The default variant matrix depends on it: the passes that pay off on attention models (fusion,
per-channel dynamic INT8) are not those that pay off on convolutions (static QDQ, pruning).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mcbench.optimizer.artifact import Artifact

KINDS = ("transformer", "cnn", "other")
ATTENTION_OPS = ("Attention", "MultiHeadAttention", "Softmax")
NORM_OPS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization")


@dataclass(frozen=True)
class ModelKind:
    kind: str  # one of KINDS
    reason: str  # what in the graph decided it, for the terminal and results.json

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


def kind_of_ops(ops: Counter[str]) -> ModelKind:
    """Transformer where attention (or Softmax) meets layer norms and matrix products; CNN where convolutions are."""
    attention = sum(ops[o] for o in ATTENTION_OPS)
    norms = sum(ops[o] for o in NORM_OPS)
    matmuls = ops["MatMul"] + ops["Gemm"] + ops["Linear"]
    convs = ops["Conv"] + ops["Conv2d"] + ops["Conv1d"]
    if attention and norms and matmuls > convs:
        return ModelKind("transformer", f"{attention} attention/Softmax, {norms} layer norms, {matmuls} matrix "
                                        f"products, {convs} convolutions")
    if convs:
        return ModelKind("cnn", f"{convs} convolutions, {attention} attention/Softmax")
    return ModelKind("other", f"no convolution, no attention with layer norms ({matmuls} matrix products)")


def detect_kind(artifact: Artifact) -> ModelKind:
    """The kind of an ONNX graph (its operators) or a PyTorch module (its layer types)."""
    if artifact.format == "onnx":
        import onnx

        graph = onnx.load(str(artifact.path), load_external_data=False).graph
        return kind_of_ops(Counter(n.op_type for n in graph.node))
    if artifact.format == "openvino":
        return ModelKind("other", "an OpenVINO IR is not inspected")
    from mcbench.optimizer.intake_torch import load_torch_module

    return kind_of_ops(Counter(_module_op(m) for m in load_torch_module(artifact).modules()))


def _module_op(module: object) -> str:
    """A torch layer as the ONNX operator it becomes, for the layers that decide the kind.

    Attention is usually written with functional softmax, so a module is attention when its class says
    so (Hugging Face's BertSelfAttention, torch's MultiheadAttention) or it has query/key/value layers.
    """
    name = type(module).__name__
    if "Attention" in name or all(hasattr(module, a) for a in ("query", "key", "value")):
        return "Attention"
    return {"LayerNorm": "LayerNormalization", "Linear": "MatMul", "Conv2d": "Conv", "Conv1d": "Conv"}.get(name, name)
