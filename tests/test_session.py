"""The interactive session and ``predict`` on the exported golden tiny checkpoint."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.commands import assert_runs_without_torch
from support.native import require_native

from i2f_deploy import runtime
from i2f_deploy.bench.memory import resident_mb
from i2f_deploy.compare import mask_iou
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.predict import predict
from i2f_deploy.preprocess import preprocess
from i2f_deploy.prompt_map import Click, add_clicks, apply_prediction, initial_prompt_map
from i2f_deploy.runtime.session import DEFAULT_HISTORY, InteractiveSession, Prediction

pytestmark = pytest.mark.graph

BACKENDS = ("onnxruntime", "openvino")
# Six clicks on the 400x600 golden image, image pixels (y, x): positive and negative.
CLICKS = (
    Click(x=256, y=230, positive=True),
    Click(x=102, y=76, positive=False),
    Click(x=179, y=281, positive=True),
    Click(x=500, y=350, positive=False),
    Click(x=400, y=150, positive=True),
    Click(x=30, y=300, positive=False),
)


@pytest.fixture(scope="module")
def torch_features(portable_model, golden_rgb):
    """The PyTorch encoder, with the exported encoder's edge numerics, on the golden image."""
    tensor, _ = preprocess(golden_rgb, 512)
    with torch.no_grad():
        return portable_model.encode(torch.from_numpy(tensor))


class TorchEncoder:
    """A runner with the encoder's contract that runs the PyTorch model (counts its calls)."""

    input_names = ("image",)
    output_names = ("image_embeddings", "edge_map_0", "edge_map_1", "edge_map_2", "edge_map_3")

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def run(self, inputs):
        self.calls += 1
        with torch.no_grad():
            embeddings, edges = self.model.encode(torch.from_numpy(inputs["image"]))
        return dict(zip(self.output_names, [t.numpy() for t in (embeddings, *edges)]))


def add(session: InteractiveSession, click: Click) -> Prediction:
    """``click`` added to ``session``."""
    return session.add_click(click.x, click.y, click.positive)


class CountingRunner:
    def __init__(self, runner) -> None:
        self.runner, self.calls = runner, 0
        self.input_names, self.output_names = runner.input_names, runner.output_names

    def run(self, inputs):
        self.calls += 1
        return self.runner.run(inputs)


