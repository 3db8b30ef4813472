"""Canonical Huffman coding of non-negative integer symbol streams.

Deep Compression stores quantised weight codes, k-means indices and sparse index gaps
Huffman-coded. A canonical code is fully described by each symbol's code length, so the header
is a small JSON-able dict: ``{"count": n, "symbols": [...], "lengths": [...]}`` with symbols in
ascending order. Codes are assigned in (length, symbol) order and written most significant bit
first; the last byte is zero-padded.
"""

from __future__ import annotations

import heapq
import json

import numpy as np

MAX_CODE_LENGTH = 24
"""Longest code ever emitted; the decoder reads ``length + 7 <= 32`` bits per window."""

_CHUNK = 1 << 20  # symbols or bit positions per vectorised step, to bound temporaries
SYNC = 1024  # a long stream records the bit offset of every SYNC-th code ("sync" points)


def encode(symbols: np.ndarray) -> tuple[np.ndarray, dict]:
    """Huffman-code a stream of non-negative integers.

    Args:
        symbols: Integers of any int dtype and shape; flattened in C order.

    Returns:
        ``(payload, header)``: the packed bits as a 1-D uint8 array and the dict that
        :func:`decode` needs to read them back.

    Raises:
        ValueError: If the symbols are not integers, are negative or do not fit in int64.
    """
    flat = _as_symbols(symbols)
    distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    lengths = _code_lengths(counts)
    header = {"count": int(flat.size), "symbols": distinct.tolist(), "lengths": lengths.tolist()}
    if flat.size == 0:
        return np.zeros(0, dtype=np.uint8), header
    codes = _canonical_codes(lengths)
    per_symbol = lengths[inverse.ravel()]
    if flat.size > 4 * SYNC:  # decoding then walks every stretch at once, not symbol by symbol
        offsets = np.cumsum(per_symbol) - per_symbol
        header["sync"] = offsets[SYNC::SYNC].tolist()
    return _pack(codes[inverse.ravel()], per_symbol), header


def decode(payload: np.ndarray, header: dict) -> np.ndarray:
    """Inverse of :func:`encode`.

    Args:
        payload: The uint8 array that :func:`encode` returned.
        header: The header that :func:`encode` returned (possibly via JSON).

    Returns:
        The ``header["count"]`` symbols as a 1-D int64 array.

    Raises:
        ValueError: If the header is malformed, its code lengths violate the Kraft inequality,
            or the payload is too short, too long or holds a bit pattern that is no code.
    """
    count, symbols, lengths = _check_header(header)
    data = np.asarray(payload)
    if data.dtype != np.uint8:
        raise ValueError(f"payload must be uint8, got {data.dtype}")
    data = data.ravel()
    if count == 0:
        if data.size:
            raise ValueError(f"payload has {data.size} bytes for an empty stream")
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    return symbols[order][_read_codes(data, lengths, count, _sync(header, count))]


def _sync(header: dict, count: int) -> np.ndarray | None:
    if "sync" not in header:
        return None
    sync = _int_array(header["sync"], "sync")
    if sync.size != (count - 1) // SYNC or (sync.size and (np.diff(sync).min(initial=1) <= 0
                                                           or sync[0] <= 0)):
        raise ValueError(f"header sync must list {(count - 1) // SYNC} increasing offsets")
    return sync


def encoded_bits(symbols: np.ndarray) -> int:
    """Bits of the Huffman payload for ``symbols``, before padding to whole bytes."""
    _, counts = np.unique(_as_symbols(symbols), return_counts=True)
    return int(np.dot(counts, _code_lengths(counts)))


def fixed_width_bits(symbols: np.ndarray) -> int:
    """Bits to store ``symbols`` at ``ceil(log2(max + 1))`` bits each (at least 1 each)."""
    flat = _as_symbols(symbols)
    if flat.size == 0:
        return 0
    return int(flat.size) * max(1, int(flat.max()).bit_length())


def header_bytes(header: dict) -> int:
    """Size of ``header`` as compact JSON, to add to the payload when comparing sizes."""
    return len(json.dumps(header, separators=(",", ":")).encode())


