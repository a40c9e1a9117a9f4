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
