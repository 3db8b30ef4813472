"""Integer streams in an artifact: fixed-width packed or Huffman-coded, whichever is smaller."""

from __future__ import annotations

from typing import Any

import numpy as np

from autocompress.export import huffman
from autocompress.export.packing import pack_codes, unpack_codes


def _width(symbols: np.ndarray) -> int:
    return max(1, int(symbols.max()).bit_length()) if symbols.size else 1


def encode_stream(symbols: np.ndarray, bits: int | None = None) -> tuple[np.ndarray, dict]:
    """Encode non-negative ints; returns ``(uint8 payload, JSON header)``.

    Args:
        symbols: The integers (flattened).
        bits: Fixed width to use for the packed alternative (default: the smallest that fits).
    """
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    width = bits or _width(symbols)
    fixed = (pack_codes(symbols, width), {"coding": "fixed", "bits": width,
                                          "count": int(symbols.size)})
    payload, header = huffman.encode(symbols)
    coded = (payload, {"coding": "huffman", **header})
    return min(fixed, coded, key=lambda c: c[0].size + huffman.header_bytes(c[1]))


def decode_stream(payload: np.ndarray, header: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_stream` (int64)."""
    if header["coding"] == "fixed":
        return unpack_codes(payload, header["bits"], header["count"])
    if header["coding"] == "huffman":
        return huffman.decode(payload, {k: v for k, v in header.items() if k != "coding"})
    raise ValueError(f"unknown stream coding {header['coding']!r}")


def encode_positions(mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """Where a sparse tensor's kept entries are: a bitmap or coded index gaps, the smaller."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    bitmap = (np.packbits(flat), {"coding": "bitmap", "count": int(flat.size)})
    kept = np.flatnonzero(flat)
    gaps = np.diff(kept, prepend=-1) - 1
    payload, header = encode_stream(gaps)
    coded = (payload, {**header, "gaps": True, "size": int(flat.size)})
    return min(bitmap, coded, key=lambda c: c[0].size + huffman.header_bytes(c[1]))


def decode_positions(payload: np.ndarray, header: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_positions`: a boolean mask (flat)."""
    if header["coding"] == "bitmap":
        return np.unpackbits(payload, count=header["count"]).astype(bool)
    gaps = decode_stream(payload, {k: v for k, v in header.items() if k not in ("gaps", "size")})
    mask = np.zeros(header["size"], dtype=bool)
    mask[np.cumsum(gaps + 1) - 1] = True
    return mask
