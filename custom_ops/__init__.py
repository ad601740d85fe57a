"""Custom ONNX operators of the ``ai.inter2former`` domain, one sub-package per operator."""
