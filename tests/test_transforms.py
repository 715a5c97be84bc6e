"""Reversible transforms: bit-exact round trips over every op, composition and dtype, references, errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalytic import transforms
from catalytic.errors import InvalidInputError, InvalidTypeError, MethodError, ShapeError
from catalytic.lattice import splitmix64
from catalytic.memory import borrow
from catalytic.transforms import OPS, in_place, inverse, transform

DTYPES = [
    np.dtype(np.bool_),
    np.dtype(np.uint8),
    np.dtype(np.int8),
    np.dtype(np.int16),
    np.dtype(np.uint32),
    np.dtype(np.int64),
    np.dtype(np.float16),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.complex64),
    np.dtype(np.complex128),
    np.dtype("V3"),
    np.dtype([("a", "u1"), ("b", "<u2")]),
    np.dtype([("x", "<f8"), ("flag", "?")]),
    np.dtype([("x", "<f4"), ("y", "<i4")], align=True),
]
OP_CHOICES: list[str | list[str]] = [
    *OPS,
    ["xor", "add"],
    ["permute", "rotate", "xor"],
    ["add", "add", "permute", "rotate", "xor", "permute"],
]


def raw_array(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` elements of arbitrary bytes: bools other than 0/1 and NaNs with payloads included."""
    return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype)


