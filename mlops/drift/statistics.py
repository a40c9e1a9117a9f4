"""Drift statistics on whole columns, computed the way Evidently 0.7 computes them.

Each function takes what a reference profile keeps (sorted finite values of a numeric column, or
the category counts of a categorical one) plus the same for the current window, and returns the
statistic Evidently's stat test of that name returns. Binning, zero-filling, the tie rules of the
empirical CDFs and the p-value formulas follow `evidently.legacy.calculations.stattests` and the
scipy functions it calls. The default methods (Wasserstein, Jensen-Shannon) and the other
distances need no scipy: the few lines scipy runs on the short final vector (a few dozen bins or
categories) are repeated here operation for operation, and tests/unit/test_drift_stats.py holds
them equal to scipy's. The p-value tests whose exact distributions are scipy's own work (KS,
Anderson-Darling, chi-square) import `scipy.stats` when they run: it costs about half a second
to import, which a cold `mlops drift-check` on the default methods does not pay.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

# scipy's ks_2samp switches from the exact to the asymptotic p-value above this sample size.
KS_EXACT_MAX_N = 10_000


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column without NaN and infinities, sorted ascending."""

    values: np.ndarray
    integer: bool = False

    @property
    def size(self) -> int:
        return int(self.values.size)

    def unique(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values, their counts); cheap because the values are already sorted."""
        v = self.values
        if v.size == 0:
            return v, np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
        counts = np.diff(np.append(starts, v.size))
        return v[starts], counts

    def nunique(self) -> int:
        v = self.values
        return int(v.size and 1 + np.count_nonzero(v[1:] != v[:-1]))


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column as counts per category; NaN is not a category (Evidently drops it)."""

    counts: Mapping[Hashable, int]

    @property
    def size(self) -> int:
        return int(sum(self.counts.values()))


Column = NumericColumn | CategoricalColumn


def sort_finite(values: np.ndarray) -> NumericColumn:
    """The column as Evidently sees it: infinities and NaN dropped; sorted for the statistics."""
    integer = np.issubdtype(values.dtype, np.integer)
    arr = np.asarray(values, dtype=np.float64)
    if not integer:
        arr = arr[np.isfinite(arr)]
    return NumericColumn(np.sort(arr, kind="quicksort"), integer=bool(integer))


def n_distinct(reference: Column, current: Column) -> int:
    """Distinct values over both samples: Evidently picks its default test by this number."""
    if isinstance(reference, CategoricalColumn) and isinstance(current, CategoricalColumn):
        return len(set(reference.counts) | set(current.counts))
    assert isinstance(reference, NumericColumn) and isinstance(current, NumericColumn)
    return int(np.union1d(reference.unique()[0], current.unique()[0]).size)


def few_distinct(reference: Column, current: Column, limit: int) -> int:
    """n_distinct, but stops counting exactly once it is sure the number exceeds `limit`."""
    if isinstance(reference, NumericColumn) and isinstance(current, NumericColumn):
        if reference.nunique() > limit or current.nunique() > limit:
            return limit + 1
    return n_distinct(reference, current)


# -- numeric-only statistics --------------------------------------------------------------------


