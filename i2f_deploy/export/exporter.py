"""``i2f-deploy export``: checkpoint -> artifact directory (ONNX, optional OpenVINO IR, manifest).

Everything is written into a scratch directory next to ``out`` and moved into place only when
every step succeeded, so a failure never leaves half-written artifacts behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import torch

from i2f_deploy.config import ExportConfig
from i2f_deploy.contract import DECODER_INPUTS, IMAGE, NUM_EDGE_MAPS, sha256
from i2f_deploy.custom_ops.function_body import BODY_OPSET
from i2f_deploy.errors import I2FError
from i2f_deploy.export.decoder import example_inputs as decoder_example_inputs
from i2f_deploy.export.decoder import export_decoder
from i2f_deploy.export.encoder import export_edge_terms, export_encoder
from i2f_deploy.export.manifest import write_manifest
from i2f_deploy.export.onnx_files import save_model, simplify_checked
from i2f_deploy.export.precision import calibration_inputs, precision_record, quantize_for_onnxruntime, quantize_for_openvino
from i2f_deploy.export.quiet import loggers_at
from i2f_deploy.export.rewrites import gelu_in_fusable_order
from i2f_deploy.export.segments import write_segments
from i2f_deploy.model.inter2former import Inter2Former, build_model, random_model
from i2f_deploy.outputs import check_artifact_dir

DEFAULT_OPSET = BODY_OPSET
SUPPORTED_OPSETS = (BODY_OPSET,)  # the custom ops' function bodies are written at this opset
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    routing: str = "dynamic"
    simplify: bool = True
    openvino: bool = False
    force: bool = False
    precision: str = "f32"  # the encoder's: f32, bf16 (OpenVINO) or int8 (both backends)
    calibration_images: tuple[Path, ...] = ()  # int8: images to calibrate on (default: built-in samples)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notices that concern torch and onnxscript themselves (deprecations,
    torchvision, attribute types of empty lists it defaults correctly)."""
    with loggers_at(logging.ERROR, "torch.onnx._internal.exporter._registration", "onnx_ir._convenience"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def build_weights(
    config: ExportConfig, routing: str, checkpoint: Path | None, seed: int | None, unsafe: bool
) -> tuple[Inter2Former, dict]:
    """The model with checkpoint weights, or seeded random ones; plus how the manifest names them."""
    if checkpoint is not None:
        model = build_model(config, checkpoint, unsafe, routing)
        return model, {"source": "checkpoint", "file": Path(checkpoint).name, "sha256": sha256(Path(checkpoint))}
    return random_model(config, seed or 0, routing), {"source": "random", "seed": seed or 0}


def _feeds(tensors: tuple[torch.Tensor, ...], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in zip(names, tensors)}


def _write_openvino(scratch: Path, decoder: Path, encoder: Path | None) -> None:
    """IR of both graphs (``encoder=None``: the decoder only, the int8 encoder's IR is NNCF's)."""
    import openvino as ov

    from i2f_deploy.custom_ops.openvino import conversion_extensions

    folder = scratch / "openvino"
    folder.mkdir(exist_ok=True)
    core = ov.Core()
    extensions = conversion_extensions(core, onnx.load(str(decoder), load_external_data=False))
    if encoder is not None:
        ov.save_model(ov.convert_model(str(encoder)), str(folder / "encoder.xml"), compress_to_fp16=False)
    ov.save_model(ov.convert_model(str(decoder), extension=extensions), str(folder / "decoder.xml"), compress_to_fp16=False)


def export_artifacts(
    config: ExportConfig,
    out: Path,
    options: ExportOptions,
    progress: Progress,
    checkpoint: Path | None = None,
    seed: int | None = None,
    allow_unsafe_pickle: bool = False,
) -> Path:
    """Export ``config`` with a checkpoint (or seeded random weights) into ``out``."""
    if options.calibration_images and options.precision != "int8":
        raise I2FError("--calibration-images is for --precision int8 only")
    if options.opset not in SUPPORTED_OPSETS:
        raise I2FError(f"--opset {options.opset}: the graphs can be written at opset "
                       f"{', '.join(map(str, SUPPORTED_OPSETS))} only (the custom ops' bodies use it)")
    check_artifact_dir(out, options.force)
    out.parent.mkdir(parents=True, exist_ok=True)
    progress(f"building {config.name} ({options.routing} routing)")
    model, weights = build_weights(config, options.routing, checkpoint, seed, allow_unsafe_pickle)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with _quiet_exporter():
            files, notes, precision = _export_into(scratch, model, options, progress)
        progress("writing manifest")
        write_manifest(scratch, config, routing=options.routing, opset=options.opset, weights=weights, files=files,
                       notes=notes, precision=precision)
        scratch.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        scratch.rename(out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return out


def _quantize_encoder(scratch: Path, encoder: Path, size: int, images: tuple[Path, ...],
                      progress: Progress) -> tuple[list[str], list[str]]:
    """The int8 encoders in place of the f32 one: QDQ ``encoder.onnx`` and NNCF's IR; returns the
    files of the former and the calibration images' names."""
    inputs, names = calibration_inputs(list(images), size)
    progress(f"quantizing encoder for ONNX Runtime (calibration: {len(inputs)} images)")
    quantized = quantize_for_onnxruntime(encoder, scratch / "encoder.onnx", inputs)
    progress("quantizing encoder for OpenVINO (NNCF)")
    quantize_for_openvino(encoder, scratch / "openvino" / "encoder.xml", inputs)
    for path in scratch.iterdir():
        if path.name.startswith(encoder.name):  # the f32 graph and its weights
            path.unlink()
    return [p.name for p in quantized], names


def _export_into(scratch: Path, model: Inter2Former, options: ExportOptions,
                 progress: Progress) -> tuple[dict, list[str], dict[str, object]]:
    notes: list[str] = []
    size = model.target_size

    progress("exporting encoder")
    encoder = export_encoder(model, options.opset)
    if options.simplify:
        progress("simplifying encoder")
        image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        encoder, note = simplify_checked(encoder, {IMAGE: image.numpy()})
        notes.append(f"encoder: {note}")
    notes.append(f"encoder: {gelu_in_fusable_order(encoder)} GELU(s) reordered as x*(1+erf)*0.5 for ONNX Runtime's "
                 "fusion (scaling by 0.5 is exact: outputs unchanged)")
    int8 = options.precision == "int8"
    encoder_files = [p.name for p in save_model(encoder, scratch / ("encoder_f32.onnx" if int8 else "encoder.onnx"))]
    del encoder
    calibration: list[str] = []
    if int8:
        encoder_files, calibration = _quantize_encoder(scratch, scratch / "encoder_f32.onnx", size,
                                                       options.calibration_images, progress)

    progress("exporting decoder")
    example = decoder_example_inputs(model)
    decoder = export_decoder(model, options.opset)
    if options.simplify:
        progress("simplifying decoder")
        decoder, note = simplify_checked(decoder, _feeds(example, DECODER_INPUTS))
        notes.append(f"decoder: {note}")
    save_model(decoder, scratch / "decoder.onnx")
    save_model(onnx.inliner.inline_local_functions(decoder), scratch / "decoder_inlined.onnx")
    segments = write_segments(decoder, scratch)
    edge_maps = list(example[1 : 1 + NUM_EDGE_MAPS])
    save_model(export_edge_terms(model, edge_maps, options.opset), scratch / "edge_conv.onnx")

    files: dict[str, dict[str, object]] = {
        "encoder": {"onnx": "encoder.onnx"},
        "decoder": {"onnx": "decoder.onnx", "onnx_inlined": "decoder_inlined.onnx", "edge_conv": "edge_conv.onnx",
                    "segments": segments},
    }
    if len(encoder_files) > 1:
        files["encoder"]["external_data"] = encoder_files[1]
    if int8:
        files["encoder"]["openvino"] = "openvino/encoder.xml"
    if options.openvino:
        progress("converting to OpenVINO IR")
        _write_openvino(scratch, scratch / "decoder.onnx", None if int8 else scratch / "encoder.onnx")
        files["encoder"]["openvino"] = "openvino/encoder.xml"
        files["decoder"]["openvino"] = "openvino/decoder.xml"
    if options.precision == "bf16":
        notes.append("precision bf16: OpenVINO runs the encoder in bf16; ONNX Runtime has no bf16 CPU kernels and runs it in f32")
    return files, notes, precision_record(options.precision, calibration)
