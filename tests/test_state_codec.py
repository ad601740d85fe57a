"""The state codec gives back exactly what it packed: the golden loop's states, random and
extreme prompt maps, and logits bit for bit (NaN payloads, infinities, -0.0)."""

from __future__ import annotations

import subprocess
import sys
import zlib

import numpy as np
import pytest

from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.runtime.state_codec import pack_logits, pack_prompt_map, unpack_logits, unpack_prompt_map

pytestmark = pytest.mark.unit


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("case", ["loop0", "loop1", "loop2"])
def test_golden_states_round_trip(golden, case):
    for name in (f"{case}/ref_label", f"{case}/ref_label_after_prediction"):
        ref_label = golden[name]
        restored = unpack_prompt_map(pack_prompt_map(ref_label), ref_label.shape[-1])
        assert restored.dtype == np.uint8 and np.array_equal(restored, ref_label)
    logits = golden[f"{case}/logits"]
    assert _same_bits(unpack_logits(pack_logits(logits), logits.shape[-1]), logits)


def _maps(size: int, rng: np.random.Generator) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    regions = np.where((yy - size / 2) ** 2 + (xx - size / 3) ** 2 < (size / 4) ** 2, 3, 1)
    return [
        np.full((size, size), 2),  # one run
        rng.integers(0, 5, (size, size)),  # a run a pixel
        np.indices((size, size)).sum(axis=0) % 5,  # no two neighbours equal
        regions,
        np.full((size, size), 4),
    ]


@pytest.mark.parametrize("size", [1, 2, 17, 512, 1024])
def test_prompt_maps_round_trip(size):
    rng = np.random.default_rng(size)
    for ref_label in _maps(size, rng):
        ref_label = ref_label.astype(np.uint8)[None, None]
        restored = unpack_prompt_map(pack_prompt_map(ref_label), size)
        assert restored.shape == (1, 1, size, size) and restored.dtype == np.uint8
        np.testing.assert_array_equal(restored, ref_label)


def test_a_prompt_map_of_regions_packs_smaller_than_zlib_of_its_bytes():
    """What the server's click-state cache did before: zlib level 1 of the raw map."""
    size = 1024
    ref_label = _maps(size, np.random.default_rng(0))[3].astype(np.uint8)[None, None]
    assert len(pack_prompt_map(ref_label)) < len(zlib.compress(ref_label.tobytes(), 1))


@pytest.mark.parametrize("size", [1, 3, 512, 1024])
def test_logits_round_trip_bit_for_bit(size):
    rng = np.random.default_rng(size)
    logits = (rng.standard_normal((1, 1, size, size)) * 8).astype(np.float32)
    flat = logits.reshape(-1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float32).tiny / 2,
                         np.finfo(np.float32).max], np.float32)
    flat[:min(size * size, specials.size)] = specials[:size * size]
    if size * size > specials.size:
        flat.view(np.uint32)[specials.size] = 0x7FC0_1234  # a NaN with a payload
    for array in (logits, logits[0, 0], np.asfortranarray(logits[0, 0])):
        restored = unpack_logits(pack_logits(array), size)
        assert restored.shape == (1, 1, size, size) and restored.flags.c_contiguous
        assert _same_bits(restored, logits)


def test_malformed_inputs_and_corrupt_buffers_are_refused():
    ref_label = np.full((1, 1, 8, 8), 2, np.uint8)
    with pytest.raises(InputError):
        pack_prompt_map(np.full((1, 1, 8, 8), 5, np.uint8))
    with pytest.raises(InputError):
        pack_prompt_map(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError):
        pack_logits(np.zeros((1, 1, 8, 8), np.float64))
    with pytest.raises(InputError):
        pack_logits(np.zeros((1, 1, 8, 7), np.float32))
    with pytest.raises(InputError):
        unpack_prompt_map(pack_prompt_map(ref_label), 0)
    with pytest.raises(I2FError, match="corrupt packed prompt map"):
        unpack_prompt_map(pack_prompt_map(ref_label), 9)  # a state of another size
    with pytest.raises(I2FError, match="corrupt packed prompt map"):
        unpack_prompt_map(b"not a packed map", 8)
    with pytest.raises(I2FError, match="corrupt packed logits"):
        unpack_logits(pack_logits(np.zeros((8, 8), np.float32)), 9)
    with pytest.raises(I2FError, match="corrupt packed logits"):
        unpack_logits(pack_prompt_map(ref_label), 8)
    with pytest.raises(I2FError, match="corrupt packed logits: it claims more"):
        unpack_logits(pack_logits(np.zeros((64, 64), np.float32)), 8)  # a state of 64 read as one of 8
    with pytest.raises(I2FError, match="corrupt packed logits"):
        unpack_logits(pack_logits(np.zeros((8, 8), np.float32))[:-3], 8)  # truncated


def test_codec_imports_without_torch():
    code = ("import sys; import i2f_deploy.runtime.state_codec; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_packed_state_holds_no_more_memory_than_its_length() -> None:
    """What history_bytes counts is what stays allocated (measured with tracemalloc): a noisy
    prompt map packs to a few kB out of a 1 MB map, and logits to about 0.7x raw."""
    import tracemalloc

    rng = np.random.default_rng(0)
    ref_label = rng.choice(np.arange(5, dtype=np.uint8), (1, 1, 1024, 1024), p=[0.97, 0.01, 0.01, 0.005, 0.005])
    logits = rng.standard_normal((1, 1, 1024, 1024)).astype(np.float32)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        packed = [pack_prompt_map(ref_label) for _ in range(4)] + [pack_logits(logits)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.05 * sum(map(len, packed)) + 64 * 1024, (held, [len(p) for p in packed])
