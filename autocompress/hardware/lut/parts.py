"""The values a latency table stores and the predictions it makes: entries, residuals, parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One measured table value.

    Attributes:
        latency_ms: What the entry contributes to a prediction, in milliseconds.
        measured_ms: The raw median it was derived from (isolated kernel, or the base model).
        spread: Relative interquartile spread of the raw timings.
        runs: Timed runs behind the median.
    """

    latency_ms: float
    measured_ms: float
    spread: float
    runs: int


@dataclass(frozen=True)
class Part:
    """One term of a prediction.

    Attributes:
        name: The layer name, or ``overhead`` / ``module calls`` / ``residual``.
        kind: ``layer``, ``overhead``, ``calls`` or ``residual``.
        key: The table key the value comes from.
        latency_ms: The term, in milliseconds (``count`` times the entry for ``calls``).
        count: How many times the entry is counted.
    """

    name: str
    kind: str
    key: str
    latency_ms: float
    count: int = 1


@dataclass(frozen=True)
class Prediction:
    """A predicted latency and every part it sums.

    Attributes:
        target: The table's target.
        parts: Every term; ``latency_ms`` is their sum.
        missing: Keys with no entry (not measured because measuring was not allowed); their
            parts are absent, so the prediction is incomplete.
    """

    target: str
    parts: tuple[Part, ...]
    missing: tuple[str, ...] = ()

    @property
    def latency_ms(self) -> float:
        """The predicted median latency of one batch: the sum of the parts."""
        return sum(p.latency_ms for p in self.parts)

    @property
    def complete(self) -> bool:
        """True when every kernel and the residual had an entry."""
        return not self.missing

    def by_kind(self) -> dict[str, float]:
        """The parts summed per kind."""
        out: dict[str, float] = {}
        for part in self.parts:
            out[part.kind] = out.get(part.kind, 0.0) + part.latency_ms
        return out


@dataclass(frozen=True)
class Residual:
    """What a model family's measured latency differs from the sum of its other parts by.

    ``residual = constant_ms + scale * rest``, where ``rest`` is the sum of the prediction's
    other parts. The constant is functional glue in ``forward`` that no plan changes (attention
    matmuls, additions, reshapes); the scale is the share by which layers in the model run slower
    (or faster) than alone (caches, fusion). One calibration point (the base model) fits the
    constant only (scale 0); more points (plans of the base model) fit both by least squares.

    Attributes:
        constant_ms: The fixed part, in milliseconds.
        scale: The part proportional to the rest of the prediction.
        points: ``(rest, measured)`` of each calibration model, in milliseconds.
    """

    constant_ms: float
    scale: float
    points: tuple[tuple[float, float], ...]

    def value(self, rest_ms: float) -> float:
        """The residual of a prediction whose other parts sum to ``rest_ms``."""
        return self.constant_ms + self.scale * rest_ms

    @classmethod
    def fit(cls, points: list[tuple[float, float]]) -> Residual:
        """Least-squares fit of ``measured - rest = constant + scale * rest`` to the points."""
        if len(points) == 1 or len({round(r, 9) for r, _ in points}) == 1:
            gaps = [m - r for r, m in points]
            return cls(sum(gaps) / len(gaps), 0.0, tuple(points))
        n = len(points)
        mean_r = sum(r for r, _ in points) / n
        mean_g = sum(m - r for r, m in points) / n
        cov = sum((r - mean_r) * (m - r - mean_g) for r, m in points)
        var = sum((r - mean_r) ** 2 for r, _ in points)
        scale = cov / var
        return cls(mean_g - scale * mean_r, scale, tuple(points))


__all__ = ["Entry", "Part", "Prediction", "Residual"]
