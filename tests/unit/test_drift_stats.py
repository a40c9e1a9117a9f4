"""The statistics' own pieces against the numpy and scipy functions Evidently calls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlops.drift import statistics as st


def _samples(kind: str, n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "far-from-zero":
        return rng.normal(1e6, 1, n), rng.normal(1e6 + 0.05, 1, m)
    if kind == "ties":
        return rng.integers(0, 5, n).astype(float), rng.integers(0, 6, m).astype(float)
    if kind == "identical":
        values = rng.normal(0, 1, n)
        return values, values.copy()
    if kind == "constant":
        return np.full(n, 3.0), rng.normal(3, 1, m)
    return rng.normal(0, 1, n), rng.standard_t(3, m)


@pytest.mark.parametrize("kind", ["far-from-zero", "ties", "identical", "constant", "heavy-tail"])
@pytest.mark.parametrize(("n", "m"), [(1, 1), (7, 3000), (2500, 2500), (3001, 40)])
def test_wasserstein_equals_scipy_normed_by_reference_std(kind, n, m):
    r, c = _samples(kind, n, m, np.random.default_rng(n * 7 + m))
    expected = stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
    assert st.wasserstein_norm(st.sort_finite(r), st.sort_finite(c)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n", "m"), [(900, 12_000), (20_000, 15_000)])
def test_ks_asymptotic_path_equals_scipy(n, m):
    rng = np.random.default_rng(3)
    r, c = rng.normal(0, 1, n), rng.normal(0.02, 1, m)
    expected = stats.ks_2samp(r, c).pvalue
    assert st.ks_pvalue(st.sort_finite(r), st.sort_finite(c)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("values", "integer"),
    [(np.random.default_rng(1).normal(0, 1, 5000), False), (np.arange(0, 7), True), (np.array([2.0, 2.0]), False)],
)
def test_sturges_edges_and_sorted_histogram_equal_numpy(values, integer):
    edges = st.sturges_edges(float(values.min()), float(values.max()), values.size, integer)
    np.testing.assert_array_equal(edges, np.histogram_bin_edges(values, bins="sturges"))
    np.testing.assert_array_equal(st.histogram_sorted(np.sort(values), edges), np.histogram(values, edges)[0])


def test_infinities_and_nan_are_dropped_and_integers_remembered():
    column = st.sort_finite(np.array([3.0, np.nan, -np.inf, 1.0, np.inf]))
    assert column.values.tolist() == [1.0, 3.0] and not column.integer
    assert st.sort_finite(np.array([5, 1, 5])).integer
    assert st.sort_finite(np.array([5, 1, 5])).unique()[1].tolist() == [1, 2]


def test_zero_shares_are_filled_like_evidently():
    ref = st.CategoricalColumn({"a": 10})
    cur = st.CategoricalColumn({"a": 5, "b": 5})
    ref_shares, cur_shares = st.binned_shares(ref, cur, fill_zeroes=True)
    assert sorted(ref_shares.tolist()) == [0.0001, 1.0]
    assert sorted(cur_shares.tolist()) == [0.5, 0.5]


def _share_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    pairs = []
    for size in (1, 2, 3, 7, 20, 33, 60):
        p, q = rng.random(size), rng.random(size)
        pairs.append((p / p.sum(), q / q.sum()))
        z = q.copy()
        z[:: 3] = 0.0  # empty bins on one side
        if z.sum():
            pairs.append((p / p.sum(), z / z.sum()))
    pairs.append((np.array([0.5, 0.5]), np.array([0.5, 0.5])))
    pairs.append((np.array([1e-300, 1.0]), np.array([1.0, 1e-300])))
    return pairs


@pytest.mark.parametrize(("p", "q"), _share_pairs())
def test_rel_entr_has_scipys_bits(p, q):
    from scipy.special import rel_entr

    np.testing.assert_array_equal(st.rel_entr(p, q), rel_entr(p, q))
    np.testing.assert_array_equal(st.rel_entr(q, p), rel_entr(q, p))


def test_rel_entr_has_scipys_bits_on_every_branch():
    # scipy switches formula at x / y = 0.5 and 2: values on both sides of each switch, and the edges.
    from scipy.special import rel_entr

    rng = np.random.default_rng(2)
    y = rng.random(20_000) + 0.01
    ratios = np.concatenate([rng.uniform(0, 4, 10_000), np.repeat([0.5, 2.0], 5000) * (1 + rng.uniform(-1e-6, 1e-6, 10_000))])
    x = y * ratios
    np.testing.assert_array_equal(st.rel_entr(x, y), rel_entr(x, y))
    edges = np.array([0.0, 0.0, 1.0, 0.0, np.nan, 1.0, -1.0])
    others = np.array([0.0, 1.0, 0.0, -1.0, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(st.rel_entr(edges, others), rel_entr(edges, others))


def _column_pairs() -> list[tuple[st.Column, st.Column]]:
    rng = np.random.default_rng(5)
    pairs: list[tuple[st.Column, st.Column]] = []
    for n, m in ((50, 40), (3000, 2500), (20_000, 7000)):
        pairs.append((st.sort_finite(rng.normal(0, 1, n)), st.sort_finite(rng.normal(0.1, 1.2, m))))
        pairs.append((st.sort_finite(rng.integers(0, 4, n)), st.sort_finite(rng.integers(0, 5, m))))
        pairs.append((st.sort_finite(rng.lognormal(0, 0.6, n)), st.sort_finite(rng.lognormal(0.2, 0.6, m))))
    levels = [f"v{i}" for i in range(9)]
    for n, m in ((30, 30), (4000, 3000)):
        ref = rng.choice(levels[:8], n)
        cur = rng.choice(levels, m)
        pairs.append(tuple(st.CategoricalColumn(dict(zip(*np.unique(x, return_counts=True), strict=True))) for x in (ref, cur)))
    return pairs


@pytest.mark.parametrize(("reference", "current"), _column_pairs())
def test_jensenshannon_and_kl_div_equal_the_scipy_functions_evidently_calls(reference, current):
    from scipy.spatial import distance

    ref, cur = st.binned_shares(reference, current, fill_zeroes=False)
    assert st.jensenshannon(reference, current) == float(distance.jensenshannon(ref, cur))
    ref, cur = st.binned_shares(reference, current, fill_zeroes=True)
    assert st.kl_div(reference, current) == float(stats.entropy(ref, cur))


@pytest.mark.parametrize(
    ("ref", "cur"),
    [({"a": 60, "b": 40}, {"a": 45, "b": 55}), ({"a": 1, "b": 999}, {"a": 3, "b": 997}),
     ({"x": 5}, {"x": 4, "y": 1}), ({"a": 500, "b": 500}, {"a": 500, "b": 500})],
)
def test_z_pvalue_equals_the_normal_cdf_evidently_uses(ref, cur):
    reference, current = st.CategoricalColumn(ref), st.CategoricalColumn(cur)
    first = sorted(set(ref) | set(cur))[0]
    n1, n2 = reference.size, current.size
    p1, p2 = (n1 - ref.get(first, 0)) / n1, (n2 - cur.get(first, 0)) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    assert st.z_pvalue(reference, current) == float(2 * (1 - stats.norm.cdf(np.abs(z))))
