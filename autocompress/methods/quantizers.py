"""Weight quantizer math: uniform (symmetric / affine / binary) with a learnable step, k-means.

Uniform quantization keeps its step size (``scale``, per output channel or per tensor) as state,
initialised from the weights and trained with the learned-step-size estimator (LSQ, Esser et
al. 2020); rounding passes gradients straight through. Because the step is state, the integer
codes written to an artifact dequantize to exactly the weights the layer used.
"""

from __future__ import annotations

import torch

FLOAT_BITS = (16, 32)
INT_BITS = tuple(range(1, 9))
ALLOWED_BITS = INT_BITS + FLOAT_BITS
SHARE_BITS = tuple(range(1, 9))


def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """The signed (symmetric) or unsigned (affine) integer range of ``bits``-bit codes."""
    if bits == 1:
        return -1, 1  # binary: sign(w) * scale
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def channel_view(values: torch.Tensor, like: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Reshape per-channel values (or a scalar) to broadcast against ``like``."""
    shape = (-1,) + (1,) * (like.dim() - 1) if per_channel else (1,) * like.dim()
    return values.reshape(shape)


def _reduce(w: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    flat = w.detach().reshape(w.shape[0], -1) if per_channel else w.detach().reshape(1, -1)
    return fn(flat)


def init_scale(w: torch.Tensor, bits: int, per_channel: bool, symmetric: bool):
    """Initial step (and zero point) covering the weights' range without clipping.

    Returns:
        ``(scale, zero_point)`` as 1-D tensors (one entry per channel, or one in all);
        the zero point is zeros for symmetric and binary quantization.
    """
    if bits == 1:
        scale = _reduce(w, per_channel, lambda f: f.abs().mean(dim=1))
        return scale.clamp_min(1e-8), torch.zeros_like(scale)
    low, high = code_range(bits, symmetric)
    if symmetric:
        scale = _reduce(w, per_channel, lambda f: f.abs().amax(dim=1)) / high
        return scale.clamp_min(1e-8), torch.zeros_like(scale)
    w_min = _reduce(w, per_channel, lambda f: f.amin(dim=1).clamp(max=0.0))
    w_max = _reduce(w, per_channel, lambda f: f.amax(dim=1).clamp(min=0.0))
    scale = ((w_max - w_min) / high).clamp_min(1e-8)
    zero_point = torch.clamp(torch.round(-w_min / scale), low, high)
    return scale, zero_point


def _grad_scaled(scale: torch.Tensor, factor: float) -> torch.Tensor:
    """``scale`` in the forward pass, gradient multiplied by ``factor`` (LSQ's step gradient)."""
    return (scale - scale * factor).detach() + scale * factor


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                  bits: int) -> torch.Tensor:
    """Quantize-dequantize with straight-through rounding and a learnable step.

    Args:
        w: The float weights.
        scale: Step size, broadcastable to ``w``.
        zero_point: Affine zero point broadcastable to ``w``, or None (symmetric / binary).
        bits: 1..8.
    """
    low, high = code_range(bits, zero_point is None)
    per_step = w.numel() / max(scale.numel(), 1)
    s = _grad_scaled(scale, 1.0 / (per_step * max(high, 1)) ** 0.5)
    v = w / s if zero_point is None else w / s + zero_point
    if bits == 1:  # BinaryConnect: sign forward, identity backward (no clipping)
        q = v + (torch.where(v >= 0, 1.0, -1.0).to(w.dtype) - v).detach()
    else:
        clipped = torch.clamp(v, low, high)
        q = clipped + (torch.round(clipped) - clipped).detach()
    return q * s if zero_point is None else (q - zero_point) * s


def weight_codes(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                 bits: int) -> torch.Tensor:
    """Unsigned integer codes in ``[0, 2**bits)`` of ``w`` (what the artifact stores)."""
    low, high = code_range(bits, zero_point is None)
    v = w.detach() / scale if zero_point is None else w.detach() / scale + zero_point
    if bits == 1:
        return (v >= 0).long()
    codes = torch.clamp(torch.round(v), low, high).long()
    return codes - low


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
               bits: int) -> torch.Tensor:
    """Inverse of :func:`weight_codes`."""
    if bits == 1:
        return (codes.to(scale.dtype) * 2 - 1) * scale
    low, _ = code_range(bits, zero_point is None)
    q = codes.to(scale.dtype) + low
    return q * scale if zero_point is None else (q - zero_point) * scale


def kmeans_1d(values: torch.Tensor, clusters: int, iterations: int = 30):
    """Lloyd's k-means on scalars with linear initialisation (Deep Compression's best).

    Returns:
        ``(centroids, assignment)``: ``clusters`` centroids and the index of each value's.
    """
    values = values.detach().reshape(-1).float()
    if values.numel() == 0:
        return torch.zeros(clusters), torch.zeros(0, dtype=torch.long)
    centroids = torch.linspace(float(values.min()), float(values.max()), clusters)
    for _ in range(iterations):
        assignment = _nearest(values, centroids)
        sums = torch.zeros(clusters).index_add_(0, assignment, values)
        counts = torch.zeros(clusters).index_add_(0, assignment, torch.ones_like(values))
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.allclose(updated, centroids):
            break
        centroids = updated
    return centroids, _nearest(values, centroids)


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of sorted ``centroids`` (1-D Lloyd keeps them sorted)."""
    boundaries = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(boundaries.contiguous(), values.contiguous())