def wasserstein_norm(reference: NumericColumn, current: NumericColumn) -> float:
    """First Wasserstein distance divided by the reference's std (at least 0.001), as Evidently."""
    r, c = reference.values, current.values
    norm = max(float(np.std(r)), 0.001)
    # W1 is the sum over the merged sorted samples of |F_ref - F_cur| times the gap to the next
    # value. Summed by parts, each value x contributes x * (|F_ref - F_cur| just before it minus
    # just after it), and both follow from its rank in its own sample and in the other one: no
    # merge, no re-sort. Ties put current before reference on both sides (tied values have zero
    # gap, so the order is moot). Centring the values keeps the cancellation small.
    cur_ranks = np.searchsorted(r, c, side="left")  # reference values below each current one
    # Current values at or below reference value i are those whose rank is at most i: a count,
    # cheaper than a second binary search.
    ref_ranks = np.cumsum(np.bincount(cur_ranks, minlength=r.size + 1)[: r.size])
    centre = float(r[r.size // 2])
    return (_by_parts(r, ref_ranks, c.size, centre) + _by_parts(c, cur_ranks, r.size, centre)) / norm


def _by_parts(x: np.ndarray, other_ranks: np.ndarray, other_size: int, centre: float, block: int = 1 << 16) -> float:
    # Cache-sized blocks; and no np.dot: its BLAS threads cost more than the sum on a busy machine.
    total = 0.0
    for start in range(0, x.size, block):
        values = x[start : start + block]
        other_share = other_ranks[start : start + block] / other_size
        own_before = np.arange(start, start + values.size, dtype=np.float64) / x.size
        own_after = own_before + 1.0 / x.size
        change = np.abs(own_before - other_share)
        change -= np.abs(own_after - other_share)
        change *= values - centre
        total += float(change.sum())
    return total


def ks_pvalue(reference: NumericColumn, current: NumericColumn) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value as scipy's ks_2samp(method='auto')."""
    n1, n2 = reference.size, current.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        # Small samples: scipy's exact path is cheap here, and calling it keeps every branch equal.
        from scipy import stats

        return float(stats.ks_2samp(reference.values, current.values).pvalue)
    points = np.concatenate((reference.values, current.values))
    diff = np.searchsorted(reference.values, points, side="right") / n1
    diff -= np.searchsorted(current.values, points, side="right") / n2
    d = max(float(np.clip(-diff.min(), 0, 1)), float(diff.max()))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    from scipy import stats

    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def anderson_pvalue(reference: NumericColumn, current: NumericColumn) -> float:
    """k-sample Anderson-Darling p-value (scipy's, capped to [0.001, 0.25]); not accelerated."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns whenever it caps the p-value
        return float(stats.anderson_ksamp([reference.values, current.values]).pvalue)


# -- binned statistics (Evidently's get_binned_data) ----------------------------------------------


def sturges_edges(low: float, high: float, size: int, integer: bool) -> np.ndarray:
    """np.histogram_bin_edges(data, 'sturges') from the data's min, max and size alone."""
    # numpy takes the bin width from the data's range, then widens an empty range by 0.5 each way.
    width = (high - low) / (np.log2(size) + 1.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    if width:
        if integer and width < 1:
            width = 1
        bins = int(np.ceil((high - low) / width))
    else:
        bins = 1
    return np.linspace(low, high, bins + 1, endpoint=True)


def histogram_sorted(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram(values, edges)[0] for sorted values: last bin closed, the others half-open."""
    cuts = np.searchsorted(values, edges, side="left")
    cuts[-1] = np.searchsorted(values, edges[-1], side="right")
    return np.diff(cuts)


def _numeric_counts(reference: NumericColumn, current: NumericColumn) -> tuple[np.ndarray, np.ndarray]:
    if reference.nunique() > 20:
        low = min(reference.values[0], current.values[0])
        high = max(reference.values[-1], current.values[-1])
        both_int = reference.integer and current.integer
        edges = sturges_edges(float(low), float(high), reference.size + current.size, both_int)
        return histogram_sorted(reference.values, edges), histogram_sorted(current.values, edges)
    return _aligned_value_counts(reference, current)


def category_counts(reference: CategoricalColumn, current: CategoricalColumn) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both sides over the union of their categories, in one order."""
    keys = list(set(reference.counts) | set(current.counts))
    ref = np.array([reference.counts.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([current.counts.get(k, 0) for k in keys], dtype=np.int64)
    return ref, cur


def binned_shares(reference: Column, current: Column, fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's get_binned_data: shares per Sturges bin (numeric, >20 values) or per value."""
    if isinstance(reference, NumericColumn) and isinstance(current, NumericColumn):
        ref, cur = _numeric_counts(reference, current)
    else:
        assert isinstance(reference, CategoricalColumn) and isinstance(current, CategoricalColumn)
        ref, cur = category_counts(reference, current)
    ref_shares = ref / reference.size
    cur_shares = cur / current.size
    if fill_zeroes:
        _fill_zeroes(ref_shares)
        _fill_zeroes(cur_shares)
    return ref_shares, cur_shares


def _fill_zeroes(shares: np.ndarray) -> None:
    # Evidently's rule: empty bins get a millionth of the smallest share when that share is tiny,
    # else 0.0001, so that the logarithms of PSI and KL stay finite.
    smallest = shares[shares != 0].min()
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001


def rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scipy.special.rel_entr, elementwise x * log(x / y), on the short vectors of shares.

    scipy's kernel takes log1p((x - y) / y) when x / y lies in (0.5, 2), where log(x / y) would
    lose digits, and log(x / y) elsewhere; the same IEEE operations and the same C library
    functions give the same bits. A Python loop: these vectors hold a few dozen values.
    """
    return np.array([_rel_entr(a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)], dtype=np.float64)


def _rel_entr(x: float, y: float) -> float:
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if x > 0 and y > 0:
        ratio = x / y
        if 0.5 < ratio < 2:
            return x * math.log1p((x - y) / y)
        return x * math.log(ratio)
    return 0.0 if x == 0 and y >= 0 else math.inf


def jensenshannon(reference: Column, current: Column) -> float:
    """scipy.spatial.distance.jensenshannon(ref, cur) on the binned shares (natural log)."""
    ref, cur = binned_shares(reference, current, fill_zeroes=False)
    p = ref / np.sum(ref)
    q = cur / np.sum(cur)
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    return float(np.sqrt(js / 2.0))


def psi(reference: Column, current: Column) -> float:
    ref, cur = binned_shares(reference, current, fill_zeroes=True)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def kl_div(reference: Column, current: Column) -> float:
    """scipy.stats.entropy(ref, cur): the relative entropy of the binned shares (natural log)."""
    ref, cur = binned_shares(reference, current, fill_zeroes=True)
    return float(np.sum(rel_entr(ref / np.sum(ref), cur / np.sum(cur))))


def hellinger(reference: Column, current: Column) -> float:
    """Hellinger distance: per category, or over Sturges bins of the distinct values (numeric)."""
    if isinstance(reference, CategoricalColumn) and isinstance(current, CategoricalColumn):
        ref, cur = category_counts(reference, current)
        overlap = float(np.sum(np.sqrt((ref / reference.size) * (cur / current.size))))
    else:
        assert isinstance(reference, NumericColumn) and isinstance(current, NumericColumn)
        keys = np.union1d(reference.unique()[0], current.unique()[0])
        # Evidently bins the distinct values, not the samples.
        both_int = reference.integer and current.integer
        edges = sturges_edges(float(keys[0]), float(keys[-1]), keys.size, both_int)
        widths = np.diff(edges)
        h1 = histogram_sorted(reference.values, edges) / reference.size / widths
        h2 = histogram_sorted(current.values, edges) / current.size / widths
        bin_width = (edges.max() - edges.min()) / (len(edges) - 1)
        overlap = float(np.sum(np.sqrt(h1 * h2) * bin_width))
    return math.sqrt(1 - float(np.clip(overlap, 0, 1)))


# -- tests on categories ----------------------------------------------------------------------------


def chisquare_pvalue(reference: Column, current: Column) -> float:
    """Pearson's chi-square of current counts against reference shares scaled to the current size."""
    ref, cur = _value_counts(reference, current)
    expected = ref * (current.size / reference.size)
    from scipy import stats

    return float(stats.chisquare(cur, expected).pvalue)


def z_pvalue(reference: Column, current: Column) -> float:
    """Two-proportion z-test on 'not the smallest category', Evidently's binary test."""
    ref_keys, cur_keys = _keys(reference), _keys(current)
    if len(ref_keys) == 1 and len(cur_keys) == 1 and ref_keys == cur_keys:
        return 1.0
    first = sorted(ref_keys | cur_keys)[0]
    n1, n2 = reference.size, current.size
    p1 = (n1 - _count(reference, first)) / n1
    p2 = (n2 - _count(current, first)) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    # stats.norm.cdf is ndtr for the standard normal; scipy.special imports in a third of the time.
    from scipy.special import ndtr

    return float(2 * (1 - ndtr(np.abs(z))))


def _aligned_value_counts(reference: NumericColumn, current: NumericColumn) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both sides over the union of their distinct values (sorted)."""
    ref_keys, ref_counts = reference.unique()
    cur_keys, cur_counts = current.unique()
    keys = np.union1d(ref_keys, cur_keys)
    ref = np.zeros(keys.size, dtype=np.int64)
    cur = np.zeros(keys.size, dtype=np.int64)
    ref[np.searchsorted(keys, ref_keys)] = ref_counts
    cur[np.searchsorted(keys, cur_keys)] = cur_counts
    return ref, cur


def _value_counts(reference: Column, current: Column) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(reference, NumericColumn) and isinstance(current, NumericColumn):
        return _aligned_value_counts(reference, current)
    assert isinstance(reference, CategoricalColumn) and isinstance(current, CategoricalColumn)
    return category_counts(reference, current)


def _keys(column: Column) -> set[Hashable]:
    if isinstance(column, CategoricalColumn):
        return {k for k, v in column.counts.items() if v}
    return set(column.unique()[0].tolist())


def _count(column: Column, key: Hashable) -> int:
    if isinstance(column, CategoricalColumn):
        return int(column.counts.get(key, 0))
    values = column.values
    return int(np.searchsorted(values, key, side="right") - np.searchsorted(values, key, side="left"))
