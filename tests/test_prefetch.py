"""``InteractiveSession.prefetch``: the next image is encoded in the background while clicks on
the current one return the masks of a session without prefetch."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from i2f_deploy import runtime
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.session import InteractiveSession

pytestmark = pytest.mark.graph

CLICKS = (Click(x=256, y=230, positive=True), Click(x=102, y=76, positive=False), Click(x=179, y=281, positive=True))


@pytest.fixture(scope="module")
def images(golden_rgb) -> tuple[np.ndarray, np.ndarray]:
    return golden_rgb, np.ascontiguousarray(golden_rgb[::-1, ::-1])


class HeldEncoder:
    """The encoder runner, held inside ``run`` while ``release`` is clear (so a test can click
    while an encoding is in progress); counts its runs."""

    def __init__(self, runner) -> None:
        self.runner, self.calls = runner, 0
        self.entered, self.release, self.done = threading.Event(), threading.Event(), threading.Event()
        self.release.set()

    def run(self, inputs):
        self.calls += 1
        self.done.clear()
        self.entered.set()
        assert self.release.wait(60), "the test never released the encoder"
        try:
            return self.runner.run(inputs)
        finally:
            self.done.set()


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("i2f-prefetch")]


def masks_without_prefetch(tiny_artifacts, image: np.ndarray) -> list[np.ndarray]:
    session = InteractiveSession.from_artifact(tiny_artifacts, cache_size=0)
    session.set_image(image)
    return [session.add_click(click.x, click.y, click.positive).mask.copy() for click in CLICKS]


def test_clicks_during_a_background_encoding_return_the_masks_without_prefetch(tiny_artifacts, images):
    current, following = images
    expected_current = masks_without_prefetch(tiny_artifacts, current)
    expected_following = masks_without_prefetch(tiny_artifacts, following)
    encoder = HeldEncoder(runtime.load(tiny_artifacts, "encoder"))
    session = InteractiveSession(encoder=encoder, decoder=runtime.load(tiny_artifacts, "decoder"), target_size=512)
    session.set_image(current)
    encoder.release.clear()
    encoder.entered.clear()
    session.prefetch(following)
    assert encoder.entered.wait(60), "the background encoding did not start"
    for click, expected in zip(CLICKS, expected_current):  # the encoding is held: clicks run meanwhile
        np.testing.assert_array_equal(session.add_click(click.x, click.y, click.positive).mask, expected)
    encoder.release.set()
    session.set_image(following)  # waits for the background encoding, runs no other
    assert (encoder.calls, session.encoder_runs, session.prefetch_runs) == (2, 1, 1)
    for click, expected in zip(CLICKS, expected_following):
        np.testing.assert_array_equal(session.add_click(click.x, click.y, click.positive).mask, expected)


@pytest.mark.parametrize("backend", runtime.BACKENDS)
def test_prefetch_on_its_own_encoder_matches_a_session_without_it(tiny_artifacts, images, backend):
    current, following = images
    reference = InteractiveSession.from_artifact(tiny_artifacts, backend, cache_size=0)
    reference.set_image(following)
    expected = reference.add_click(CLICKS[0].x, CLICKS[0].y, CLICKS[0].positive).mask
    session = InteractiveSession.from_artifact(tiny_artifacts, backend)
    session.set_image(current)
    session.prefetch(following)
    session.prefetch(following)  # already under way: nothing more
    session.add_click(CLICKS[0].x, CLICKS[0].y, CLICKS[0].positive)
    session.set_image(following)
    assert (session.encoder_runs, session.prefetch_runs) == (1, 1)
    np.testing.assert_array_equal(session.add_click(CLICKS[0].x, CLICKS[0].y, CLICKS[0].positive).mask, expected)
    session.prefetch(following)  # the current image: nothing to do
    session.set_image(current)  # cached
    assert (session.encoder_runs, session.prefetch_runs) == (1, 1)


@pytest.mark.slow
def test_base_1024_click_latency_with_and_without_a_background_encoding(base_1024_export, images):
    """Prints the click latency (medians of 5) alone, during a prefetch, and during an encoding
    on the session's own encoder in a plain thread; masks agree in all three (no timing asserted)."""
    import time

    artifacts, _ = base_1024_export
    current, following = images
    encoder, decoder = (runtime.load(artifacts, part, "onnxruntime", 2) for part in ("encoder", "decoder"))
    background = HeldEncoder(runtime.load(artifacts, "encoder", "onnxruntime", 1))
    session = InteractiveSession(encoder=encoder, decoder=decoder, target_size=1024, cache_size=0,
                                 background_encoder=lambda: background)
    session.set_image(current)
    session.add_click(CLICKS[0].x, CLICKS[0].y, CLICKS[0].positive)

    def clicks() -> tuple[float, list[np.ndarray]]:
        times, masks = [], []
        for click in CLICKS[1:] * 3:
            start = time.perf_counter()
            masks.append(session.add_click(click.x, click.y, click.positive).mask.copy())
            times.append(time.perf_counter() - start)
            session.undo()
        return float(np.median(times)) * 1000, masks

    alone, expected = clicks()
    session.prefetch(following)
    assert background.entered.wait(60), "the background encoding did not start"
    during_prefetch, masks = clicks()
    assert not background.done.is_set(), "the background encoding ended before the clicks: no overlap measured"
    for mask, reference in zip(masks, expected):
        np.testing.assert_array_equal(mask, reference)
    thread = threading.Thread(target=encoder.run, args=({"image": np.zeros((1, 3, 1024, 1024), np.float32)},))
    thread.start()
    during_plain, masks = clicks()
    thread.join()
    for mask, reference in zip(masks, expected):
        np.testing.assert_array_equal(mask, reference)
    start = time.perf_counter()
    session.set_image(following)
    print(f"\nclick latency at 1024, ONNX Runtime, 2 threads: alone {alone:.0f} ms, during a prefetch {during_prefetch:.0f} ms, "
          f"during an encoding on the session's encoder in a plain thread {during_plain:.0f} ms; "
          f"set_image after the prefetch waited {time.perf_counter() - start:.1f} s")


def test_close_stops_the_prefetch_thread_and_releases_its_encoder(tiny_artifacts, images):
    current, following = images
    loaded, made = [], threading.Event()

    def background_encoder():  # called in the prefetch thread
        loaded.append(HeldEncoder(runtime.load(tiny_artifacts, "encoder")))
        made.set()
        return loaded[-1]

    before = set(prefetch_threads())
    with InteractiveSession(encoder=runtime.load(tiny_artifacts, "encoder"), decoder=runtime.load(tiny_artifacts, "decoder"),
                            target_size=512, background_encoder=background_encoder) as session:
        session.set_image(current)
        session.prefetch(following)
        assert made.wait(60) and loaded[0].entered.wait(60)
        started = set(prefetch_threads()) - before
        assert len(started) == 1
        released = weakref.ref(loaded.pop())
    assert not any(thread.is_alive() for thread in started)  # the running encoding finished, then the thread ended
    gc.collect()
    assert released() is None  # nothing holds the background encoder any more
    session.set_image(following)  # still usable: the prefetched encoding was dropped, this one runs here
    assert (session.encoder_runs, session.prefetch_runs) == (2, 0)
    mask = session.add_click(CLICKS[0].x, CLICKS[0].y, CLICKS[0].positive).mask
    np.testing.assert_array_equal(mask, masks_without_prefetch(tiny_artifacts, following)[0])
    session.prefetch(current)  # cached: nothing to do
    session.close()
    session.close()  # twice is fine
