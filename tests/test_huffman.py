import json

import numpy as np
import pytest

from autocompress.export import huffman
from autocompress.export.huffman import (
    MAX_CODE_LENGTH,
    decode,
    encode,
    encoded_bits,
    fixed_width_bits,
    header_bytes,
)

SIZES = [0, 1, 7, 8, 9, 1000, 200_000]


def _uniform(k):
    return lambda rng, n: rng.integers(0, k, n)


def _geometric(rng, n):
    return rng.geometric(0.2, n) - 1


def _index_gaps(rng, n):
    """Zero-run lengths between the non-zeros of a 10%-dense sparse weight, as Deep Compression."""
    positions = np.sort(rng.choice(10 * max(n, 1), size=n, replace=False))
    return np.diff(positions, prepend=-1) - 1


STREAMS = {
    "uniform2": _uniform(2),
    "uniform3": _uniform(3),
    "uniform17": _uniform(17),
    "uniform256": _uniform(256),
    "geometric": _geometric,
    "index_gaps": _index_gaps,
}
SKEWED = {"geometric", "index_gaps"}


def _kraft_sum(header):
    """Kraft sum scaled by 2**MAX_CODE_LENGTH, so that equality is exact."""
    return sum(1 << (MAX_CODE_LENGTH - length) for length in header["lengths"])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_round_trip(kind, size):
    symbols = STREAMS[kind](np.random.default_rng(size), size)
    payload, header = encode(symbols)

    decoded = decode(payload, header)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, symbols)

    bits = encoded_bits(symbols)
    assert payload.dtype == np.uint8 and payload.size == (bits + 7) // 8
    assert bits <= fixed_width_bits(symbols)
    if kind in SKEWED and size >= 1000:
        assert bits < fixed_width_bits(symbols)


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_code_lengths_satisfy_kraft(kind):
    _, header = encode(STREAMS[kind](np.random.default_rng(1), 5000))
    assert len(header["symbols"]) == len(header["lengths"]) >= 2
    assert _kraft_sum(header) == 1 << MAX_CODE_LENGTH  # a Huffman tree is full
    assert header["symbols"] == sorted(header["symbols"])


def test_single_symbol_stream_gets_one_bit_codes():
    symbols = np.full(13, 42)
    payload, header = encode(symbols)
    assert header == {"count": 13, "symbols": [42], "lengths": [1]}
    assert payload.size == 2 and encoded_bits(symbols) == 13
    np.testing.assert_array_equal(decode(payload, header), symbols)


def test_empty_stream():
    payload, header = encode(np.zeros(0, dtype=np.int32))
    assert payload.size == 0 and header == {"count": 0, "symbols": [], "lengths": []}
    assert decode(payload, header).shape == (0,)
    assert encoded_bits([]) == fixed_width_bits(np.zeros(0, dtype=int)) == 0


def test_encoding_is_canonical():
    symbols = _geometric(np.random.default_rng(3), 4000)
    payload, header = encode(symbols)
    again, header_again = encode(symbols.copy())
    assert payload.tobytes() == again.tobytes() and header == header_again
    # dtype and shape do not matter, only the flattened values
    as_uint8, header_uint8 = encode(symbols.astype(np.uint8).reshape(40, 100))
    assert as_uint8.tobytes() == payload.tobytes() and header_uint8 == header


def test_header_survives_json_and_counts_its_bytes():
    symbols = _index_gaps(np.random.default_rng(4), 3000)
    payload, header = encode(symbols)
    text = json.dumps(header, separators=(",", ":"))
    assert header_bytes(header) == len(text.encode())
    restored = np.frombuffer(payload.tobytes(), dtype=np.uint8)
    np.testing.assert_array_equal(decode(restored, json.loads(text)), symbols)


def test_lengths_are_limited():
    # Fibonacci frequencies make a Huffman tree one level deeper per symbol: 26 > 24 levels.
    fibonacci = [1, 1]
    while len(fibonacci) < 27:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    symbols = np.repeat(np.arange(27), fibonacci)
    np.random.default_rng(5).shuffle(symbols)
    payload, header = encode(symbols)
    assert len(header["lengths"]) == 27 and max(header["lengths"]) <= MAX_CODE_LENGTH
    assert _kraft_sum(header) <= 1 << MAX_CODE_LENGTH
    np.testing.assert_array_equal(decode(payload, header), symbols)


@pytest.mark.parametrize(
    ("symbols", "bits"),
    [([0, 0, 0], 3), ([1], 1), ([255, 3], 16), ([256], 9), (np.arange(12).reshape(3, 4), 48)],
)
def test_fixed_width_bits(symbols, bits):
    assert fixed_width_bits(np.asarray(symbols)) == bits


def test_truncated_or_padded_payload_raises():
    symbols = _geometric(np.random.default_rng(6), 1000)
    payload, header = encode(symbols)
    with pytest.raises(ValueError, match="too short"):
        decode(payload[:-1], header)
    with pytest.raises(ValueError, match="too short"):
        decode(payload[:3], header)
    with pytest.raises(ValueError, match="too short"):
        decode(payload, {**header, "count": header["count"] + 8})
    with pytest.raises(ValueError):
        decode(np.append(payload, np.uint8(0)), header)


@pytest.mark.parametrize(
    "header",
    [
        {"count": 2, "symbols": [0, 1, 2], "lengths": [1, 1, 1]},  # Kraft sum 3/2
        {"count": 2, "symbols": [0, 1], "lengths": [1]},
        {"count": 2, "symbols": [0, 1], "lengths": [0, 1]},
        {"count": 2, "symbols": [0, 1], "lengths": [1, MAX_CODE_LENGTH + 1]},
        {"count": 2, "symbols": [1, 1], "lengths": [1, 1]},
        {"count": 2, "symbols": [-1, 1], "lengths": [1, 1]},
        {"count": 2, "symbols": [0, 1]},
        {"count": -1, "symbols": [], "lengths": []},
        {"count": 2, "symbols": [], "lengths": []},
        {"count": 2.5, "symbols": [0, 1], "lengths": [1, 1]},
    ],
)
def test_inconsistent_header_raises(header):
    with pytest.raises(ValueError):
        decode(np.zeros(1, dtype=np.uint8), header)


def test_bit_pattern_outside_an_incomplete_code_raises():
    header = {"count": 1, "symbols": [0, 1], "lengths": [1, 2]}  # codes 0 and 10; 11 is unused
    assert decode(np.array([0b10000000], dtype=np.uint8), header).tolist() == [1]
    with pytest.raises(ValueError, match="not a code"):
        decode(np.array([0b11000000], dtype=np.uint8), header)


@pytest.mark.parametrize("symbols", [np.array([1, -2]), np.array([0.5, 1.0])])
def test_encode_rejects_non_symbols(symbols):
    with pytest.raises(ValueError):
        encode(symbols)


def test_million_symbol_round_trip():
    symbols = np.random.default_rng(7).geometric(0.05, 1_000_000) - 1
    payload, header = encode(symbols)
    np.testing.assert_array_equal(decode(payload, header), symbols)


def test_long_streams_record_sync_points_and_refuse_wrong_ones():
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, 16, 50_000) ** 2 % 13  # skewed: codes of several lengths
    payload, header = huffman.encode(symbols)
    assert len(header["sync"]) == (symbols.size - 1) // huffman.SYNC
    np.testing.assert_array_equal(huffman.decode(payload, header), symbols)
    bad = {**header, "sync": [s + 1 for s in header["sync"]]}
    with pytest.raises(ValueError, match="sync"):
        huffman.decode(payload, bad)