def keystream(seed: int, nbytes: int) -> np.ndarray:
    """The documented byte key stream, built from the lattice's SplitMix64."""
    words = splitmix64(seed, np.arange((nbytes + 7) // 8, dtype=np.uint64))
    return words.astype("<u8").view(np.uint8)[:nbytes]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OP_CHOICES, ids=str)
def test_round_trip_every_op_and_dtype(dtype: np.dtype, op: str | list[str]) -> None:
    rng = np.random.default_rng(len(str(op)) * 31 + dtype.itemsize)
    for n in (0, 1, 2, 5, 4096, 4096 * 2 + 77):
        data = raw_array(rng, dtype, n)
        before = data.tobytes()
        scrambled = transform(data, op, seed=12345)
        assert data.tobytes() == before
        assert scrambled.dtype == data.dtype and scrambled.shape == data.shape
        if n >= 64:
            assert scrambled.tobytes() != before
        assert inverse(scrambled, op, seed=12345).tobytes() == before
        work = data.copy()
        assert transform(work, op, seed=99, out=work) is work
        assert inverse(work, op, seed=99, out=work) is work
        assert work.tobytes() == before


@settings(max_examples=40, deadline=None)
@given(
    payload=st.binary(min_size=0, max_size=3000),
    dtype=st.sampled_from(DTYPES),
    op=st.sampled_from(OP_CHOICES),
    seed=st.integers(0, 2**64 - 1),
    in_place_run=st.booleans(),
)
def test_round_trip_arbitrary_bytes(
    payload: bytes, dtype: np.dtype, op: str | list[str], seed: int, in_place_run: bool
) -> None:
    usable = len(payload) - len(payload) % dtype.itemsize
    data = np.frombuffer(payload[:usable], dtype=np.uint8).copy().view(dtype)
    if in_place_run:
        work = data.copy()
        transform(work, op, seed, out=work)
        inverse(work, op, seed, out=work)
        assert work.tobytes() == data.tobytes()
    else:
        assert inverse(transform(data, op, seed), op, seed).tobytes() == data.tobytes()


def test_nan_payloads_and_odd_bools_survive() -> None:
    payloads = np.array([0x7FF8000000000001, 0xFFF0000000000ABC, 0x7FF4000000000000, 0x8000000000000000], np.uint64)
    nans = payloads.view(np.float64)
    for op in OP_CHOICES:
        assert inverse(transform(nans, op, 3), op, 3).view(np.uint64).tolist() == payloads.tolist()
    odd = np.array([0, 1, 2, 255, 128], dtype=np.uint8).view(np.bool_)
    assert inverse(transform(odd, "add", 4), "add", 4).view(np.uint8).tolist() == [0, 1, 2, 255, 128]


def test_xor_add_rotate_match_the_documented_key_stream() -> None:
    rng = np.random.default_rng(0)
    seed = 2024
    data8 = rng.integers(0, 256, 101, dtype=np.uint8)
    keys = keystream(seed, 101)
    assert transform(data8, "xor", seed).tolist() == (data8 ^ keys).tolist()
    assert transform(data8, "add", seed).tolist() == (data8 + keys).tolist()
    rot = keys & 7
    expected = ((data8.astype(np.uint16) << rot) | (data8.astype(np.uint16) >> ((8 - rot) & 7))) & 0xFF
    assert transform(data8, "rotate", seed).tolist() == expected.astype(np.uint8).tolist()
    data16 = rng.integers(0, 2**16, 37, dtype=np.uint16)
    keys16 = keystream(seed, 74).view("<u2")
    assert transform(data16, "add", seed).tolist() == (data16 + keys16).tolist()
    assert transform(data16, "xor", seed).tolist() == (data16 ^ keys16).tolist()
    # The XOR stream is over raw bytes, so the dtype does not matter.
    floats = rng.random(13)
    assert (
        transform(floats, "xor", seed).view(np.uint8).tolist()
        == (floats.view(np.uint8) ^ keystream(seed, 104)).tolist()
    )


BLOCK = 4096
MUL1 = np.uint64(0xBF58476D1CE4E5B9)


def feistel(values: np.ndarray, keys: np.ndarray, half: int) -> np.ndarray:
    """Four rounds on ``[0, 4^half)``, as documented: each round XORs the left half with a keyed hash of the right."""
    low = np.uint64((1 << half) - 1)
    left, right = values >> np.uint64(half), values & low
    with np.errstate(over="ignore"):
        for key in keys:
            left, right = right, left ^ ((((right ^ key) * MUL1) >> np.uint64(32)) & low)
    return (left << np.uint64(half)) | right


def feistel_walk(count: int, keys: np.ndarray) -> np.ndarray:
    """The Feistel network on the smallest power of four covering ``[0, count)``, cycle-walked into it."""
    half = max(1, ((count - 1).bit_length() + 1) // 2)
    values = feistel(np.arange(count, dtype=np.uint64), keys, half)
    while (values >= count).any():
        values = np.where(values >= count, feistel(values, keys, half), values)
    return values.astype(np.int64)


def reference_sources(seed: int, n: int) -> np.ndarray:
    """For every element of ``transform(data, "permute", seed)``, the index of the input element it holds."""
    words = splitmix64(seed, np.arange(16, dtype=np.uint64))
    blocks, tail = divmod(n, BLOCK)
    sources = np.empty(n, dtype=np.int64)
    if blocks:
        beta = feistel_walk(blocks, words[0:4])
        table = feistel(np.arange(BLOCK, dtype=np.uint64), words[4:8], 6).astype(np.int64)
        masks = splitmix64(int(words[12]), np.arange(blocks, dtype=np.uint64))
        pre = (masks & np.uint64(BLOCK - 1)).astype(np.int64)
        post = ((masks >> np.uint64(32)) & np.uint64(BLOCK - 1)).astype(np.int64)
        inner = table[np.arange(BLOCK)[None, :] ^ pre[:, None]] ^ post[:, None]
        sources[: blocks * BLOCK] = (beta[:, None] * BLOCK + inner).ravel()
    if tail:
        sources[blocks * BLOCK :] = blocks * BLOCK + feistel_walk(tail, words[8:12])
    return sources


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Split even small arrays, into ``4 * count`` slices over ``count`` threads."""
    with mock.patch.object(transforms, "_workers", lambda: count), mock.patch.object(transforms, "_PARALLEL_BYTES", 0):
        yield


AWKWARD_LENGTHS = [0, 1, 2, 3, 17, 4093, 4096, 4097, 8191, 3 * 4096 + 5, 16 * 4096, 70_001]


@pytest.mark.parametrize("n", AWKWARD_LENGTHS)
def test_permute_is_the_documented_permutation(n: int) -> None:
    values = np.arange(n, dtype=np.int64)
    expected = reference_sources(8, n)
    assert np.array_equal(transform(values, "permute", seed=8), expected)
    work = values.copy()
    transform(work, "permute", seed=8, out=work)
    assert np.array_equal(work, expected)
    assert np.array_equal(np.sort(work), values)
    if n >= 17:
        assert not np.array_equal(work, values)
    assert np.array_equal(inverse(work, "permute", seed=8), values)
    inverse(work, "permute", seed=8, out=work)
    assert np.array_equal(work, values)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_permute_moves_whole_elements_of_every_dtype(dtype: np.dtype) -> None:
    n = 2 * 4096 + 333
    rng = np.random.default_rng(dtype.itemsize)
    data = raw_array(rng, dtype, n)
    rows = data.view(np.uint8).reshape(n, dtype.itemsize)
    moved = transform(data, "permute", seed=21).view(np.uint8).reshape(n, dtype.itemsize)
    assert np.array_equal(moved, rows[reference_sources(21, n)])


def test_permute_orders_differ_between_seeds_and_blocks() -> None:
    n = 40 * 4096 + 9
    values = np.arange(n, dtype=np.int64)
    orders = [transform(values, "permute", seed=seed) for seed in (0, 1, 2**64 - 1)]
    for a in range(len(orders)):
        for b in range(a):
            assert np.mean(orders[a] != orders[b]) > 0.99
    # Blocks do not keep their place, and no two blocks are shuffled alike inside.
    first = orders[0][: 40 * 4096].reshape(40, 4096)
    assert np.mean(first // 4096 != np.arange(40)[:, None]) > 0.9
    assert len({tuple(row % 4096) for row in first}) == 40


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("op", [*OPS, ["rotate", "permute", "add"]], ids=str)
def test_results_do_not_depend_on_the_thread_count(count: int, op: str | list[str]) -> None:
    rng = np.random.default_rng(3)
    expected = {}
    for dtype in (np.dtype(np.float64), np.dtype(np.uint8), np.dtype("V3"), np.dtype(np.complex128)):
        data = raw_array(rng, dtype, 37 * 4096 + 11)
        expected[dtype] = (data, transform(data, op, seed=5).tobytes())
    with threads(count):
        for data, reference in expected.values():
            assert transform(data, op, seed=5).tobytes() == reference
            work = data.copy()
            transform(work, op, seed=5, out=work)
            assert work.tobytes() == reference
            inverse(work, op, seed=5, out=work)
            assert work.tobytes() == data.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(0, 60),
    tail=st.sampled_from([0, 1, 2, 4095, 1234]),
    count=st.integers(1, 9),
    seed=st.integers(0, 2**64 - 1),
)
def test_in_place_permute_splits_its_cycles_correctly(blocks: int, tail: int, count: int, seed: int) -> None:
    """However the cycles of the block order fall across the threads' slices, in place equals out of place."""
    n = blocks * 4096 + tail
    values = np.arange(n, dtype=np.uint32)
    work = values.copy()
    with threads(count):
        transform(work, "permute", seed, out=work)
        assert np.array_equal(work, reference_sources(seed, n))
        inverse(work, "permute", seed, out=work)
    assert np.array_equal(work, values)


@pytest.mark.parametrize("lane", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_rotate_matches_the_documented_key_stream_on_every_lane_width(lane: type) -> None:
    bits = 8 * np.dtype(lane).itemsize
    count = 1000
    data = np.random.default_rng(bits).integers(0, 2**bits, count, dtype=lane)
    amounts = keystream(31, count * bits // 8).view(lane).astype(np.uint64) & np.uint64(bits - 1)
    wide = data.astype(np.uint64)
    mask = np.uint64(2**bits - 1)
    expected = ((wide << amounts) | (wide >> ((np.uint64(bits) - amounts) & np.uint64(bits - 1)))) & mask
    assert np.array_equal(transform(data, "rotate", 31), expected.astype(lane))
    assert np.array_equal(inverse(expected.astype(lane), "rotate", 31), data)


def test_seeds_are_deterministic_and_distinct() -> None:
    data = np.arange(5000, dtype=np.float32)
    for op in OPS:
        assert np.array_equal(transform(data, op, 1).view(np.uint32), transform(data, op, 1).view(np.uint32))
        assert not np.array_equal(transform(data, op, 1).view(np.uint32), transform(data, op, 2).view(np.uint32))
    assert transform(data, "xor", 7).tobytes() == transform(data, ["xor"], 7).tobytes()
    # The second op of a list gets its own sub-seed, so two XORs do not cancel.
    assert transform(data, ["xor", "xor"], 7).tobytes() != data.tobytes()


def test_layouts_unaligned_strided_and_fortran() -> None:
    rng = np.random.default_rng(5)
    data = rng.random((40, 30))
    holder = np.zeros(data.nbytes + 1, dtype=np.uint8)
    unaligned = holder[1:].view(np.float64).reshape(40, 30)
    unaligned[...] = data
    assert not unaligned.flags.aligned
    for op in OP_CHOICES:
        assert transform(unaligned, op, 3).tobytes() == transform(data, op, 3).tobytes()
    strided = data[::2, ::3]
    assert inverse(transform(strided, "add", 3), "add", 3).tobytes() == strided.tobytes()
    fortran = np.asfortranarray(data)
    work = fortran.copy(order="F")
    transform(work, ["permute", "rotate"], 6, out=work)
    assert not np.array_equal(work, fortran)
    inverse(work, ["permute", "rotate"], 6, out=work)
    assert np.array_equal(work, fortran)
    assert inverse(transform(fortran, "rotate", 1), "rotate", 1).tobytes(order="A") == fortran.tobytes(order="A")


@pytest.mark.parametrize("n", [10_000, 1_000_003])
def test_out_array_and_in_place_permute_with_scratch(n: int) -> None:
    data = np.arange(n, dtype=np.int32)
    out = np.empty_like(data)
    assert transform(data, "permute", 4, out=out) is out
    alone = data.copy()
    transform(alone, "permute", 4, out=alone)
    lent = np.zeros(1 << 18, dtype=np.uint8)
    borrowed = data.copy()
    with borrow(lent) as scratch:
        transform(borrowed, "permute", 4, out=borrowed, scratch=scratch)
        # Block buffers only: no n-element temporary.
        assert 0 < scratch.used <= 16 * 4096 * data.itemsize
        inverse(borrowed, "permute", 4, out=borrowed, scratch=scratch)
        assert np.array_equal(borrowed, data)
        transform(borrowed, "permute", 4, out=borrowed, scratch=scratch)
    assert np.array_equal(borrowed, alone) and np.array_equal(borrowed, out)
    assert not lent.any()


def test_in_place_pair_is_exact_inverse() -> None:
    forward, backward = in_place(["rotate", "add"], seed=77)
    data = np.linspace(-1, 1, 999)
    work = data.copy()
    forward(work)
    assert not np.array_equal(work.view(np.uint64), data.view(np.uint64))
    backward(work)
    assert work.tobytes() == data.tobytes()


@pytest.mark.parametrize(
    ("op", "field"),
    [("shuffle", "op"), ([], "op"), (["xor", "nope"], "op[1]"), (7, "op"), (b"xor", "op"), (["xor", 3], "op[1]")],
)
def test_bad_op_names_the_field(op: object, field: str) -> None:
    with pytest.raises(MethodError) as info:
        transform(np.zeros(4), op, 1)  # type: ignore[arg-type]
    assert info.value.field == field
    assert "xor" in (info.value.allowed or "")


@pytest.mark.parametrize(
    ("seed", "error"),
    [
        (-1, MethodError),
        (2**64, MethodError),
        (1.5, InvalidTypeError),
        (True, InvalidTypeError),
        ("1", InvalidTypeError),
    ],
)
def test_bad_seed_names_the_field(seed: object, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        inverse(np.zeros(4), "xor", seed)  # type: ignore[arg-type]
    assert info.value.field == "seed"  # type: ignore[attr-defined]


def test_bad_data_and_out() -> None:
    data = np.zeros(8)
    with pytest.raises(InvalidTypeError, match="data"):
        transform([1, 2, 3], "xor")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="data"):
        transform(np.array([object()]), "xor")
    with pytest.raises(ShapeError) as shape:
        transform(data, "xor", out=np.zeros(9))
    assert shape.value.field == "out"
    with pytest.raises(InvalidTypeError, match="out"):
        transform(data, "xor", out=np.zeros(8, dtype=np.float32))
    with pytest.raises(InvalidTypeError, match="out"):
        transform(data, "xor", out=[0.0] * 8)
    frozen = np.zeros(8)
    frozen.flags.writeable = False
    with pytest.raises(InvalidInputError, match="out: is read-only"):
        transform(data, "xor", out=frozen)
    with pytest.raises(InvalidInputError, match="read-only"):
        transform(frozen, "xor", out=frozen)
    with pytest.raises(InvalidInputError, match="not contiguous"):
        transform(data[::2], "xor", out=np.zeros(8)[::2])
    with pytest.raises(InvalidInputError, match="partly overlaps"):
        transform(data[:6], "xor", out=data[2:])


def test_interrupted_in_place_composition_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import catalytic.transforms as transforms

    real = transforms._keyed_lanes
    calls = {"n": 0}

    def interrupted_after_second(*args: object) -> BaseException | None:
        calls["n"] += 1
        outcome = real(*args)  # type: ignore[arg-type]
        return KeyboardInterrupt() if calls["n"] == 2 else outcome

    monkeypatch.setattr(transforms, "_keyed_lanes", interrupted_after_second)
    data = np.linspace(0, 1, 50_000)
    work = data.copy()
    with pytest.raises(KeyboardInterrupt):
        transform(work, ["xor", "permute", "add", "rotate"], 5, out=work)
    assert calls["n"] == 4
    assert work.tobytes() == data.tobytes()
