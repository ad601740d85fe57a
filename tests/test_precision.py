"""``export --precision``: recorded in the manifest, loaded as recorded, and judged by ``validate``
against the f32 reference with the reduced-precision gate (a bad calibration fails it)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from support.commands import export_with
from typer.testing import CliRunner

from i2f_deploy import runtime
from i2f_deploy.cli import app
from i2f_deploy.contract import IMAGE, IMAGE_EMBEDDINGS, Manifest

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def badly_calibrated(tmp_path_factory, tiny_checkpoint):
    """An int8 export calibrated on one constant grey image: activation ranges that no real
    image stays within."""
    folder = tmp_path_factory.mktemp("int8")
    constant = folder / "constant.png"
    cv2.imwrite(str(constant), np.full((300, 400, 3), 128, np.uint8))
    return export_with(tiny_checkpoint, "inter2former-tiny-512", folder / "art", "--precision", "int8",
                       "--calibration-images", str(constant))


def test_int8_manifest_records_what_is_quantized(badly_calibrated):
    precision = Manifest.read(badly_calibrated).precision
    assert precision.choice == "int8" and precision.calibration == ["constant.png"]
    assert (precision.encoder.onnxruntime, precision.encoder.openvino) == ("int8", "int8")
    assert (precision.decoder.onnxruntime, precision.decoder.openvino) == ("f32", "f32")
    assert set(precision.quantized) == {"onnxruntime", "openvino"}


def test_int8_encoder_runs_its_quantized_graph_on_each_backend(badly_calibrated, tiny_artifacts):
    image = np.random.default_rng(0).standard_normal((1, 3, 512, 512)).astype(np.float32)
    reference = runtime.load(tiny_artifacts, "encoder", "onnxruntime").run({IMAGE: image})[IMAGE_EMBEDDINGS]
    for backend in runtime.BACKENDS:
        embeddings = runtime.load(badly_calibrated, "encoder", backend).run({IMAGE: image})[IMAGE_EMBEDDINGS]
        assert embeddings.shape == reference.shape and np.isfinite(embeddings).all()
        assert not np.allclose(embeddings, reference, atol=1e-3), f"{backend} ran an f32 encoder"


def test_validate_fails_a_bad_quantization_with_exit_1(badly_calibrated, tiny_checkpoint, tmp_path):
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["validate", str(badly_calibrated), "--checkpoint", str(tiny_checkpoint),
                                      "--sample", "coffee-cup", "--clicks", "3", "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "gate: onnxruntime int8 encoder vs the f32 reference" in result.output
    data = json.loads(report.read_text())
    assert not data["passed"] and set(data["gates"]) == {"onnxruntime", "openvino"}
    encoders = [case for case in data["cases"] if case["part"] == "encoder"]
    assert {case["backend"] for case in encoders if any("end effect" in f for f in case["failures"])} == {"onnxruntime", "openvino"}
    # judged by the end effect only: no failure on the embeddings' values themselves
    assert not [f for case in encoders for f in case["failures"] if f.startswith("image_embeddings")]
    decoders = [case for case in data["cases"] if case["part"] == "decoder"]
    assert decoders and all(case["verdict"] != "fail" for case in decoders), "the f32 decoder is still judged strictly"


def test_manifest_without_precision_reads_as_f32(tiny_artifacts, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(tiny_artifacts, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data.pop("precision")
    (copy / "manifest.json").write_text(json.dumps(data))
    precision = Manifest.read(copy).precision
    assert precision.choice == "f32" and precision.encoder.openvino == "f32"


def test_calibration_images_without_int8_are_refused(tiny_checkpoint, tmp_path, golden_image_path):
    result = CliRunner().invoke(app, ["export", "-c", "inter2former-tiny-512", "--checkpoint", str(tiny_checkpoint),
                                      "-o", str(tmp_path / "out"), "--calibration-images", str(golden_image_path)])
    assert result.exit_code == 2 and "--calibration-images is for --precision int8 only" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bf16_record_keeps_onnxruntime_in_f32():
    from i2f_deploy.contract import ExportPrecision
    from i2f_deploy.export.precision import precision_record

    record = ExportPrecision.model_validate(precision_record("bf16", []))
    assert (record.encoder.onnxruntime, record.encoder.openvino) == ("f32", "bf16")
    assert (record.decoder.onnxruntime, record.decoder.openvino) == ("f32", "f32")


def test_bench_adds_the_int8_encoder_rows_next_to_the_f32_export(tiny_artifacts, badly_calibrated, tiny_checkpoint, tmp_path):
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(tiny_artifacts), str(badly_calibrated), "--checkpoint", str(tiny_checkpoint),
                                      "--backends", "torch,onnxruntime,openvino", "--scenarios", "medium",
                                      "--kernels", "function-body",  # native rows: tests/test_bench.py
                                      "--repeat", "1", "--warmup", "0", "--json", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["rows"]
    encoders = {row["backend"]: row for row in rows if row["part"] == "encoder"}
    assert set(encoders) == {"torch", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8"}
    assert encoders["openvino-int8"]["settings"]["export_precision"] == "int8"
    # the int8 export's decoder is the f32 one: timed once, under the f32 export's names
    assert {row["backend"] for row in rows if row["part"] == "decoder"} == {"torch", "onnxruntime", "openvino"}
    speedups = json.loads(report.read_text())["speedups"]
    assert {s["backend"] for s in speedups if s["part"] == "encoder" and "vs_eager_torch" in s} >= {"onnxruntime-int8", "openvino-int8"}
