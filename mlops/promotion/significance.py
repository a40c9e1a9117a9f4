"""Paired significance tests of a challenger against the champion on the same rows.

Significance, precisely: both tests are one-sided *superiority* tests. The null hypothesis is "the
challenger is not better than the champion"; it is promoted only when that is rejected at
`promotion.alpha`. So with a significance test configured, a challenger that merely ties (for instance
the same model retrained on the same data) is refused: the test exists to stop promotions on noise.
- `bootstrap`: rows are resampled with replacement `bootstrap_samples` times (seeded by `model.seed`);
  both models are scored on each resample; p = (1 + #{resamples where the challenger is not better})
  / (1 + #{resamples where the metric is defined}).
- `mcnemar`: exact McNemar on per-row correctness (classification only): with b rows only the
  challenger gets right and c rows only the champion gets right, p = P(X >= b) for X ~ Binomial(b + c,
  1/2). The exact test is valid for every b + c and cheap to compute, so the chi-square approximation
  is not used. Note it judges accuracy-like correctness, whatever the primary metric is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlops.config import PromotionConfig
from mlops.errors import DataError
from mlops.metrics import Predictions, higher_is_better, weighted_metric
from mlops.promotion.decision import EPS, validate_policy

# Resamples are scored in blocks so a large holdout never needs a (samples x rows) matrix at once.
_BLOCK_CELLS = 1_000_000


@dataclass(frozen=True)
class PairedEvidence:
    """Result of a paired significance test of challenger against champion on the same rows."""

    method: str  # "bootstrap" or "mcnemar"
    p_value: float | None  # one-sided, H0: the challenger is not better; None when undefined
    observed_improvement: float | None  # oriented: > 0 means the challenger is better
    rows: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_test(truth: np.ndarray, challenger: Predictions, champion: Predictions) -> PairedEvidence:
    """Exact one-sided McNemar test on per-row correctness (H0: the challenger is not more accurate)."""
    from scipy.stats import binomtest

    truth = np.asarray(truth)
    right_new = np.asarray(challenger.pred) == truth
    right_old = np.asarray(champion.pred) == truth
    only_new = int(np.sum(right_new & ~right_old))
    only_old = int(np.sum(~right_new & right_old))
    discordant = only_new + only_old
    # No discordant rows: no evidence either way, which is not evidence the challenger is better.
    p_value = 1.0 if discordant == 0 else float(binomtest(only_new, discordant, 0.5, alternative="greater").pvalue)
    return PairedEvidence(
        method="mcnemar",
        p_value=p_value,
        observed_improvement=(only_new - only_old) / len(truth) if len(truth) else None,
        rows=len(truth),
        details={"only_challenger_right": only_new, "only_champion_right": only_old},
    )


def paired_bootstrap(
    task: str,
    metric: str,
    truth: np.ndarray,
    challenger: Predictions,
    champion: Predictions,
    samples: int,
    seed: int,
) -> PairedEvidence:
    """Paired bootstrap of the primary-metric difference (H0: the challenger is not better)."""
    truth = np.asarray(truth)
    rows = len(truth)
    if rows == 0:
        raise DataError("the promotion holdout is empty")
    sign = 1.0 if higher_is_better(metric) else -1.0
    new_metric = weighted_metric(task, metric, truth, challenger)
    old_metric = weighted_metric(task, metric, truth, champion)
    ones = np.ones((1, rows))
    observed = sign * (new_metric(ones)[0] - old_metric(ones)[0])
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, _BLOCK_CELLS // rows))
    diffs: list[np.ndarray] = []
    done = 0
    while done < samples:
        size = min(block, samples - done)
        # Multinomial counts = how often each row is drawn: the same resample for both models.
        weights = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=size).astype(float)
        diffs.append(sign * (new_metric(weights) - old_metric(weights)))
        done += size
    improvement = np.concatenate(diffs)
    valid = improvement[np.isfinite(improvement)]
    details: dict[str, Any] = {"metric": metric, "samples": samples, "valid_samples": int(valid.size), "seed": seed}
    p_value = None
    # Resamples where the metric is undefined (one class drawn) are dropped; too many and we say nothing.
    if valid.size >= max(1, samples // 2):
        p_value = float((1 + np.sum(valid <= EPS)) / (1 + valid.size))
        low, high = np.percentile(valid, [2.5, 97.5])
        details["ci95_improvement"] = [round(float(low), 6), round(float(high), 6)]
    return PairedEvidence(
        method="bootstrap",
        p_value=p_value,
        observed_improvement=None if not math.isfinite(observed) else round(float(observed), 6),
        rows=rows,
        details=details,
    )


def paired_evidence(
    policy: PromotionConfig,
    task: str,
    truth: np.ndarray,
    challenger: Predictions,
    champion: Predictions,
    seed: int,
) -> PairedEvidence | None:
    """The paired test the policy asks for, or None when it asks for none."""
    validate_policy(policy, task)
    if policy.significance == "none":
        return None
    if policy.significance == "mcnemar":
        return mcnemar_test(truth, challenger, champion)
    return paired_bootstrap(
        task, policy.primary_metric, truth, challenger, champion, policy.bootstrap_samples, seed
    )
