"""Live evidence of a rollout, from what serving records: its metrics and its prediction log.

Pure: the rollout task hands over a scrape's counters and the log's rows, and gets back the
`StepEvidence` the step judge (`mlops.promotion.rollout.judge_step`) decides on.

- Health (requests, errors, p99) comes from the serving app's Prometheus counters, the same
  series the post-deployment watch reads, counted from the step's first scrape: a step is judged
  on its own traffic.
- Labelled outcomes come from the prediction log joined with its labels, for the rows each
  version answered since the rollout began: the sequential test stays valid over the whole
  sequence, so no evidence is thrown away at a step change. A step still needs its own
  `min_labelled_rows` answered during it before it may pass.
- Shadow agreement pairs each shadow scoring with the answer the caller got for the same
  (request_id, row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.promotion.rollout import ShadowLive, StepEvidence, VersionLive, agreement, score_distance
from mlops.promotion.sequential import Outcomes
from mlops.promotion.split import TrafficSplit
from mlops.promotion.watch import Counters, window_stats
from mlops.serving.logstore import TIMESTAMP
from mlops.serving.metrics import ROUTE_SHADOW

CLASSIFICATION = "classification"


def row_outcomes(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Per-row outcomes, higher is better: 1/0 for a right/wrong class, minus the squared error otherwise."""
    if frame.empty:
        return np.zeros(0)
    if task == CLASSIFICATION:
        # Labels arrive as JSON values and predictions as the model's classes: compare as text.
        return (frame["prediction"].astype(str).to_numpy() == frame["label"].astype(str).to_numpy()).astype(float)
    error = pd.to_numeric(frame["prediction"], errors="coerce") - pd.to_numeric(frame["label"], errors="coerce")
    return -np.square(error.dropna().to_numpy(dtype=float))


def version_outcomes(labelled: pd.DataFrame, version: str, task: str) -> Outcomes:
    """Outcomes of the rows `version` answered (shadow scorings never reach a caller: left out)."""
    if labelled.empty:
        return Outcomes.of([])
    rows = labelled[(labelled["model_version"].astype(str) == str(version)) & (labelled["route"] != ROUTE_SHADOW)]
    return Outcomes.of(row_outcomes(rows, task))


def _score(probabilities: Any, prediction: Any) -> float:
    """One number per scoring for the distance between versions: the last class's probability, else the prediction."""
    if probabilities is not None and len(probabilities):
        return float(probabilities[-1])
    return float(prediction)


def shadow_live(log: pd.DataFrame, challenger_version: str, task: str) -> ShadowLive:
    """Pair the challenger's shadow scorings with the answers callers got for the same rows."""
    if log.empty:
        return ShadowLive(0)
    keys = ["request_id", "row"]
    shadow = log[(log["route"] == ROUTE_SHADOW) & (log["model_version"].astype(str) == str(challenger_version))]
    answered = log[log["route"] != ROUTE_SHADOW]
    pairs = shadow[[*keys, "prediction", "probabilities"]].merge(
        answered[[*keys, "prediction", "probabilities"]], on=keys, suffixes=("_challenger", "_champion"),
    )
    if pairs.empty:
        return ShadowLive(0)
    same = agreement(pairs["prediction_champion"].astype(str), pairs["prediction_challenger"].astype(str)) \
        if task == CLASSIFICATION else None
    try:
        distance = score_distance(
            [_score(p, y) for p, y in zip(pairs["probabilities_champion"], pairs["prediction_champion"], strict=True)],
            [_score(p, y) for p, y in zip(pairs["probabilities_challenger"], pairs["prediction_challenger"], strict=True)],
        )
    except (TypeError, ValueError):  # a class label that is not a number, without probabilities
        distance = None
    return ShadowLive(len(pairs), same, distance)


def version_live(delta: Counters, outcomes: Outcomes | None) -> VersionLive:
    stats = window_stats(delta)
    return VersionLive(int(stats.requests), int(stats.errors), stats.p99_ms, outcomes)


def step_evidence(
    split: TrafficSplit,
    elapsed_minutes: float,
    champion: Counters,
    challenger: Counters,
    labelled: pd.DataFrame,
    step_log: pd.DataFrame,
    task: str,
) -> StepEvidence:
    """Everything the judge needs about one look at the current step.

    `champion`/`challenger`: each version's counter increase since the step began; `labelled`:
    labelled log rows since the rollout began; `step_log`: log rows since the step began.
    """
    champion_outcomes = version_outcomes(labelled, split.champion_version, task) if split.champion_version else None
    challenger_outcomes = version_outcomes(labelled, split.version, task)
    in_step = 0
    if not labelled.empty:
        in_step = int(((labelled[TIMESTAMP] >= pd.Timestamp(split.step_started_at))
                       & (labelled["model_version"].astype(str) == str(split.version))
                       & (labelled["route"] != ROUTE_SHADOW)).sum())
    return StepEvidence(
        step=split.step,
        elapsed_minutes=elapsed_minutes,
        champion=version_live(champion, champion_outcomes),
        challenger=version_live(challenger, challenger_outcomes),
        shadow=shadow_live(step_log, split.version, task) if split.shadow else None,
        challenger_step_labelled=in_step,
    )
