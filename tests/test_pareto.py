import itertools
import random

import pytest

from autocompress.pareto import dominates, hypervolume, non_dominated, orient

# --- dominates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((1, 1), (2, 2), True),
        ((1, 2), (2, 2), True),
        ((2, 2), (1, 2), False),
        ((1, 2), (1, 2), False),  # equal points do not dominate
        ((1, 3), (3, 1), False),  # incomparable
        ((3, 1), (1, 3), False),
        ((0.5,), (1.0,), True),
        ((1, 1, 1), (1, 1, 2), True),
    ],
)
def test_dominates(a, b, expected):
    assert dominates(a, b) is expected


def test_dominates_length_mismatch():
    with pytest.raises(ValueError):
        dominates((1, 2), (1, 2, 3))


# --- non_dominated -----------------------------------------------------------------------------


def test_non_dominated_hand_example():
    points = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2), (4, 4), (1, 6)]
    # (3,3), (4,4) dominated by (2,2); (1,6) dominated by (1,5); duplicate (2,2) kept twice.
    assert non_dominated(points) == [0, 1, 3, 4]


def test_non_dominated_edge_cases():
    assert non_dominated([]) == []
    assert non_dominated([(3, 3)]) == [0]
    assert non_dominated([(1, 1), (1, 1)]) == [0, 1]
    with pytest.raises(ValueError):
        non_dominated([(1, 2), (3,)])


# --- hypervolume: hand-computed ----------------------------------------------------------------


def test_hypervolume_empty():
    assert hypervolume([], (1, 1)) == 0.0


def test_hypervolume_1d():
    assert hypervolume([(3,), (1,), (2,)], (5,)) == pytest.approx(4.0)


def test_hypervolume_2d():
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)


def test_hypervolume_2d_single_box():
    assert hypervolume([(0.5, 0.25)], (1.5, 1.25)) == pytest.approx(1.0)


def test_hypervolume_3d():
    # Boxes [p, (3,3,3)]: 2*2*1=4 and 1*1*2=2, overlapping in [(2,2,2),(3,3,3)] = 1 -> 5.
    assert hypervolume([(1, 1, 2), (2, 2, 1)], (3, 3, 3)) == pytest.approx(5.0)
    # Single point: 1*2*3.
    assert hypervolume([(2, 1, 0)], (3, 3, 3)) == pytest.approx(6.0)
    # Three axis-staircase points: each [p, 2^3] is 1*1*2=2, pairwise overlaps 1, triple 1.
    pts = [(0, 1, 1), (1, 0, 1), (1, 1, 0)]
    assert hypervolume(pts, (2, 2, 2)) == pytest.approx(2 * 3 - 1 * 3 + 1)


def test_hypervolume_duplicates():
    pts = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(pts + pts + [(2, 2)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(1, 1, 2), (1, 1, 2), (2, 2, 1)], (3, 3, 3)) == pytest.approx(5.0)


def test_hypervolume_ignores_points_outside_reference():
    pts = [(1, 3), (2, 2), (3, 1)]
    outside = [(5, 0), (0, 4), (4, 4), (10, 10), (-1, 7)]
    assert hypervolume(pts + outside, (4, 4)) == pytest.approx(6.0)
    assert hypervolume(outside, (4, 4)) == 0.0


def test_hypervolume_dominated_points_change_nothing():
    assert hypervolume([(1, 1), (2, 2), (1, 3)], (4, 4)) == pytest.approx(9.0)


def test_hypervolume_bad_input():
    with pytest.raises(ValueError):
        hypervolume([(1, 2, 3)], (4, 4))
    with pytest.raises(ValueError):
        hypervolume([(1, 2)], (float("nan"), 4))
    with pytest.raises(ValueError):
        hypervolume([(1, 2)], ())


# --- hypervolume: randomized checks -------------------------------------------------------------


def _grid_count(points, size, dim):
    """Count unit cells [c, c+1) of [0, size)^dim dominated by some integer point."""
    return sum(
        any(all(p[k] <= c[k] for k in range(dim)) for p in points)
        for c in itertools.product(range(size), repeat=dim)
    )


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_grid_count(dim):
    rng = random.Random(1234 + dim)
    size = 6
    for _ in range(25):
        n = rng.randint(1, 9)
        pts = [tuple(rng.randrange(size) for _ in range(dim)) for _ in range(n)]
        expected = _grid_count(pts, size, dim)
        assert hypervolume(pts, (size,) * dim) == pytest.approx(expected)


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_hypervolume_monotone_and_order_invariant(dim):
    rng = random.Random(99 + dim)
    ref = (1.0,) * dim
    pts: list[tuple[float, ...]] = []
    previous = 0.0
    for _ in range(30):
        pts.append(tuple(rng.uniform(-0.1, 1.1) for _ in range(dim)))
        current = hypervolume(pts, ref)
        assert current >= previous - 1e-12
        previous = current
    shuffled = pts[:]
    rng.shuffle(shuffled)
    assert hypervolume(shuffled, ref) == pytest.approx(previous)
    front = [pts[i] for i in non_dominated(pts)]
    assert hypervolume(front, ref) == pytest.approx(previous)


# --- orient ------------------------------------------------------------------------------------


def test_orient():
    values = {"accuracy": 0.9, "latency_ms": 3.5, "size_mb": 12}
    assert orient(values, {"accuracy": "max", "latency_ms": "min"}) == (-0.9, 3.5)
    assert orient(values, {"size_mb": "min", "accuracy": "max"}) == (12.0, -0.9)
    assert orient(values, {}) == ()


def test_orient_bad_mode():
    with pytest.raises(ValueError, match="accuracy"):
        orient({"accuracy": 0.9}, {"accuracy": "maximize"})


def test_orient_missing_metric():
    with pytest.raises(ValueError, match="latency_ms"):
        orient({"accuracy": 0.9}, {"accuracy": "max", "latency_ms": "min"})
