"""Custom ONNX operators of the ``ai.inter2former`` domain, version 1.

One module per operator (``token_routing``, ``bsq_attention``, ``hybrid_moe``) holds its
documented schema, its ONNX function body (standard ops, so stock ONNX Runtime runs a model that
carries it) and its PyTorch side for the exporter. ``registry`` attaches the functions to an
exported model; ``openvino`` registers every op with OpenVINO's ONNX frontend. This package
imports neither torch nor the op modules, so runtimes can use ``openvino`` alone.
"""

DOMAIN = "ai.inter2former"
VERSION = 1
OP_TYPES = ("TokenRouting", "BSQAttention", "HybridMoE")