def torch_loop(model, features, height: int, width: int, clicks) -> list[np.ndarray]:
    """The official ``interact_test`` loop with the PyTorch model, written out independently of
    the session: clicks scaled by target / padded side with int truncation, one click added per
    step, prediction at the target size folded into the map, logits resized to the padded
    square with torch and cropped."""
    embeddings, edges = features
    side = max(-(-height // 256) * 256, -(-width // 256) * 256)
    scale = 512 / side
    ref_label = initial_prompt_map(512)
    masks = []
    for click in clicks:
        ref_label = add_clicks(ref_label, [Click(x=int(scale * click.x), y=int(scale * click.y), positive=click.positive)])
        logits = model.decode(embeddings, edges, torch.from_numpy(ref_label))
        ref_label = apply_prediction(ref_label, (logits > 0).numpy()[0, 0])
        full = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
        masks.append((full[0, 0, :height, :width] > 0).numpy())
    return masks


@pytest.fixture(scope="module")
def reference_masks(portable_model, torch_features):
    return torch_loop(portable_model, torch_features, 400, 600, CLICKS)


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("backend", BACKENDS)
def test_session_reproduces_the_pytorch_loop_click_by_click(tiny_artifacts, portable_model, golden_rgb,
                                                             reference_masks, backend):
    """Same encoder features (PyTorch's, injected) -> the session's loop must match the PyTorch
    loop per click (IoU >= 0.999; the decoders agree to ~3e-5)."""
    session = InteractiveSession(encoder=TorchEncoder(portable_model), decoder=runtime.load(tiny_artifacts, "decoder", backend),
                                 target_size=512)
    session.set_image(golden_rgb)
    ious = []
    for click, expected in zip(CLICKS, reference_masks):
        prediction = add(session, click)
        assert prediction.mask.shape == (400, 600) and prediction.mask.dtype == np.bool_
        assert prediction.logits.shape == (400, 600) and prediction.logits.dtype == np.float32
        np.testing.assert_array_equal(prediction.mask, prediction.logits > 0)
        ious.append(mask_iou(prediction.mask, expected))
    print(f"\n{backend} session (PyTorch encoder) vs PyTorch loop, IoU per click:",
          " ".join(f"{v:.6f}" for v in ious))
    assert min(ious) >= 0.999, ious
    assert mask_iou(reference_masks[0], reference_masks[-1]) < 0.9999  # the clicks change the mask


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_end_to_end_against_the_pytorch_loop(tiny_artifacts, golden_rgb, reference_masks, backend):
    """Exported encoder + decoder vs the PyTorch model (with the edge numerics the encoder graph
    implements, see docs/faithfulness.md) end to end, click by click."""
    session = InteractiveSession.from_artifact(tiny_artifacts, backend)
    session.set_image(golden_rgb)
    ious = [mask_iou(add(session, c).mask, m) for c, m in zip(CLICKS, reference_masks)]
    print(f"\n{backend} session (exported encoder) vs PyTorch loop, IoU per click:",
          " ".join(f"{v:.6f}" for v in ious))
    assert min(ious) >= 0.999, ious


def image_pixel_for(target: int, scale: float) -> int:
    """The smallest image coordinate that the loop's ``int(scale * v)`` maps to ``target``."""
    value = int(target / scale)
    while int(scale * value) < target:
        value += 1
    assert int(scale * value) == target
    return value


def test_session_reproduces_the_official_golden_loop(tiny_artifacts, tiny_model, golden_rgb, golden, golden_meta):
    """With the official encoder features, the prompt map after each golden click equals the
    official loop's map after the prediction update, exactly. The golden clicks are given on the
    512 grid; the third lies in the padding (y 281 -> image row 422 of 400), so it cannot be
    clicked on the image and only the first two steps are compared."""
    session = InteractiveSession(encoder=TorchEncoder(tiny_model), decoder=runtime.load(tiny_artifacts, "decoder"), target_size=512)
    session.set_image(golden_rgb)
    scale = golden_meta["scale"]
    compared = 0
    for step, point in enumerate(golden_meta["loop_clicks"]):
        target = Click.from_official(point)
        y, x = image_pixel_for(target.y, scale), image_pixel_for(target.x, scale)
        if not (y < 400 and x < 600):
            with pytest.raises(InputError, match="outside"):
                session.add_click(x, y, target.positive)
            continue
        session.add_click(x, y, target.positive)
        np.testing.assert_array_equal(session.prompt_map, golden[f"loop{step}/ref_label_after_prediction"])
        compared += 1
    assert compared == 2


def test_session_does_not_import_torch(tiny_artifacts, golden_image_path):
    assert_runs_without_torch(
        "import cv2\n"
        "from i2f_deploy.runtime.session import InteractiveSession\n"
        f"s = InteractiveSession.from_artifact({str(tiny_artifacts)!r})\n"
        f"s.set_image(cv2.cvtColor(cv2.imread({str(golden_image_path)!r}), cv2.COLOR_BGR2RGB))\n"
        "p = s.add_click(256, 230, True)\n"
        "assert p.mask.any() and s.contours()\n"
        "import i2f_deploy.predict\n"
    )


# --------------------------------------------------------------------------- state
def snapshot(session: InteractiveSession):
    """Clicks, prompt map, mask, image-size logits, target-size logits and num_routed."""
    prediction, logits = session.prediction, session.target_logits
    return (session.clicks, session.prompt_map.copy(), session.mask.copy(),
            None if prediction is None else prediction.logits.copy(),
            None if logits is None else logits.copy(),
            None if prediction is None else prediction.num_routed)


def assert_same(a, b) -> None:
    """Bit-identical states (float arrays compared by their bytes, not their values)."""
    assert a[0] == b[0] and a[5] == b[5]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    for x, y in ((a[3], b[3]), (a[4], b[4])):
        if x is None or y is None:
            assert x is None and y is None
        else:
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
            assert x.tobytes() == y.tobytes()


@pytest.fixture(scope="module")
def ort_session(tiny_artifacts):
    return InteractiveSession.from_artifact(tiny_artifacts)


def test_undo_redo_and_reset(tiny_artifacts, golden_rgb):
    decoder = CountingRunner(runtime.load(tiny_artifacts, "decoder"))
    session = InteractiveSession(encoder=runtime.load(tiny_artifacts, "encoder"), decoder=decoder, target_size=512)
    session.set_image(golden_rgb)
    empty = snapshot(session)
    assert empty[0] == () and not empty[2].any() and session.prediction is None
    np.testing.assert_array_equal(empty[1], initial_prompt_map(512))
    states = []
    for click in CLICKS[:4]:
        add(session, click)
        states.append(snapshot(session))
    assert decoder.calls == 4

    # A fresh run of the same clicks gives the same states (the loop is deterministic).
    session.set_image(golden_rgb)
    for click, state in zip(CLICKS[:4], states):
        add(session, click)
        assert_same(snapshot(session), state)
    decoder.calls = 0

    # Undo and redo within the history bound run no decoder.
    assert isinstance(session.undo(), Prediction)
    assert_same(snapshot(session), states[2])
    session.undo()
    assert_same(snapshot(session), states[1])
    assert session.can_redo
    session.redo()
    assert_same(snapshot(session), states[2])
    session.redo()
    assert_same(snapshot(session), states[3])
    assert session.redo() is None and not session.can_redo
    assert decoder.calls == 0

    # Undo then adding the same click again is also the same state; adding clears the redo.
    session.undo()
    add(session, CLICKS[3])
    assert_same(snapshot(session), states[3])
    session.undo()
    add(session, CLICKS[4])
    assert not session.can_redo and session.redo() is None

    # Undo everything: back to no clicks; undo on nothing is a no-op.
    while session.clicks:
        session.undo()
    assert_same(snapshot(session), empty)
    assert session.undo() is None
    assert session.redo() is not None  # redo works from the empty state too
    assert_same(snapshot(session), states[0])

    # reset keeps the image (no encoder run) and forgets clicks and redo.
    add(session, CLICKS[1])
    session.reset()
    assert_same(snapshot(session), empty)
    assert not session.can_redo and session.contours() == []
    add(session, CLICKS[0])
    assert_same(snapshot(session), states[0])


def test_undo_right_after_a_click_takes_the_state_packed_in_the_background(tiny_artifacts, golden_rgb, monkeypatch):
    """The state a click leaves is packed after the click has answered; an undo that comes while
    it is still being packed waits for it and gets the same state, with no decoder run."""
    from i2f_deploy.runtime import states as states_module

    release, packing = threading.Event(), threading.Event()
    real_pack = states_module.pack_logits

    def held_pack(logits: np.ndarray) -> bytes:
        packing.set()
        assert release.wait(30)
        return real_pack(logits)

    monkeypatch.setattr(states_module, "pack_logits", held_pack)
    decoder = CountingRunner(runtime.load(tiny_artifacts, "decoder"))
    session = InteractiveSession(encoder=runtime.load(tiny_artifacts, "encoder"), decoder=decoder, target_size=512)
    session.set_image(golden_rgb)
    add(session, CLICKS[0])
    first = snapshot(session)
    add(session, CLICKS[1])  # answers while the first state's logits are still being packed
    assert packing.wait(30) and not release.is_set()
    threading.Timer(0.2, release.set).start()
    calls = decoder.calls
    session.undo()  # waits for the pack, then takes the state
    assert decoder.calls == calls
    assert_same(snapshot(session), first)
    session.close()


def random_clicks(count: int, seed: int = 0) -> list[Click]:
    """Clicks anywhere on the 400x600 golden image, alternately positive and negative."""
    rng = np.random.default_rng(seed)
    return [Click(x=int(rng.integers(0, 600)), y=int(rng.integers(0, 400)), positive=i % 2 == 0)
            for i in range(count)]


def test_ten_undos_after_200_clicks_run_no_decoder(tiny_artifacts, golden_rgb):
    """The acceptance case: states come from the history, bit-identical to the loop's states
    after the remaining clicks (recorded while clicking, which is a fresh replay of them)."""
    session = InteractiveSession.from_artifact(tiny_artifacts)
    assert session.history == DEFAULT_HISTORY >= 10
    session.set_image(golden_rgb)
    states = {}
    for count, click in enumerate(random_clicks(200), 1):
        add(session, click)
        if count >= 190 or count == 199 - DEFAULT_HISTORY:
            states[count] = snapshot(session)
    runs = session.decoder_runs
    started = time.perf_counter()
    for count in range(199, 189, -1):
        assert isinstance(session.undo(), Prediction)
        assert_same(snapshot(session), states[count])
    elapsed = time.perf_counter() - started
    assert session.decoder_runs == runs
    print(f"\n10 undos after 200 clicks: {elapsed * 1e3:.0f} ms, history {session.history_bytes / 1e6:.1f} MB")
    for count in range(191, 201):
        session.redo()
        assert_same(snapshot(session), states[count])
    assert session.decoder_runs == runs and not session.can_redo
    # Memory is bounded: logits only in the ``history`` states left last, prompt maps in all.
    for _ in range(DEFAULT_HISTORY):
        session.undo()
    assert session.decoder_runs == runs
    session.undo()
    assert session.decoder_runs == runs + 1
    assert_same(snapshot(session), states[199 - DEFAULT_HISTORY])


def test_undo_and_redo_beyond_the_history_bound_cost_one_decoder_run_each(tiny_artifacts, golden_rgb):
    session = InteractiveSession.from_artifact(tiny_artifacts, history=2)
    session.set_image(golden_rgb)
    states = [snapshot(session)]
    for click in CLICKS:
        add(session, click)
        states.append(snapshot(session))
    costs = []
    for count in range(5, -1, -1):
        runs = session.decoder_runs
        session.undo()
        costs.append(session.decoder_runs - runs)
        assert_same(snapshot(session), states[count])
    # The 2 nearest states are free, older ones cost one run each; no clicks left is free.
    assert costs == [0, 0, 1, 1, 1, 0]
    costs = []
    for count in range(1, 7):
        runs = session.decoder_runs
        session.redo()
        costs.append(session.decoder_runs - runs)
        assert_same(snapshot(session), states[count])
    assert costs == [0, 0, 1, 1, 1, 1]
    # Going back and forth near the current state stays free.
    runs = session.decoder_runs
    session.undo(), session.undo(), session.redo(), session.undo(), session.redo(), session.redo()
    assert session.decoder_runs == runs
    assert_same(snapshot(session), states[6])
    # A new click after undos: the redo history goes, the undo history stays exact.
    session.undo(), session.undo()
    add(session, CLICKS[0])
    assert not session.can_redo and len(session.clicks) == 5
    session.undo()
    assert_same(snapshot(session), states[4])


def test_history_zero_keeps_only_prompt_maps(tiny_artifacts, golden_rgb):
    session = InteractiveSession.from_artifact(tiny_artifacts, history=0)
    session.set_image(golden_rgb)
    states = [snapshot(session)]
    for click in CLICKS[:3]:
        add(session, click)
        states.append(snapshot(session))
    assert 0 < session.history_bytes < 2 * 512 * 512 // 10  # runs of the two older prompt maps
    costs = []
    for count in (2, 1, 0):
        runs = session.decoder_runs
        session.undo()
        costs.append(session.decoder_runs - runs)
        assert_same(snapshot(session), states[count])
    for count in (1, 2, 3):
        runs = session.decoder_runs
        session.redo()
        costs.append(session.decoder_runs - runs)
        assert_same(snapshot(session), states[count])
    assert costs == [1, 1, 0, 1, 1, 1]


def test_contours_trace_the_mask(ort_session, golden_rgb):
    session = ort_session
    session.set_image(golden_rgb)
    mask = add(session, CLICKS[0]).mask
    polygons = session.contours()
    assert polygons and all(p.ndim == 2 and p.shape[1] == 2 and p.dtype == np.int32 for p in polygons)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(filled, polygons, 1)
    assert mask_iou(filled.astype(bool), mask) > 0.95
    # every mask pixel is inside an outer contour, but for specks without area (runtime.polygons)
    count, labels = cv2.connectedComponents((mask & (filled == 0)).astype(np.uint8), connectivity=8)
    for label in range(1, count):
        speck = labels == label
        assert speck.sum() <= max(speck.shape) and (speck.any(axis=0).sum() == 1 or speck.any(axis=1).sum() == 1)


def test_encoder_cache(tiny_artifacts, golden_rgb):
    encoder = CountingRunner(runtime.load(tiny_artifacts, "encoder"))
    session = InteractiveSession(encoder=encoder, decoder=runtime.load(tiny_artifacts, "decoder"), target_size=512, cache_size=2)
    first, second, third = golden_rgb, np.ascontiguousarray(golden_rgb[::-1]), np.ascontiguousarray(golden_rgb[:, ::-1])
    runs = session.encoder_runs
    session.set_image(first)
    expected = add(session, CLICKS[0]).mask.copy()
    session.set_image(second)
    add(session, CLICKS[0])
    assert encoder.calls == 2
    session.set_image(first.copy())  # same pixels, another array: a cache hit
    assert encoder.calls == 2 and session.clicks == () and not session.mask.any()
    np.testing.assert_array_equal(add(session, CLICKS[0]).mask, expected)
    session.set_image(third)  # evicts the least recently used image: second
    assert encoder.calls == 3
    session.set_image(first)
    assert encoder.calls == 3
    session.set_image(second)
    assert encoder.calls == 4
    assert session.encoder_runs - runs == 4
    encoder.calls = 0
    session = InteractiveSession(encoder=encoder, decoder=runtime.load(tiny_artifacts, "decoder"), target_size=512,
                                 cache_size=0)  # no cache: only the current image is kept
    session.set_image(first)
    session.set_image(first)
    assert encoder.calls == 1
    session.set_image(second)
    session.set_image(first)
    assert encoder.calls == 3


def test_errors(tiny_artifacts, ort_session, golden_rgb):
    fresh = InteractiveSession.from_artifact(tiny_artifacts, cache_size=0)
    for call in (lambda: fresh.add_click(1, 1, True), fresh.undo, fresh.redo, fresh.reset,
                 lambda: fresh.mask, lambda: fresh.prompt_map):
        with pytest.raises(InputError, match="no image set"):
            call()
    bad_images = {
        "uint8": golden_rgb.astype(np.float32),
        r"\[H, W, 3\]": golden_rgb[:, :, 0],
        "shape": np.zeros((4, 4, 4), np.uint8),
        "empty": np.zeros((0, 10, 3), np.uint8),
        "numpy array": golden_rgb.tolist()[:2],
    }
    for message, image in bad_images.items():
        with pytest.raises(InputError, match=message):
            fresh.set_image(image)
    session = ort_session
    session.set_image(golden_rgb)
    add(session, CLICKS[0])
    before = snapshot(session)
    for args, message in [
        ((600, 10, True), "outside the 600x400 image"),
        ((10, 400, True), "outside"),
        ((-1, 10, True), "outside"),
        ((10.5, 10, True), "integers"),
        ((True, 10), "integers"),
        ((10, 10, "negative"), "must be a bool"),
        ((10, 10, 1), "must be a bool"),
    ]:
        with pytest.raises(InputError, match=message):
            session.add_click(*args)
    with pytest.raises(TypeError):
        session.add_click(Click(x=1, y=1, positive=True))  # type: ignore[call-arg]
    assert_same(snapshot(session), before)  # a rejected click changes nothing
    assert session.add_click(10, 10, positive=False).mask.shape == (400, 600)
    assert session.add_click(11, 12).mask.shape == (400, 600)  # positive by default
    assert session.clicks[-2:] == (Click(x=10, y=10, positive=False), Click(x=11, y=12, positive=True))
    with pytest.raises(InputError, match="cache_size"):
        InteractiveSession.from_artifact(tiny_artifacts, cache_size=-1)
    for history in (-1, 1.5, True, "8"):
        with pytest.raises(InputError, match="history must be a non-negative integer"):
            InteractiveSession.from_artifact(tiny_artifacts, history=history)
    with pytest.raises(I2FError, match="manifest"):
        InteractiveSession.from_artifact(tiny_artifacts / "nowhere")
    with pytest.raises(I2FError, match="unknown backend"):
        InteractiveSession.from_artifact(tiny_artifacts, backend="tensorrt")
    with pytest.raises(ValueError):
        session.mask[0, 0] = True  # results are read-only views of the session state


class BlockingRunner(CountingRunner):
    """A runner whose runs wait for ``go`` after saying they started."""

    def __init__(self, runner) -> None:
        super().__init__(runner)
        self.started, self.go = threading.Event(), threading.Event()

    def run(self, inputs):
        self.started.set()
        assert self.go.wait(60)
        return super().run(inputs)


def test_one_session_used_from_two_threads_at_once_is_refused(tiny_artifacts, golden_rgb):
    decoder = BlockingRunner(runtime.load(tiny_artifacts, "decoder"))
    session = InteractiveSession(encoder=runtime.load(tiny_artifacts, "encoder"), decoder=decoder, target_size=512)
    session.set_image(golden_rgb)
    inside = threading.Thread(target=add, args=(session, CLICKS[0]))
    inside.start()
    try:
        assert decoder.started.wait(60)  # the other thread is inside add_click
        for call in (lambda: add(session, CLICKS[1]), session.undo, lambda: session.set_image(golden_rgb)):
            with pytest.raises(I2FError, match="two threads"):
                call()
    finally:
        decoder.go.set()
        inside.join()
    assert session.clicks == (CLICKS[0],)
    add(session, CLICKS[1])
    assert session.clicks == CLICKS[:2]


# --------------------------------------------------------------------------- predict
def test_predict_writes_mask_and_overlay(tiny_artifacts, golden_rgb, tmp_path):
    small = cv2.resize(golden_rgb, (517, 333), interpolation=cv2.INTER_AREA)
    image_path = tmp_path / "small.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    clicks = [Click(x=220, y=190, positive=True), Click(x=90, y=60, positive=False)]
    out_mask, overlay = tmp_path / "out" / "mask.png", tmp_path / "overlay.png"
    prediction = predict(tiny_artifacts, image_path, clicks, out_mask, overlay=overlay,
                         backend="onnxruntime", threads=None)
    written = cv2.imread(str(out_mask), cv2.IMREAD_UNCHANGED)
    assert written.shape == (333, 517) and written.dtype == np.uint8
    assert set(np.unique(written)) <= {0, 255} and written.any()
    np.testing.assert_array_equal(written == 255, prediction.mask)
    picture = cv2.imread(str(overlay), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (333, 517, 3)
    assert not np.array_equal(picture, cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    # The same clicks in a session on the RGB array give the same mask (BGR -> RGB was done).
    session = InteractiveSession.from_artifact(tiny_artifacts)
    session.set_image(small)
    for click in clicks:
        expected = add(session, click)
    np.testing.assert_array_equal(expected.mask, prediction.mask)

    second = tmp_path / "second.png"
    predict(tiny_artifacts, image_path, clicks[:1], second, overlay=None, backend="openvino", threads=1)
    assert cv2.imread(str(second), cv2.IMREAD_UNCHANGED).shape == (333, 517)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "overlay.png", "second.png", "small.png"]


def test_predict_errors(tiny_artifacts, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    click = [Click(x=1, y=1, positive=True)]
    with pytest.raises(InputError, match="cannot read"):
        predict(tiny_artifacts, not_image, click, tmp_path / "m.png")
    with pytest.raises(InputError, match="cannot read"):
        predict(tiny_artifacts, empty, click, tmp_path / "m.png")
    with pytest.raises(InputError, match="not found"):
        predict(tiny_artifacts, tmp_path / "missing.png", click, tmp_path / "m.png")
    image = tmp_path / "tiny.png"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(InputError, match="at least one click"):
        predict(tiny_artifacts, image, [], tmp_path / "m.png")
    with pytest.raises(InputError, match="outside the 30x20 image"):
        predict(tiny_artifacts, image, [Click(x=0, y=20, positive=True)], tmp_path / "m.png")
    with pytest.raises(InputError, match=r"\.png"):
        predict(tiny_artifacts, image, click, tmp_path / "m.jpg")
    assert not (tmp_path / "m.png").exists()


# --------------------------------------------------------------------------- resources
@pytest.mark.slow
def test_memory_is_flat_over_200_clicks(tiny_artifacts, golden_rgb):
    """Nothing grows but the history, whose logits stop growing at the bound (click 33 by default):
    only the prompt maps' runs (a few kB per click) are added after that."""
    session = InteractiveSession.from_artifact(tiny_artifacts, "onnxruntime")
    session.set_image(golden_rgb)
    rng = np.random.default_rng(0)
    figures = {}
    for index in range(200):
        session.add_click(int(rng.integers(0, 600)), int(rng.integers(0, 400)), index % 2 == 0)
        if index + 1 in (50, 200):
            figures[index + 1] = resident_mb(), session.history_bytes / 2**20
    growth = figures[200][0] - figures[50][0]
    print(f"\nRSS (history) after 50 clicks {figures[50][0]:.1f} MB ({figures[50][1]:.1f} MiB), after 200 "
          f"clicks {figures[200][0]:.1f} MB ({figures[200][1]:.1f} MiB), growth {growth:.1f} MB")
    assert len(session.clicks) == 200
    assert growth - (figures[200][1] - figures[50][1]) < 20, figures  # both in MiB


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_sessions_in_two_threads_match_sequential_runs(tiny_artifacts, golden_rgb, backend):
    images = (golden_rgb, np.ascontiguousarray(golden_rgb[::-1, ::-1]))
    sessions = [InteractiveSession.from_artifact(tiny_artifacts, backend, threads=1) for _ in images]

    def run(index: int, out: list) -> None:
        session = sessions[index]
        session.set_image(images[index])
        out.extend(add(session, click).mask.copy() for click in CLICKS[:4])

    sequential: list[list[np.ndarray]] = [[], []]
    for index in range(2):
        run(index, sequential[index])
    concurrent: list[list[np.ndarray]] = [[], []]
    errors = []

    def worker(index: int) -> None:
        try:
            run(index, concurrent[index])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index in range(2):
        assert len(concurrent[index]) == 4
        for a, b in zip(sequential[index], concurrent[index]):
            np.testing.assert_array_equal(a, b)


def test_predict_command_writes_a_mask_of_the_image_size(tiny_artifacts, golden_rgb, tmp_path):
    from typer.testing import CliRunner

    from i2f_deploy.cli import app

    image = tmp_path / "small.png"
    cv2.imwrite(str(image), cv2.cvtColor(cv2.resize(golden_rgb, (517, 333)), cv2.COLOR_RGB2BGR))
    args = ["predict", str(tiny_artifacts), "--image", str(image), "--click", "250,160,positive",
            "--click", "40,40,negative", "--out", str(tmp_path / "mask.png"), "--overlay", str(tmp_path / "overlay.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_GRAYSCALE).shape == (333, 517)
    assert cv2.imread(str(tmp_path / "overlay.png")).shape == (333, 517, 3)
    outside = CliRunner().invoke(app, [*args[:4], "--click", "900,10,positive", "--out", str(tmp_path / "x.png")])
    assert outside.exit_code == 2 and "outside" in outside.stderr


SESSION_MEMORY_PROBE = """
import sys
import numpy as np
from i2f_deploy.bench.memory import peak_resident_mb, resident_mb
from i2f_deploy import runtime
from i2f_deploy.runtime.session import InteractiveSession
encoder, decoder = (runtime.load(sys.argv[1], part, sys.argv[2], 2) for part in ("encoder", "decoder"))
session = InteractiveSession(encoder=encoder, decoder=decoder, target_size=1024)
rng = np.random.default_rng(0)
session.set_image(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8))
session.add_click(512, 384, True)
peak_one_click = peak_resident_mb()
figures = {}
for index in range(1, 200):
    session.add_click(int(rng.integers(0, 1024)), int(rng.integers(0, 768)), index % 2 == 0)
    if index + 1 in (50, 200):
        figures[index + 1] = resident_mb(), session.history_bytes / 2**20  # both in MiB
print(peak_one_click, *figures[50], *figures[200], peak_resident_mb(), decoder.kernels)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_base_1024_session_peak_memory_and_no_growth(base_1024_export, backend):
    """A product's footprint: a fresh interpreter (no torch) with a base-1024 session, one image
    and one click; then 200 clicks must grow it by no more than the undo history, whose logits
    stop growing at the bound (click 33): a noise image's prompt maps add ~70 kB per click. On
    both backends the custom ops run the native kernels (ONNX Runtime: between its segments)."""
    import subprocess
    import sys

    require_native(openvino=backend == "openvino")
    artifacts, _ = base_1024_export
    probe = subprocess.run([sys.executable, "-c", SESSION_MEMORY_PROBE, str(artifacts), backend],
                           capture_output=True, text=True, check=True)
    *figures, kernels = probe.stdout.split()
    assert kernels == "native"
    peak, after_50, history_50, after_200, history_200, peak_200 = map(float, figures)
    print(f"\n{backend}: peak RSS with one click {peak:.0f} MB; RSS (undo history) after 50 clicks "
          f"{after_50:.1f} MB ({history_50:.1f} MiB), after 200 {after_200:.1f} MB ({history_200:.1f} MiB); "
          f"peak over 200 clicks {peak_200:.0f} MB")
    assert (after_200 - after_50) - (history_200 - history_50) < 20


@pytest.mark.parametrize("threads", [0, -3, 999, True, 1.5])
def test_thread_counts_outside_the_available_cpus_are_refused(tiny_artifacts, threads):
    from i2f_deploy.runtime import available_cpus

    for part in ("encoder", "decoder"):
        with pytest.raises(I2FError, match=rf"threads must be an integer from 1 to {available_cpus()} \(the CPUs available\)"):
            runtime.load(tiny_artifacts, part, "openvino", threads=threads)


@pytest.mark.parametrize("command", ["predict", "bench"])
def test_commands_refuse_too_many_threads_in_one_line(tiny_artifacts, tmp_path, golden_image_path, command):
    from typer.testing import CliRunner

    from i2f_deploy.cli import app

    extra = (["--image", str(golden_image_path), "--click", "5,5,positive", "--out", str(tmp_path / "m.png")]
             if command == "predict" else [])
    result = CliRunner().invoke(app, [command, str(tiny_artifacts), *extra, "--threads", "999"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "from 1 to" in lines[0], result.output
    assert not (tmp_path / "m.png").exists()