def _as_symbols(symbols: np.ndarray) -> np.ndarray:
    flat = np.asarray(symbols).ravel()
    if flat.size and flat.dtype.kind not in "iu":  # an empty list comes as float64
        raise ValueError(f"symbols must be integers, got dtype {flat.dtype}")
    if flat.size and int(flat.min()) < 0:
        raise ValueError(f"symbols must be non-negative, got {int(flat.min())}")
    if flat.size and int(flat.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"symbol {int(flat.max())} does not fit in int64")
    return flat.astype(np.int64, copy=False)


def _code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code lengths; frequencies are halved until no code exceeds the limit."""
    if counts.size > 1 << MAX_CODE_LENGTH:
        raise ValueError(f"{counts.size} distinct symbols exceed 2**{MAX_CODE_LENGTH}")
    counts = counts.astype(np.int64)
    while True:
        lengths = _huffman_lengths(counts.tolist())
        if lengths.size == 0 or lengths.max() <= MAX_CODE_LENGTH:
            return lengths
        counts = np.maximum(counts >> 1, 1)  # flatter distribution, shallower tree


def _huffman_lengths(counts: list[int]) -> np.ndarray:
    """Depth of each leaf in a Huffman tree; ties break by node id, so it is deterministic."""
    if len(counts) <= 1:
        return np.ones(len(counts), dtype=np.int64)
    heap = [(c, i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = [0] * (2 * len(counts) - 1)
    for node in range(len(counts), len(parent)):
        (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (c1 + c2, node))
    depth = [0] * len(parent)
    for node in range(len(parent) - 2, -1, -1):  # parents have larger ids than children
        depth[node] = depth[parent[node]] + 1
    return np.array(depth[: len(counts)], dtype=np.int64)


def _canonical_tables(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per length ``l``: the first code, the codes' count and their offset in canonical order."""
    per_length = np.bincount(lengths, minlength=int(lengths.max()) + 1)
    first = np.zeros_like(per_length)
    for bits in range(1, per_length.size):
        first[bits] = (first[bits - 1] + per_length[bits - 1]) << 1
    offset = np.concatenate([[0], np.cumsum(per_length)[:-1]])
    return first, per_length, offset


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Code of each symbol (symbols ascending) under canonical (length, symbol) ordering."""
    first, _, offset = _canonical_tables(lengths)
    order = np.argsort(lengths, kind="stable")
    codes = np.empty_like(lengths)
    rank = np.arange(lengths.size) - offset[lengths[order]]
    codes[order] = first[lengths[order]] + rank
    return codes


def _pack(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate variable-length codes, most significant bit first, into bytes."""
    width = int(lengths.max())
    columns = np.arange(width)
    bits = []
    for lo in range(0, codes.size, _CHUNK):
        code, length = codes[lo : lo + _CHUNK], lengths[lo : lo + _CHUNK]
        word = (code << (32 - length)).astype(">u4")  # left-aligned in 32 bits
        planes = np.unpackbits(word.view(np.uint8).reshape(-1, 4), axis=1)[:, :width]
        bits.append(planes[columns < length[:, None]])
    return np.packbits(np.concatenate(bits))


