"""Pareto dominance, non-dominated filtering and exact hypervolume.

Every function here uses the minimisation convention: smaller is better in every
coordinate. Use :func:`orient` to turn a dict of metrics into such a vector.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from autocompress import _CallableModule

_MODES = ("min", "max")


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Tell whether ``a`` Pareto-dominates ``b`` (minimisation).

    Args:
        a: First objective vector.
        b: Second objective vector, of the same length.

    Returns:
        True if ``a`` is no worse than ``b`` everywhere and strictly better somewhere.

    Raises:
        ValueError: If the vectors differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} != {len(b)}")
    no_worse = all(x <= y for x, y in zip(a, b, strict=True))
    return no_worse and any(x < y for x, y in zip(a, b, strict=True))


def _as_matrix(points: Sequence[Sequence[float]], dim: int | None = None) -> np.ndarray:
    """Convert points to an ``(n, d)`` float array, checking that they are rectangular."""
    try:
        arr = np.asarray(points, dtype=float)
    except ValueError as exc:
        raise ValueError("points must all have the same number of objectives") from exc
    if arr.size == 0:
        return np.empty((0, dim if dim is not None else 0))
    if arr.ndim != 2:
        raise ValueError(f"points must be a sequence of vectors, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"points have {arr.shape[1]} objectives, the reference has {dim}")
    return arr


def _dominated_mask(arr: np.ndarray) -> np.ndarray:
    """Return a boolean mask of the rows of ``arr`` dominated by another row."""
    le = np.all(arr[:, None, :] <= arr[None, :, :], axis=2)  # le[j, i]: row j <= row i
    lt = np.any(arr[:, None, :] < arr[None, :, :], axis=2)
    return np.any(le & lt, axis=0)


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Find the points that no other point dominates.

    Args:
        points: Objective vectors, all of the same length.

    Returns:
        Indices of the non-dominated points, in input order. Equal points do not
        dominate one another, so every copy of a non-dominated point is kept.

    Raises:
        ValueError: If the points differ in length.

    Examples:
        >>> non_dominated([(0.10, 3.0), (0.20, 1.0), (0.30, 2.0)])  # (error, latency_ms)
        [0, 1]
    """
    arr = _as_matrix(points)
    if len(arr) == 0:
        return []
    return [int(i) for i in np.flatnonzero(~_dominated_mask(arr))]


def _front(arr: np.ndarray) -> np.ndarray:
    """Drop duplicate and dominated rows."""
    arr = np.unique(arr, axis=0)
    return arr[~_dominated_mask(arr)]


def _hv2d(arr: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume by a sweep along the first objective."""
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    area, best_y = 0.0, ref[1]
    for x, y in arr[order]:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)


def _hv(arr: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of points strictly inside ``ref``, by slicing the last objective."""
    if len(arr) == 0:
        return 0.0
    if arr.shape[1] == 1:
        return float(ref[0] - arr[:, 0].min())
    if arr.shape[1] == 2:
        return _hv2d(arr, ref)
    arr = _front(arr)
    arr = arr[np.argsort(arr[:, -1], kind="stable")]
    bounds = np.append(arr[1:, -1], ref[-1])
    volume = 0.0
    for i, upper in enumerate(bounds):
        depth = upper - arr[i, -1]
        if depth > 0:
            volume += depth * _hv(arr[: i + 1, :-1], ref[:-1])
    return float(volume)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Compute the exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Uses recursive slicing along the last objective (HSO), with dominated points
    removed at each level; exact for any number of objectives.

    Args:
        points: Objective vectors (minimisation), each as long as ``reference``.
        reference: The reference point; it must be finite.

    Returns:
        The measure of the union of the boxes ``[p, reference]``. Points that are not
        strictly better than the reference in every objective contribute nothing;
        empty input gives 0.0.

    Raises:
        ValueError: If the reference is empty or not finite, or the dimensions disagree.

    Examples:
        >>> hypervolume([(1.0, 2.0), (2.0, 1.0)], reference=(3.0, 3.0))  # two 2x1 boxes
        3.0
        >>> hypervolume([(4.0, 1.0)], reference=(3.0, 3.0))  # outside the reference
        0.0
    """
    ref = np.asarray(reference, dtype=float).ravel()
    if ref.size == 0 or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be a non-empty finite vector, got {reference!r}")
    arr = _as_matrix(points, ref.size)
    inside = arr[np.all(arr < ref, axis=1)]
    return _hv(inside, ref)


def orient(values: Mapping[str, float], objectives: Mapping[str, str]) -> tuple[float, ...]:
    """Turn named metrics into a minimisation vector.

    Args:
        values: Metric values by name, e.g. ``{"accuracy": 0.91, "latency_ms": 3.2}``.
        objectives: Direction per metric, ``"min"`` or ``"max"``, in the order wanted,
            e.g. ``{"accuracy": "max", "latency_ms": "min"}``.

    Returns:
        One value per objective, in the order of ``objectives``; ``"max"`` ones negated.

    Raises:
        ValueError: If a mode is not ``"min"``/``"max"`` or a metric is missing.

    Examples:
        >>> orient({"accuracy": 0.9, "latency_ms": 2.0}, {"accuracy": "max", "latency_ms": "min"})
        (-0.9, 2.0)
    """
    out = []
    for name, mode in objectives.items():
        if mode not in _MODES:
            raise ValueError(f"objective {name!r}: mode must be 'min' or 'max', got {mode!r}")
        if name not in values:
            raise ValueError(f"objective {name!r}: metric missing from values")
        value = float(values[name])
        out.append(-value if mode == "max" else value)
    return tuple(out)


# ``autocompress.pareto(experiment)`` reads a search's front (autocompress.api.pareto)
sys.modules[__name__].__class__ = _CallableModule
