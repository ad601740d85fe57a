"""``i2f-deploy evaluate`` on tiny synthetic datasets in each layout and the tiny export: the
readers, the click protocol against a hand-computed case, the metrics against the official
definitions, contenders agreeing, --resume after a kill, corrupt files counted, --jobs, and
``validate --dataset``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

# Two textured images, each with a bright rectangle as its object (y0, y1, x0, x1, end exclusive).
from support.commands import assert_refused, assert_runs_without_torch
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.compare import mask_iou
from i2f_deploy.evaluate.datasets import HQSEG44K_SUBSETS, DatasetSpec, entries, load
from i2f_deploy.evaluate.metrics import summary
from i2f_deploy.prompt_map import Click
from i2f_deploy.validate.clicks import next_click

pytestmark = pytest.mark.graph

PICTURES = [((96, 128), (30, 60, 40, 100)), ((120, 90), (10, 70, 20, 60))]
# Hand-computed first click of picture 0: the rectangle's rows 30..59 and columns 40..99 are
# 15 px deep at most (rows 44 and 45, 15 px from row 29 or 60; columns 54..85, >= 15 px from
# columns 39 and 100); the first of those in row-major order is (y 44, x 54).
FIRST_CLICK_0 = Click(y=44, x=54, positive=True)


def picture(index: int) -> tuple[np.ndarray, np.ndarray]:
    (h, w), (y0, y1, x0, x1) = PICTURES[index]
    rng = np.random.default_rng(index)
    image = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    image[y0:y1, x0:x1] = rng.integers(150, 255, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return image, mask


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])


def write_mask(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8), "P" if palette else "L")
    if palette:  # DAVIS's masks: indices into a palette (OpenCV would read colours)
        image.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192])
    image.save(path)


def make_davis(root: Path, corrupt: bool = True) -> Path:
    """img/, gt/<id>.png (object = 1, a void boundary of 255), list/val.txt; a corrupt image last."""
    ids = []
    for index in range(len(PICTURES)):
        image, mask = picture(index)
        write_image(root / "img" / f"pic{index}.jpg", image)
        values = mask.astype(np.uint8)
        values[cv2.dilate(mask.astype(np.uint8), np.ones((3, 3))).astype(bool) & ~mask] = 255
        write_mask(root / "gt" / f"pic{index}#001.png", values, palette=True)
        ids.append(f"pic{index}#001")
    if corrupt:
        (root / "img" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        write_mask(root / "gt" / "broken#001.png", np.ones((8, 8)), palette=True)
        ids.append("broken#001")
    (root / "list").mkdir(parents=True)
    (root / "list" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def make_hqseg44k(root: Path) -> Path:
    """SAM-HQ's folders: one image per subset (0/255 masks); ThinObject5K's train files ignored."""
    for index, (subset, (image_dir, mask_dir)) in enumerate(HQSEG44K_SUBSETS.items()):
        image, mask = picture(index % len(PICTURES))
        write_image(root / subset / image_dir / f"s{index}.jpg", image)
        write_mask(root / subset / mask_dir / f"s{index}.png", mask * 255)
    write_image(root / "thin_object_detection/ThinObject5K/images_train/t.jpg", picture(0)[0])
    return root


def make_folder(root: Path) -> Path:
    for index in range(len(PICTURES)):
        image, mask = picture(index)
        write_image(root / "images" / f"p{index}.jpg", image)
        write_mask(root / "masks" / f"p{index}.png", mask * 255)
    write_image(root / "images" / "lonely.jpg", picture(0)[0])  # no mask
    return root


def evaluate(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- readers


def test_readers_list_each_layout_in_the_official_order(tmp_path):
    davis = list(entries(DatasetSpec.parse(f"davis:{make_davis(tmp_path / 'data' / 'davis' / 'DAVIS')}")))
    assert [e.name for e in davis] == ["pic0#001", "pic1#001", "broken#001"]
    sample = load(davis[0])
    assert np.array_equal(sample.mask, picture(0)[1]), "object = value 1; the 255 void boundary is background"
    assert sample.image.shape == (96, 128, 3)
    # DATASETS.md's data/davis (holding DAVIS/) is accepted too
    assert DatasetSpec.parse(f"davis:{tmp_path / 'data' / 'davis'}").path == tmp_path / "data" / "davis" / "DAVIS"

    hq = list(entries(DatasetSpec.parse(f"hqseg44k:{make_hqseg44k(tmp_path / 'sam-hq')}")))
    assert [e.name for e in hq] == ["COIFT/s0", "HRSOD/s1", "ThinObject5K/s2", "DIS-VD/s3"]
    assert all(not e.problem for e in hq) and np.array_equal(load(hq[1]).mask, picture(1)[1])

    folder = list(entries(DatasetSpec.parse(f"folder:{make_folder(tmp_path / 'mine')}")))
    assert [(e.name, e.problem) for e in folder] == [("lonely", "no mask"), ("p0", ""), ("p1", "")]


def test_unreadable_or_mismatched_files_are_entries_with_a_problem(tmp_path):
    from i2f_deploy.errors import InputError

    root = make_folder(tmp_path / "mine")
    write_image(root / "images" / "small.jpg", picture(0)[0][:50])
    write_mask(root / "masks" / "small.png", picture(0)[1] * 255)
    write_image(root / "images" / "empty.jpg", picture(0)[0])
    write_mask(root / "masks" / "empty.png", np.zeros((96, 128)))
    (root / "masks" / "p1.png").write_bytes(b"truncated")
    davis = make_davis(tmp_path / "davis", corrupt=False)
    (davis / "list" / "val.txt").write_text("pic0#001\npic1#001\npic0#001\n")
    assert [(e.name, e.problem) for e in entries(DatasetSpec.parse(f"davis:{davis}"))][1:] == [
        ("pic1#001", ""), ("pic0#001 (2)", "pic0#001 listed again")]
    write_mask(davis / "gt" / "pic0#001.png", picture(0)[1] * 255)
    with pytest.raises(InputError, match="value 1; the mask holds 0, 255: a 0/255 mask belongs in a folder dataset"):
        load(next(entries(DatasetSpec.parse(f"davis:{davis}"))))
    found = {e.name: e for e in entries(DatasetSpec.parse(f"folder:{root}"))}
    for name, message in (("small", "mask small.png is 128x96, image small.jpg is 128x50"), ("empty", "no object pixel"),
                          ("p1", "cannot read"), ("lonely", "no mask")):
        with pytest.raises(InputError, match=message):
            load(found[name])


# ----------------------------------------------------------------------------- protocol and metrics


def test_click_protocol_matches_a_hand_computed_case():
    _, mask = picture(0)
    assert next_click(np.zeros_like(mask), mask) == FIRST_CLICK_0
    # a prediction spilling 20 px to the right: the false positive region (rows 30..59, columns
    # 100..119) is 10 px deep (columns 109 and 110 on rows 39..50: 10 px from column 99 or 120 and
    # from rows 29/60); the false negatives (none) lose, so a negative click at (39, 109)
    prediction = mask.copy()
    prediction[30:60, 100:120] = True
    assert next_click(prediction, mask) == Click(y=39, x=109, positive=False)


def test_metrics_follow_the_official_definitions():
    """The official ``calculate_binary_iou_single_sample`` (foreground IoU, 0 for an empty
    prediction) and ``compute_noc`` (last IoU set to 1, first click reaching t, 1-based), its
    ``clickNN`` columns (mean IoU after click NN), worked by hand on three images of 4 clicks."""
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    prediction = np.zeros((4, 4), bool)
    prediction[:2, 1:3] = True
    assert mask_iou(prediction, gt) == pytest.approx(2 / 6)
    assert mask_iou(np.zeros_like(gt), gt) == 0.0

    ious = [[0.80, 0.86, 0.91, 0.96], [0.50, 0.70, 0.88, 0.89], [0.95, 0.97, 0.60, 0.99]]
    result = summary(ious, max_clicks=4)
    assert result["noc"] == pytest.approx({"85": (2 + 3 + 1) / 3, "90": (3 + 4 + 1) / 3, "95": (4 + 4 + 1) / 3})
    assert result["nof"] == {"85": 0, "90": 1, "95": 1}  # image 1 reaches 0.95 at the last click: no failure
    assert result["miou"] == pytest.approx([0.75, (0.86 + 0.70 + 0.97) / 3, (0.91 + 0.88 + 0.60) / 3, (0.96 + 0.89 + 0.99) / 3])


def test_contenders_are_each_backend_times_precision(tiny_artifacts):
    from i2f_deploy.contract import ExportPrecision, PartPrecision
    from i2f_deploy.errors import I2FError
    from i2f_deploy.evaluate.contenders import graph_choices
    from i2f_deploy.runtime import read_manifest

    manifest = read_manifest(tiny_artifacts)
    choices = graph_choices(manifest, ["onnxruntime", "openvino"], ["f32", "bf16", "default"])
    assert [(c.name, c.precision, c.reduced) for c in choices] == [
        ("onnxruntime", None, False), ("openvino", "f32", False), ("openvino-bf16", "bf16", True),
        ("openvino-default", "default", True)]
    int8 = manifest.model_copy(update={"precision": ExportPrecision(
        choice="int8", encoder=PartPrecision(onnxruntime="int8", openvino="int8"))})
    assert [(c.name, c.precision, c.reduced) for c in graph_choices(int8, ["onnxruntime", "openvino"], ["f32"])] == [
        ("onnxruntime-int8", None, True), ("openvino-int8", None, True)]
    with pytest.raises(I2FError, match="runs as exported"):
        graph_choices(int8, ["openvino"], ["bf16"])


# ----------------------------------------------------------------------------- on the tiny export


def test_reference_and_both_backends_agree_and_a_corrupt_image_is_counted(tiny_artifacts, tiny_checkpoint, tmp_path):
    dataset = make_davis(tmp_path / "davis")
    out = tmp_path / "out"
    result = evaluate(str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--dataset", f"davis:{dataset}",
                      "--out", str(out), "--clicks", "3")
    assert result.exit_code == 0, result.output
    summary_json = json.loads((out / "summary.json").read_text())
    assert summary_json["contenders"] == ["pytorch", "onnxruntime", "openvino"]
    assert summary_json["images"] == 3 and summary_json["evaluated"] == 2
    assert [p["name"] for p in summary_json["problems"]] == ["broken#001"]
    assert "cannot read" in summary_json["problems"][0]["problem"]
    assert "skipped broken#001" in result.output and "1 of 3 image(s) skipped" in result.output

    for record in records(out)[:2]:
        runs = record["contenders"]
        reference = runs["pytorch"]
        for name in ("onnxruntime", "openvino"):
            assert runs[name]["clicks"] == reference["clicks"], name
            assert np.allclose(runs[name]["ious"], reference["ious"], atol=1e-3), name
            assert min(runs[name]["agreement"]) >= 0.999, name
    first = records(out)[0]["contenders"]["pytorch"]["clicks"][0]
    assert Click(y=first[0], x=first[1], positive=first[2]) == FIRST_CLICK_0
    metrics = summary_json["contender_metrics"]
    assert metrics["onnxruntime"]["noc"] == metrics["openvino"]["noc"] == metrics["pytorch"]["noc"]
    assert summary_json["differences"] == []
    assert len(metrics["pytorch"]["miou"]) == 3 and metrics["openvino"]["latency"]["click_ms_median"] > 0
    for name in ("summary.csv", "images.csv", "plot.png"):
        assert (out / name).stat().st_size > 0
    assert "NoC@90" in result.output and "0 of 2 image(s) differ" in result.output


def test_evaluate_runs_on_hqseg44k_layout(tiny_artifacts, tmp_path):
    dataset = make_hqseg44k(tmp_path / "sam-hq")
    out = tmp_path / "out"
    result = evaluate(str(tiny_artifacts), "--dataset", f"hqseg44k:{dataset}", "--out", str(out), "--clicks", "1",
                      "--backends", "onnxruntime", "--no-reference", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in records(out)] == ["COIFT/s0", "HRSOD/s1"]
    first = records(out)[0]["contenders"]["onnxruntime"]["clicks"][0]
    assert Click(y=first[0], x=first[1], positive=first[2]) == FIRST_CLICK_0


def test_graph_contenders_run_without_torch(tiny_artifacts, tmp_path):
    dataset = make_folder(tmp_path / "mine")
    assert_runs_without_torch(f"""
