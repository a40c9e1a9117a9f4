"""The always-valid sequential comparison (mSPRT): its formula, its verdicts, and its error rates
checked by simulation (A/A false aborts at most alpha however often it looks; power stated)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.promotion.sequential import (
    Outcomes,
    compare,
    fixed_horizon_rows,
    log_likelihood_ratio,
    stopping_rows,
)

ALPHA = 0.05
LOOKS = list(range(50, 6001, 50))  # a look every 50 labelled rows per version: 120 looks


def _bernoulli(rng: np.random.Generator, p: float, runs: int, rows: int) -> np.ndarray:
    return (rng.random((runs, rows)) < p).astype(np.float32)


def test_the_likelihood_ratio_is_the_normal_mixture_formula():
    d, v, tau = 0.02, 1e-4, 0.05
    expected = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * d**2 / (2 * v * (v + tau**2)))
    assert math.exp(log_likelihood_ratio(d, v, tau)) == pytest.approx(expected)
    # No observed difference is evidence *for* the null: L < 1.
    assert log_likelihood_ratio(0.0, v, tau) < 0


def test_a_clearly_worse_challenger_is_worse_and_a_tie_is_undecided():
    champion = Outcomes.of_counts(2000, 1600)  # 80% correct
    worse = compare(champion, Outcomes.of_counts(2000, 1480), alpha=ALPHA)  # 74%
    assert worse.verdict == "worse" and worse.p_value <= ALPHA and worse.difference == pytest.approx(-0.06)
    assert "challenger worse" in worse.summary()
    better = compare(champion, Outcomes.of_counts(2000, 1720), alpha=ALPHA)  # 86%
    assert better.verdict == "better"
    tie = compare(champion, Outcomes.of_counts(2000, 1600), alpha=ALPHA)
    assert tie.verdict == "undecided" and tie.p_value == 1.0 and "undecided" in tie.summary()


def test_nothing_is_decided_below_the_minimum_rows():
    # 0 of 50 right against 50 of 50 would be decisive, but 50 rows are below min_rows.
    early = compare(Outcomes.of_counts(50, 50), Outcomes.of_counts(50, 0), min_rows=100)
    assert early.verdict == "undecided" and early.p_value < ALPHA
    assert compare(Outcomes.of_counts(0, 0), Outcomes.of_counts(10, 5)).verdict == "undecided"


def test_unequal_traffic_uses_each_versions_own_rows():
    # A 5% canary: the challenger's few rows dominate the uncertainty.
    evidence = compare(Outcomes.of_counts(19000, 15200), Outcomes.of_counts(1000, 740), alpha=ALPHA)
    assert evidence.std_error == pytest.approx(math.sqrt(0.16 / 19000 + 0.74 * 0.26 / 1000))


def test_one_look_agrees_with_the_vectorised_looks():
    rng = np.random.default_rng(5)
    a, b = _bernoulli(rng, 0.8, 200, 3000), _bernoulli(rng, 0.74, 200, 3000)
    stopped, sign = stopping_rows(a, b, LOOKS[:60], ALPHA, 0.05, 100)
    for run in np.flatnonzero(stopped)[:20]:
        n = stopped[run]
        at = compare(Outcomes.of(a[run, :n]), Outcomes.of(b[run, :n]), ALPHA, 0.05, 100)
        before = compare(Outcomes.of(a[run, : n - 50]), Outcomes.of(b[run, : n - 50]), ALPHA, 0.05, 100)
        assert at.verdict == ("worse" if sign[run] < 0 else "better")
        assert before.verdict == "undecided" or n - 50 < 100


def test_aa_false_abort_rate_stays_below_alpha_however_often_it_looks():
    rng = np.random.default_rng(11)
    runs = 1000
    a, b = _bernoulli(rng, 0.8, runs, LOOKS[-1]), _bernoulli(rng, 0.8, runs, LOOKS[-1])
    stopped, sign = stopping_rows(a, b, LOOKS, ALPHA, 0.05, 100)
    false_abort = float(np.mean((stopped > 0) & (sign < 0)))
    any_rejection = float(np.mean(stopped > 0))
    assert false_abort <= ALPHA and any_rejection <= ALPHA, (false_abort, any_rejection)
    # What it protects against: a fixed-horizon z-test peeked at the same 120 times.
    n = np.asarray(LOOKS)
    mean_a, mean_b = np.cumsum(a, 1)[:, n - 1] / n, np.cumsum(b, 1)[:, n - 1] / n
    pooled = (mean_a + mean_b) / 2
    z = (mean_b - mean_a) / np.sqrt(np.maximum(2 * pooled * (1 - pooled) / n, 1e-12))
    peeking = float(np.mean((z < -1.959964).any(axis=1)))
    # One-sided at alpha / 2 per look, yet over 120 looks it aborts more often than alpha in all.
    assert peeking > ALPHA, peeking


def test_power_against_a_challenger_three_points_worse():
    # Stated power: at 80% champion accuracy, a challenger at 77% is aborted within 6,000 labelled
    # rows per version in at least 80% of runs (this simulation gives about 89%; the fixed-horizon
    # test at 80% power needs 2,940 rows per version, looked at once).
    rng = np.random.default_rng(12)
    runs = 500
    a, b = _bernoulli(rng, 0.8, runs, LOOKS[-1]), _bernoulli(rng, 0.77, runs, LOOKS[-1])
    stopped, sign = stopping_rows(a, b, LOOKS, ALPHA, 0.05, 100)
    aborted = (stopped > 0) & (sign < 0)
    assert aborted.mean() >= 0.8, aborted.mean()
    assert not ((stopped > 0) & (sign > 0)).any()  # never called better


def test_fixed_horizon_rows_matches_the_textbook_formula():
    # (1.95996 + 0.84162)^2 * (0.16 + 0.1771) / 0.03^2 = 2939.1
    assert fixed_horizon_rows(0.8, 0.77, 0.05, 0.8) == 2940
    with pytest.raises(ValueError, match="no effect"):
        fixed_horizon_rows(0.8, 0.8, 0.05, 0.8)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        compare(Outcomes.of_counts(10, 5), Outcomes.of_counts(10, 5), alpha=1.5)
    with pytest.raises(ValueError, match="tau"):
        compare(Outcomes.of_counts(10, 5), Outcomes.of_counts(10, 5), tau=0)
