"""Property-based tests (hypothesis) on the tiny export: random image shapes, click lists with
undo/redo/reset interleaved, and prompt maps, through the session, the decoder runner and
``predict``. Every call either gives results of the image's size (and, for the session, the
state a fresh replay of the remaining clicks gives, bit for bit) or raises an ``I2FError`` with a
one-line message; never another exception. Derandomized, so CI sees the same examples."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from i2f_deploy import runtime
from i2f_deploy.errors import I2FError
from i2f_deploy.predict import predict
from i2f_deploy.preprocess import logits_to_image, preprocess, to_target_click
from i2f_deploy.prompt_map import Click, add_clicks, apply_prediction, initial_prompt_map
from i2f_deploy.runtime.session import InteractiveSession

pytestmark = pytest.mark.graph

SIZE = 512  # the tiny export's target size
PROPERTY = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Image shapes: anything from 1 to 700 px a side, with thin strips and tiny images drawn often.
shapes = st.one_of(
    st.tuples(st.integers(1, 700), st.integers(1, 700)),
    st.tuples(st.just(1), st.integers(1, 700)),
    st.tuples(st.integers(1, 700), st.just(1)),
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
)
# Values that are not coordinates or not click kinds.
WILD = st.sampled_from([1.5, -0.0, None, "3", True, False, b"1", [1], float("nan")])
KINDS = st.one_of(st.booleans(), st.sampled_from(["positive", "neg", " FG ", "+", "maybe", "", 1, 0, None]))


def make_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:
        return np.full((height, width, 3), seed % 256, np.uint8)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def one_line(error: BaseException) -> None:
    text = str(error)
    assert isinstance(error, I2FError) and text and "\n" not in text, repr(error)


@pytest.fixture(scope="module")
def session(tiny_artifacts) -> InteractiveSession:
    # A small history so that undo and redo go beyond it (one decoder run) as well as within.
    return InteractiveSession.from_artifact(tiny_artifacts, cache_size=1, history=2)


@pytest.fixture(scope="module")
def decoder(tiny_artifacts):
    return runtime.load(tiny_artifacts, "decoder", "onnxruntime")


@pytest.fixture(scope="module")
def encoder(tiny_artifacts):
    return runtime.load(tiny_artifacts, "encoder", "onnxruntime")


class Replay:
    """The loop's state after a click sequence, computed from scratch (memoised per prefix):
    prompt map, target-size logits and num_routed."""

    def __init__(self, encoder, decoder, image: np.ndarray) -> None:
        tensor, self.geometry = preprocess(image, SIZE)
        self.decoder, self.feeds = decoder, encoder.run({"image": tensor})
        self.states = {(): (initial_prompt_map(SIZE), None, None)}

    def __call__(self, clicks: tuple[Click, ...]):
        if clicks not in self.states:
            ref_label, _, _ = self(clicks[:-1])
            ref_label = add_clicks(ref_label, [to_target_click(clicks[-1], self.geometry)])
            out = self.decoder.run({**self.feeds, "ref_label": ref_label})
            logits = out["logits"]
            self.states[clicks] = (apply_prediction(ref_label, logits[0, 0] > 0), logits, int(out["num_routed"]))
        return self.states[clicks]


def coordinate(extent: int) -> st.SearchStrategy:
    """Anything: in and around the image, huge, numpy integers, or not an integer at all."""
    return st.one_of(st.integers(-3, extent + 3), st.integers(-2**70, 2**70),
                     st.integers(0, extent - 1).map(np.int64), WILD)


def operations(height: int, width: int) -> st.SearchStrategy:
    """Mostly valid clicks (repeats likely on small images), some wild ones, undo/redo/reset."""
    valid = st.tuples(st.just("click"), st.integers(0, width - 1), st.integers(0, height - 1), st.booleans())
    wild = st.tuples(st.just("click"), coordinate(width), coordinate(height), KINDS)
    other = st.sampled_from([("undo",), ("redo",), ("reset",)])
    return st.lists(st.one_of(valid, valid, valid, wild, other, other), min_size=3, max_size=8)


@settings(PROPERTY, max_examples=20)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_session_gives_image_sized_masks_and_the_replayed_state_or_an_input_error(session, encoder, decoder, shape,
                                                                                   seed, data):
    height, width = shape
    image = make_image(height, width, seed)
    session.set_image(image)
    replay = Replay(encoder, decoder, image)
    clicks: list[Click] = []
    redo: list[Click] = []
    for operation in data.draw(operations(height, width), label="operations"):
        try:
            if operation[0] == "click":
                _, x, y, kind = operation
                result = session.add_click(x, y, kind)
                clicks.append(Click(x=int(x), y=int(y), positive=bool(kind)))
                redo.clear()
            elif operation[0] == "undo":
                result = session.undo()
                if clicks:
                    redo.append(clicks.pop())
            elif operation[0] == "redo":
                result = session.redo()
                if redo:
                    clicks.append(redo.pop())
            else:
                result = session.reset()
                clicks.clear(), redo.clear()
            event(f"{operation[0]} accepted")
        except I2FError as error:
            one_line(error)
            assert operation[0] == "click"  # only a click can be refused
            event("click refused")
            result = None
        # The state is the one a fresh replay of the remaining clicks gives.
        assert session.clicks == tuple(clicks) and session.can_redo == bool(redo)
        ref_label, logits, num_routed = replay(tuple(clicks))
        np.testing.assert_array_equal(session.prompt_map, ref_label)
        assert session.mask.shape == (height, width) and session.mask.dtype == np.bool_
        prediction = session.prediction
        if clicks:
            assert result is None or result is prediction
            assert session.target_logits.tobytes() == logits.tobytes()
            assert prediction.num_routed == num_routed
            expected = logits_to_image(logits, replay.geometry)
            assert prediction.logits.shape == (height, width)
            assert prediction.logits.tobytes() == expected.tobytes()
            np.testing.assert_array_equal(prediction.mask, expected > 0)
        else:
            assert prediction is None and result is None and not session.mask.any()


# Prompt maps: the five values in blocks, discs, noise or a constant.
def prompt_map_from(seed: int, style: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if style == 0:
        return np.full((1, 1, SIZE, SIZE), seed % 5, np.uint8)
    if style == 1:
        return rng.integers(0, 5, (1, 1, SIZE, SIZE), dtype=np.uint8)
    if style == 2:  # coarse blocks
        blocks = rng.integers(0, 5, (1, 1, 16, 16), dtype=np.uint8)
        return np.ascontiguousarray(np.repeat(np.repeat(blocks, 32, axis=2), 32, axis=3))
    clicks = [Click(x=int(x), y=int(y), positive=bool(p))
              for y, x, p in zip(*rng.integers(0, SIZE, (2, 6)), rng.integers(0, 2, 6))]
    ref_label = add_clicks(initial_prompt_map(SIZE), clicks)
    return apply_prediction(ref_label, rng.random((SIZE, SIZE)) < rng.random())


class Features(dict):
    def __repr__(self) -> str:
        return "<encoder outputs of a 300x450 image>"


@pytest.fixture(scope="module")
def features(tiny_artifacts):
    encoder = runtime.load(tiny_artifacts, "encoder", "onnxruntime")
    tensor, _ = preprocess(make_image(300, 450, 1), SIZE)
    return Features(encoder.run({"image": tensor}))


@settings(PROPERTY, max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), style=st.integers(0, 3))
def test_decoder_runs_on_any_prompt_map_of_the_five_values(decoder, features, seed, style):
    ref_label = prompt_map_from(seed, style)
    out = decoder.run({**features, "ref_label": ref_label})
    assert out["logits"].shape == (1, 1, SIZE, SIZE) and out["logits"].dtype == np.float32
    assert np.isfinite(out["logits"]).all()
    assert 0 <= int(out["num_routed"]) <= (SIZE // 16) ** 2


def bad_prompt_maps() -> st.SearchStrategy:
    good = initial_prompt_map(SIZE)
    return st.one_of(
        st.integers(5, 255).flatmap(lambda v: st.tuples(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1)).map(
            lambda yx: _with(good, yx, v))),
        st.sampled_from([np.float32, np.int64, np.int8, np.bool_, np.uint16]).map(lambda t: good.astype(t)),
        st.sampled_from([(SIZE, SIZE), (1, SIZE, SIZE), (1, 1, 256, 256), (1, 1, SIZE, SIZE - 1), (2, 1, SIZE, SIZE),
                         (1, 2, SIZE, SIZE), (1, 1, 1024, 1024), (1, 1, 0, 0), (1, 1, 1, SIZE, SIZE)]).map(
            lambda s: np.full(s, 2, np.uint8)),
        st.sampled_from([None, 2, "ref", [[2]], good.tolist()[:1]]),
    )


def _with(ref_label: np.ndarray, yx: tuple[int, int], value: int) -> np.ndarray:
    out = ref_label.copy()
    out[0, 0, yx[0], yx[1]] = value
    return out


@pytest.fixture(scope="module")
def decoders(tiny_artifacts, decoder):
    return {"onnxruntime": decoder, "openvino": runtime.load(tiny_artifacts, "decoder", "openvino")}


@settings(PROPERTY, max_examples=40)
@given(ref_label=bad_prompt_maps(), backend=st.sampled_from(["onnxruntime", "openvino"]))
def test_decoder_refuses_a_malformed_prompt_map_with_an_input_error(decoders, features, ref_label, backend):
    with pytest.raises(I2FError) as caught:
        decoders[backend].run({**features, "ref_label": ref_label})
    one_line(caught.value)


def test_openvino_decoder_refuses_values_above_four_instead_of_running_on_them(decoders, features):
    """Regression: the runners passed prompt maps to the backends unchecked; ONNX Runtime failed
    with its own errors, OpenVINO returned logits for a map holding 7s."""
    ref_label = initial_prompt_map(SIZE)
    ref_label[0, 0, :100, :100] = 7
    for decoder in decoders.values():
        with pytest.raises(I2FError, match=r"prompt map values must be 0\.\.4, found 7"):
            decoder.run({**features, "ref_label": ref_label})
        with pytest.raises(I2FError, match="prompt map must be 512x512 \\(the target size\\), got 256x256"):
            decoder.run({**features, "ref_label": initial_prompt_map(256)})


# --------------------------------------------------------------------------- predict
def click_texts(width: int, height: int) -> st.SearchStrategy:
    """Command-line clicks: mostly valid ones, sometimes one out of bounds or malformed."""
    kind = st.sampled_from(["positive", "negative", "pos", "-"])
    valid = st.builds(lambda x, y, k: f"{x},{y},{k}", st.integers(0, width - 1), st.integers(0, height - 1), kind)
    numbers = st.integers(-2, 800).map(str)
    wrong = st.one_of(st.builds(lambda x, y, k: f"{x},{y},{k}", numbers, numbers, st.sampled_from(["maybe", "", "+"])),
                      st.sampled_from(["", "1,2", "a,b,positive", "1.5,2,positive", "1,2,3,4", ",,", " 3 , 4 , neg "]))
    wrong = st.one_of(st.just([]), st.just([]), wrong.map(lambda text: [text]))
    return st.tuples(st.lists(valid, min_size=1, max_size=3), wrong, st.randoms()).map(
        lambda parts: parts[2].sample(parts[0] + parts[1], len(parts[0]) + len(parts[1])))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def write_image(folder, height: int, width: int, seed: int):
    path = folder / f"image-{height}x{width}.png"
    cv2.imwrite(str(path), make_image(height, width, seed))
    return path


@settings(PROPERTY, max_examples=10)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_predict_writes_a_mask_of_the_image_size_or_raises_an_input_error(tiny_artifacts, scratch, shape, seed, data):
    height, width = shape
    image = write_image(scratch, height, width, seed)
    texts = data.draw(click_texts(width, height), label="clicks")
    out = scratch / "mask.png"
    out.unlink(missing_ok=True)
    try:
        clicks = [Click.parse(text) for text in texts]
        prediction = predict(tiny_artifacts, image, clicks, out)
    except I2FError as error:
        one_line(error)
        assert not out.exists()
        event("predict refused")
        return
    event("predict wrote a mask")
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (height, width) and prediction.mask.shape == (height, width)
    np.testing.assert_array_equal(mask == 255, prediction.mask)


@settings(PROPERTY, max_examples=6)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_predict_command_exits_0_with_a_png_or_2_with_one_error_line(tiny_artifacts, scratch, shape, seed, data):
    from typer.testing import CliRunner

    from i2f_deploy.cli import app

    height, width = shape
    image = write_image(scratch, height, width, seed)
    texts = data.draw(click_texts(width, height), label="clicks")
    out = scratch / "cli-mask.png"
    out.unlink(missing_ok=True)
    args = ["predict", str(tiny_artifacts), "--image", str(image), "--out", str(out)]
    for text in texts:
        args += ["--click", text]
    result = CliRunner().invoke(app, args)
    event(f"exit {result.exit_code}")
    if result.exit_code == 0:
        assert cv2.imread(str(out), cv2.IMREAD_GRAYSCALE).shape == (height, width)
    else:
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert not out.exists()