from pathlib import Path
from rich.console import Console
from i2f_deploy.evaluate.runner import EvaluateRequest, run_evaluation
request = EvaluateRequest(Path({str(tiny_artifacts)!r}), "folder:{dataset}", Path({str(tmp_path / 'out')!r}),
                          backends="onnxruntime", reference=False, clicks=1, limit=2)
result = run_evaluation(request, Console())
assert result["evaluated"] == 1 and result["contenders"] == ["onnxruntime"], result
""")


def test_resume_continues_where_a_killed_run_stopped(tiny_artifacts, tmp_path):
    dataset = make_folder(tmp_path / "mine")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "i2f_deploy.cli", "evaluate", str(tiny_artifacts), "--dataset", f"folder:{dataset}",
               "--out", str(out), "--clicks", "2", "--backends", "onnxruntime", "--no-reference"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    images = out / "images.jsonl"
    deadline = time.monotonic() + 120
    while not (images.is_file() and images.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = records(out)
    assert 2 <= len(before) < 3, "killed after two of three images"
    with images.open("a") as handle:
        handle.write('{"name": "p1", "contenders": {"onnx')  # a record the kill cut short
    result = evaluate(str(tiny_artifacts), "--dataset", f"folder:{dataset}", "--out", str(out), "--clicks", "2",
                      "--backends", "onnxruntime", "--no-reference", "--resume")
    assert result.exit_code == 0, result.output
    assert "3 image(s) in" in result.output and f"{len(before)} done before" in result.output
    after = records(out)
    assert after[:len(before)] == before, "records of the killed run kept as they were"
    assert sorted(r["name"] for r in after) == ["lonely", "p0", "p1"]
    assert json.loads((out / "summary.json").read_text())["evaluated"] == 2

    refused = evaluate(str(tiny_artifacts), "--dataset", f"folder:{dataset}", "--out", str(out), "--clicks", "3",
                       "--backends", "onnxruntime", "--no-reference", "--resume")
    assert_refused(refused, "clicks: was 2, now 3")


def test_jobs_split_the_images_and_give_the_same_results(tiny_artifacts, tmp_path):
    dataset = make_folder(tmp_path / "mine")
    common = ["--dataset", f"folder:{dataset}", "--clicks", "2", "--backends", "onnxruntime", "--no-reference"]
    one = evaluate(str(tiny_artifacts), *common, "--out", str(tmp_path / "one"), "--limit", "2")
    two = evaluate(str(tiny_artifacts), *common, "--out", str(tmp_path / "two"), "--limit", "2", "--jobs", "2", "--threads", "2")
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert "2 job(s) x 1 thread(s)" in two.output
    by_name = {r["name"]: r for r in records(tmp_path / "one")}
    for record in records(tmp_path / "two"):
        assert record.get("problem") == by_name[record["name"]].get("problem")
        if "contenders" in record:
            assert record["contenders"]["onnxruntime"]["ious"] == by_name[record["name"]]["contenders"]["onnxruntime"]["ious"]


def test_validate_runs_its_click_loops_on_a_dataset(tiny_artifacts, tiny_checkpoint, tmp_path):
    dataset = make_davis(tmp_path / "davis")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["validate", str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--dataset",
                                      f"davis:{dataset}", "--clicks", "2", "--backends", "onnxruntime", "--report", str(report)])
    data = json.loads(report.read_text())
    assert {loop["sample"] for loop in data["loops"]} == {"pic0#001", "pic1#001"}
    assert [p["name"] for p in data["dataset_problems"]] == ["broken#001"]
    assert "skipped broken#001" in result.output
    assert result.exit_code == (0 if data["passed"] else 1), result.output


def test_validate_limit_takes_the_first_images_of_a_dataset(tiny_artifacts, tiny_checkpoint, tmp_path):
    dataset = make_davis(tmp_path / "davis")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["validate", str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--dataset",
                                      f"davis:{dataset}", "--limit", "1", "--clicks", "1", "--backends", "onnxruntime",
                                      "--report", str(report)])
    data = json.loads(report.read_text())
    assert {loop["sample"] for loop in data["loops"]} == {"pic0#001"}
    assert data["dataset_problems"] == []
    assert result.exit_code == (0 if data["passed"] else 1), result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "davis:{davis}", "--limit", "0"], "--limit must be at least 1, got 0"),
        (["--sample", "rocket", "--limit", "2"], "--limit counts the images of --dataset"),
    ],
)
def test_validate_refuses_a_bad_limit(tiny_artifacts, tiny_checkpoint, tmp_path, args, message):
    values = {"davis": str(make_davis(tmp_path / "davis"))}
    result = CliRunner().invoke(app, ["validate", str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint),
                                      *[arg.format(**values) for arg in args]])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "coco:{data}"], "unknown kind 'coco'"),
        (["--dataset", "davis"], "expected KIND:PATH"),
        (["--dataset", "davis:{missing}"], "is not a directory"),
        (["--dataset", "hqseg44k:{data}"], "holds none of HQSeg-44K's validation subsets"),
        (["--dataset", "folder:{data}"], "images, masks missing"),
        (["--dataset", "davis:{davis}", "--jobs", "0"], "--jobs must be from 1"),
        (["--dataset", "davis:{davis}", "--clicks", "0"], "--clicks must be at least 1"),
        (["--dataset", "davis:{davis}", "--backends", "onnxruntime", "--precision", "bf16"], "add openvino to --backends"),
        (["--dataset", "davis:{davis}", "--precision", "fp8"], "--precision: unknown fp8"),
        (["--dataset", "davis:{davis}", "--no-reference", "--out", "{full}"], "is not empty: pass --resume"),
        (["--dataset", "davis:{davis}", "--no-reference", "--tolerance", "0.9"], "--tolerance judges masks"),
        (["--dataset", "davis:{davis}"], "pass --checkpoint (the PyTorch reference needs the weights; --no-reference runs"),
    ],
)
def test_bad_inputs_exit_2_and_leave_nothing(tiny_artifacts, tmp_path, args, message):
    values = {"data": tmp_path, "missing": tmp_path / "nowhere", "davis": make_davis(tmp_path / "davis", corrupt=False),
              "full": tmp_path / "full"}
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    args = [arg.format(**values) for arg in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    result = evaluate(str(tiny_artifacts), *args)
    assert_refused(result, message)
    assert not (tmp_path / "out").exists()
