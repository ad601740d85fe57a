"""``export --precision``: what the encoder computes in, chosen at export and recorded in the
manifest (never a silent default).

- ``bf16``: the same graphs; OpenVINO compiles the encoder with ``INFERENCE_PRECISION_HINT=bf16``
  (AMX / ``avx512_bf16`` CPUs). ONNX Runtime has no bf16 CPU kernels for these ops: it stays f32.
- ``int8``: post-training quantization of the encoder, calibrated on the user's images or the
  built-in samples: static QDQ by ``onnxruntime.quantization`` for ONNX Runtime, NNCF for
  OpenVINO (its IR). The decoder stays f32: it runs per click on small crops where the
  quantize/dequantize passes would cost about what they save.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from i2f_deploy.contract import IMAGE
from i2f_deploy.export.quiet import loggers_at
from i2f_deploy.preprocess import preprocess, read_image_rgb
from i2f_deploy.samples import builtin_samples

# The backbone's linear layers (exported as Gemm; 72 % of the encoder's work at 1024) are
# quantized. The edge detector stays f32: its Canny decisions (thresholds, non-maximum
# suppression) flip under int8 and move whole edges; so do attention products, softmax and the
# normalisations' sums by matrix products.
ORT_QUANTIZED_OPS = ("Gemm",)
# The same on OpenVINO's graph: its matrix products named from the ONNX MatMul nodes (attention,
# the edge detector's sums) and every convolution are left out.
OPENVINO_IGNORED = {"patterns": ["node_matmul.*"], "types": ["Convolution", "GroupConvolution"]}


def calibration_inputs(paths: list[Path], size: int) -> tuple[list[np.ndarray], list[str]]:
    """Preprocessed encoder inputs of ``paths``, or of every built-in sample when none are given."""
    if paths:
        named = [(path.name, read_image_rgb(path)) for path in paths]
    else:
        named = [(sample.name, sample.image) for sample in builtin_samples()]
    return [preprocess(image, size)[0] for _, image in named], [name for name, _ in named]


def precision_record(choice: str, calibration: list[str]) -> dict[str, object]:
    """The manifest's ``precision``: per part and backend what runs, and how int8 was made."""
    f32 = {"onnxruntime": "f32", "openvino": "f32"}
    if choice == "f32":
        return {"choice": "f32", "encoder": f32, "decoder": f32}
    if choice == "bf16":
        return {"choice": "bf16", "encoder": {"onnxruntime": "f32", "openvino": "bf16"}, "decoder": f32}
    return {
        "choice": "int8",
        "encoder": {"onnxruntime": "int8", "openvino": "int8"},
        "decoder": f32,
        "calibration": calibration,
        "quantized": {
            "onnxruntime": ("encoder backbone's linear layers (Gemm nodes): QDQ, per-channel int8 weights, uint8 "
                            "activations (onnxruntime.quantization.quantize_static, MinMax); the rest f32"),
            "openvino": ("encoder backbone's linear layers: NNCF post-training quantization (nncf.quantize, transformer "
                         "model type; attention products, convolutions and the edge detector's sums left out); the rest f32"),
        },
    }


def quantize_for_onnxruntime(encoder: Path, out: Path, inputs: list[np.ndarray]) -> list[Path]:
    """Static QDQ quantization of the f32 ``encoder`` into ``out``; returns the files written."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.remaining, None)
            return None if image is None else {IMAGE: image}

    with loggers_at(logging.ERROR, ""):  # its advice to pre-process the model, on the root logger
        quantize_static(str(encoder), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(ORT_QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        use_external_data_format=True)
    data = out.with_name(out.name + ".data")
    return [out, data] if data.is_file() else [out]


def quantize_for_openvino(encoder: Path, xml: Path, inputs: list[np.ndarray]) -> None:
    """NNCF post-training quantization of the f32 ``encoder`` (ONNX) into an OpenVINO IR."""
    import nncf
    import openvino as ov

    ignored = nncf.IgnoredScope(**OPENVINO_IGNORED, validate=False)
    with loggers_at(logging.WARNING, "nncf"):  # its INFO lines, dozens per run
        quantized = nncf.quantize(ov.convert_model(str(encoder)), nncf.Dataset(inputs), subset_size=len(inputs),
                                  model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored)
    xml.parent.mkdir(exist_ok=True)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