def _check_header(header: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Validate a header; return its count, symbols and code lengths."""
    try:
        count = header["count"]
        symbols = _int_array(header["symbols"], "symbols")
        lengths = _int_array(header["lengths"], "lengths")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed Huffman header: {exc!r}") from exc
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"header count must be a non-negative integer, got {count!r}")
    if symbols.size != lengths.size or (count and not symbols.size):
        raise ValueError(
            f"header has count {count}, {symbols.size} symbols and {lengths.size} lengths"
        )
    if lengths.size and not (1 <= lengths.min() and lengths.max() <= MAX_CODE_LENGTH):
        raise ValueError(f"code lengths must lie in 1..{MAX_CODE_LENGTH}")
    if symbols.size and (symbols.min() < 0 or np.unique(symbols).size != symbols.size):
        raise ValueError("header symbols must be distinct non-negative integers")
    if lengths.size and int(np.sum(1 << (MAX_CODE_LENGTH - lengths))) > 1 << MAX_CODE_LENGTH:
        raise ValueError("code lengths violate the Kraft inequality")
    return int(count), symbols, lengths


def _int_array(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"header {name} must be a flat list of integers")
    return array.astype(np.int64)


def _words(data: np.ndarray) -> np.ndarray:
    """The 32 bits starting at each byte, big-endian, zero-padded past the end."""
    padded = np.concatenate([data, np.zeros(3, dtype=np.uint8)]).astype(np.uint64)
    words = np.zeros(data.size, dtype=np.uint64)
    for k in range(4):
        words = (words << np.uint64(8)) | padded[k : k + data.size]
    return words


def _windows(words: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bits starting at each bit position, as integers."""
    shifted = words[positions >> 3] << (positions & 7).astype(np.uint64)
    return ((shifted >> np.uint64(32 - width)) & np.uint64((1 << width) - 1)).astype(np.int64)


def _lengths_at(windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Length of the code each window starts with; ``width + 1`` where it starts no code."""
    first, per_length, _ = _canonical_tables(lengths)
    width = first.size - 1
    limits = (first[1:] + per_length[1:]) << (width - np.arange(1, width + 1))
    return np.searchsorted(limits, windows, side="right") + 1


def _read_codes(data: np.ndarray, lengths: np.ndarray, count: int,
                sync: np.ndarray | None = None) -> np.ndarray:
    """Indices, in canonical order, of the first ``count`` codes in ``data``; check the fit."""
    words, width, total = _words(data), int(lengths.max()), 8 * data.size
    if count > total:  # every code takes at least one bit
        raise ValueError(f"payload too short: {data.size} bytes for {count} symbols")
    if sync is not None and sync.size and sync[-1] >= total:
        raise ValueError(f"payload too short: sync offset {sync[-1]} past {total} bits")
    starts, end = (_code_starts(words, lengths, count, total) if sync is None
                   else _synced_starts(words, lengths, count, sync))
    if starts[-1] >= total or end > total:
        raise ValueError(f"payload too short: {data.size} bytes for {count} symbols")
    windows = _windows(words, starts, width)
    code_len = _lengths_at(windows, lengths)
    if code_len.max() > width:
        raise ValueError("payload holds a bit pattern that is not a code")
    if data.size != (end + 7) // 8:
        raise ValueError(f"payload has {data.size} bytes, its codes fill {(end + 7) // 8}")
    first, _, offset = _canonical_tables(lengths)
    return offset[code_len] + (windows >> (width - code_len)) - first[code_len]


def _synced_starts(words: np.ndarray, lengths: np.ndarray, count: int,
                   sync: np.ndarray) -> tuple[np.ndarray, int]:
    """Code offsets read from every sync point at once: ``SYNC`` vector steps in all.

    Each stretch must end exactly where the next sync point says it starts.
    """
    width, limit = int(lengths.max()), 8 * words.size - 1
    first_codes, per_length, _ = _canonical_tables(lengths)
    bounds = (first_codes[1:] + per_length[1:]) << (width - np.arange(1, width + 1))
    first = np.concatenate([[0], sync]).astype(np.int64)
    pos, starts = first, np.zeros((first.size, SYNC), dtype=np.int64)
    for step in range(SYNC):
        starts[:, step] = pos
        windows = _windows(words, np.minimum(pos, limit), width)  # the tail reads past the end
        pos = pos + np.minimum(np.searchsorted(bounds, windows, side="right") + 1, width)
    if not np.array_equal(pos[:-1], first[1:]):
        raise ValueError("payload disagrees with its sync offsets")
    flat = starts.reshape(-1)[:count]
    tail = (count - 1) % SYNC + 1  # codes read in the last stretch
    end = int(pos[-1]) if tail == SYNC else int(starts[-1, tail])
    return flat, end


def _code_starts(
    words: np.ndarray, lengths: np.ndarray, count: int, total: int
) -> tuple[np.ndarray, int]:
    """Bit offsets of the first ``count`` codes, and the offset just past the last one."""
    width = int(lengths.max())
    following = np.arange(total + width + 1, dtype=np.int64)  # at or past the end: stay put
    for lo in range(0, total, _CHUNK):
        pos = following[lo : min(lo + _CHUNK, total)]
        pos += np.minimum(_lengths_at(_windows(words, pos, width), lengths), width)
    step, starts, p = memoryview(following), [0] * count, 0
    for i in range(count):  # pointer chase: sequential, but one list step per symbol
        starts[i], p = p, step[p]
    return np.array(starts, dtype=np.int64), p
