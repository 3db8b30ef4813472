"""Bit packing of unsigned integer codes: ``n`` codes of ``b`` bits take ``ceil(n*b/8)`` bytes."""

from __future__ import annotations

import numpy as np


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned codes (< 2**bits) into a uint8 array, least significant bit first."""
    flat = np.asarray(codes, dtype=np.uint16).ravel()
    if flat.size and int(flat.max()) >= 1 << bits:
        raise ValueError(f"code {int(flat.max())} does not fit in {bits} bits")
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint16)) & 1
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` codes as int64."""
    needed = (count * bits + 7) // 8
    if packed.size != needed:
        raise ValueError(f"packed size {packed.size} bytes, expected {needed} for {count} codes")
    planes = np.unpackbits(packed, count=count * bits, bitorder="little").reshape(count, bits)
    return (planes.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)
