"""Custom ONNX operators of the ``ai.inter2former`` domain.

One module per operator (``token_routing``, ``prompt_convolution``, ``bsq_attention``,
``full_attention``, ``hybrid_moe``, ``dlu_upsample``)
declares it once: its documented schema, its ONNX function body (standard ops, so stock ONNX
Runtime runs a model that carries it; traced with onnxscript at export, ``function_body``) and
its PyTorch side for the exporter (``torch_op``: the model's code eagerly, one node under
export). ``registry.OPS`` lists them (adding an op: its module and that line); ``registry``
attaches the functions to an exported model; ``openvino`` registers every op with OpenVINO's
ONNX frontend from those functions. This package's ``__init__`` imports neither torch,
onnxscript nor the op modules, so runtimes can use ``openvino`` alone.
"""

DOMAIN = "ai.inter2former"
VERSION = 5  # 2: DLUUpsample added; 3: TokenRouting, BSQAttention, HybridMoE run natively on OpenVINO (definitions unchanged);
# 4: FullAttention added;
# 5: PromptConvolution added
