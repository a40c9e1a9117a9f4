"""An always-valid sequential comparison of two versions on live per-row outcomes.

A rollout looks at its evidence again and again (every step, every poll). A fixed-horizon test
looked at that often rejects far more than its alpha; this one does not, however often it is
looked at. It is the mixture sequential probability ratio test (mSPRT) for a difference of means
with a normal mixing distribution (Robbins 1970; the form used by Johari, Pekelis and Walsh,
"Always valid inference", 2017):

- per-row outcomes of each version (1/0 for a correct classification, or minus the squared error
  for a regressor: any "higher is better" per-row score) are summarised by count, mean, variance;
- d = mean(challenger) - mean(champion), with variance v = var_a / n_a + var_b / n_b
  (each version's own rows: canary traffic splits them unequally);
- the mixture likelihood ratio against "no difference", with d ~ N(0, tau^2) under the
  alternative, is  L = sqrt(v / (v + tau^2)) * exp(tau^2 d^2 / (2 v (v + tau^2)));
- H0 is rejected the first time L >= 1 / alpha; by Ville's inequality the chance that this ever
  happens under H0 is at most alpha. The always-valid p-value is min over looks of 1 / L.

The variances are estimated from the rows (plug-in), which is what makes the guarantee
approximate at small counts: `min_rows` per version keeps the test from judging before the
estimate means anything. `tau` is the size of difference the test is tuned to find fastest; the
test stays valid for any tau.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["worse", "better", "undecided"]


@dataclass(frozen=True)
class Outcomes:
    """One version's per-row outcomes, summarised: count, mean and (population) variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Outcomes:
        array = np.asarray(values, dtype=float)
        if array.size == 0:
            return cls(0, 0.0, 0.0)
        return cls(int(array.size), float(array.mean()), float(array.var()))

    @classmethod
    def of_counts(cls, n: int, successes: int) -> Outcomes:
        """Bernoulli outcomes (e.g. correct classifications) from their counts."""
        if n <= 0:
            return cls(0, 0.0, 0.0)
        p = successes / n
        return cls(n, p, p * (1.0 - p))


@dataclass(frozen=True)
class SequentialEvidence:
    """What the test saw at one look, and what it concludes."""

    champion_rows: int
    challenger_rows: int
    difference: float  # challenger - champion: > 0 means the challenger is better
    std_error: float
    likelihood_ratio: float
    p_value: float  # always valid at this look: 1 / L, capped at 1 (callers keep the running minimum)
    alpha: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.verdict == "undecided":
            return (f"undecided after {self.challenger_rows} challenger and {self.champion_rows} champion rows "
                    f"(difference {self.difference:+.4f}, always-valid p {self.p_value:.3g} > {self.alpha:g})")
        return (f"challenger {self.verdict}: difference {self.difference:+.4f} ± {self.std_error:.4f} over "
                f"{self.challenger_rows} challenger and {self.champion_rows} champion rows "
                f"(always-valid p {self.p_value:.3g} <= {self.alpha:g})")


def log_likelihood_ratio(difference: float, variance: float, tau: float) -> float:
    """log L of the normal-mixture SPRT for an observed difference whose estimator has `variance`."""
    if variance <= 0.0:
        # Identical, noiseless outcomes: no difference is no evidence; any difference is certain.
        return 0.0 if difference == 0.0 else math.inf
    t2 = tau * tau
    return 0.5 * math.log(variance / (variance + t2)) + t2 * difference * difference / (2.0 * variance * (variance + t2))


def compare(
    champion: Outcomes, challenger: Outcomes, alpha: float = 0.05, tau: float = 0.05, min_rows: int = 100,
) -> SequentialEvidence:
    """One look at the evidence: is the challenger worse, better, or is it too early to say?

    Below `min_rows` for either version the verdict is `undecided` whatever the numbers say.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if tau <= 0.0:
        raise ValueError(f"tau must be positive, got {tau}")
    difference = challenger.mean - champion.mean
    if min(champion.n, challenger.n) <= 0:
        variance = math.inf
    else:
        variance = champion.variance / champion.n + challenger.variance / challenger.n
    log_lr = 0.0 if math.isinf(variance) else log_likelihood_ratio(difference, variance, tau)
    p_value = 1.0 if log_lr <= 0.0 else math.exp(-log_lr)
    decided = min(champion.n, challenger.n) >= min_rows and p_value <= alpha
    verdict: Verdict = "undecided"
    if decided:
        verdict = "better" if difference > 0 else "worse"
    return SequentialEvidence(
        champion_rows=champion.n, challenger_rows=challenger.n, difference=difference,
        std_error=math.sqrt(variance) if math.isfinite(variance) else math.inf,
        likelihood_ratio=math.exp(min(log_lr, 700.0)), p_value=p_value, alpha=alpha, verdict=verdict,
    )


def stopping_rows(
    champion: np.ndarray, challenger: np.ndarray, looks: Sequence[int], alpha: float, tau: float, min_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised looks over many simulated runs of 0/1 (or real) outcomes, one row per run.

    `champion` and `challenger` are (runs, rows) arrays of per-row outcomes in arrival order; the
    test looks after each count in `looks` (rows per version). Returns, per run, the first look
    count at which the test decided (0 if never) and its verdict sign (-1 worse, +1 better, 0 none).
    Used by the simulation tests and `benchmarks/rollout.py`; `compare` is the one-look rule.
    """
    runs = champion.shape[0]
    stopped = np.zeros(runs, dtype=int)
    sign = np.zeros(runs, dtype=int)
    sum_a, sum_b = np.cumsum(champion, axis=1), np.cumsum(challenger, axis=1)
    sq_a, sq_b = np.cumsum(champion**2, axis=1), np.cumsum(challenger**2, axis=1)
    t2 = tau * tau
    threshold = math.log(1.0 / alpha)
    for n in looks:
        if n < min_rows:
            continue
        mean_a, mean_b = sum_a[:, n - 1] / n, sum_b[:, n - 1] / n
        var_a = np.maximum(sq_a[:, n - 1] / n - mean_a**2, 0.0)
        var_b = np.maximum(sq_b[:, n - 1] / n - mean_b**2, 0.0)
        v = (var_a + var_b) / n
        d = mean_b - mean_a
        with np.errstate(divide="ignore", invalid="ignore"):
            log_lr = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2.0 * v * (v + t2))
        log_lr = np.where(v > 0, log_lr, np.where(d != 0, np.inf, 0.0))
        newly = (stopped == 0) & (log_lr >= threshold)
        stopped[newly] = n
        sign[newly] = np.where(d[newly] > 0, 1, -1)
    return stopped, sign


def fixed_horizon_rows(p_champion: float, p_challenger: float, alpha: float, power: float) -> int:
    """Rows per version a fixed-horizon two-sided two-proportion z-test needs for `power` at `alpha`."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    spread = p_champion * (1 - p_champion) + p_challenger * (1 - p_challenger)
    effect = p_challenger - p_champion
    if effect == 0:
        raise ValueError("no effect to detect: the proportions are equal")
    return math.ceil((z(1 - alpha / 2) + z(power)) ** 2 * spread / effect**2)
