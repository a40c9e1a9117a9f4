"""Hyperparameter search: the grid's candidates, one candidate's cross-validated score, the winner.

Scoring a candidate is a pure function of (data, contract, model config, params): the flow can run
candidates in-process or on Dask workers and get the same numbers, which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import get_scorer_names
from sklearn.model_selection import KFold, ParameterGrid, StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from mlops import training
from mlops.config import ModelConfig, SearchConfig
from mlops.contract import DataContract
from mlops.errors import ConfigError

DEFAULT_SCORING = {"classification": "roc_auc", "regression": "neg_root_mean_squared_error"}


@dataclass(frozen=True)
class CandidateScore:
    """One grid point and its cross-validated scores (higher is better, as scikit-learn scorers are)."""

    index: int
    params: dict[str, Any]
    mean_score: float
    fold_scores: tuple[float, ...]


@dataclass(frozen=True)
class SearchResult:
    """Every candidate's score, in grid order, and the winner."""

    scoring: str
    candidates: tuple[CandidateScore, ...]

    @property
    def best(self) -> CandidateScore:
        # Ties go to the earliest candidate, so the choice never depends on completion order.
        return max(self.candidates, key=lambda c: (c.mean_score, -c.index))

    def tracking_params(self) -> dict[str, Any]:
        """Run params: scorer, candidate count, and the winner's parameters as `search.best.<name>`."""
        return {
            "search.scoring": self.scoring,
            "search.candidates": len(self.candidates),
            **{f"search.best.{k}": v for k, v in self.best.params.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scoring": self.scoring,
            "best_index": self.best.index,
            "best_params": self.best.params,
            "candidates": [
                {"index": c.index, "params": c.params, "mean_score": c.mean_score, "fold_scores": list(c.fold_scores)}
                for c in self.candidates
            ],
        }


def scorer_name(search: SearchConfig, task: str) -> str:
    return search.scoring or DEFAULT_SCORING[task]


def candidates(search: SearchConfig) -> list[dict[str, Any]]:
    """The grid's points in scikit-learn's deterministic order (keys sorted, last key fastest)."""
    return [dict(point) for point in ParameterGrid(search.param_grid)]


def validate_search(search: SearchConfig, model: ModelConfig) -> list[dict[str, Any]]:
    """Check the scorer and every candidate's parameters before any data is read; return the candidates."""
    name = scorer_name(search, model.task)
    if name not in get_scorer_names():
        raise ConfigError(f"model.search.scoring: unknown scikit-learn scorer '{name}'")
    points = candidates(search)
    cls = training.load_estimator_class(model.estimator, model.task)
    for params in points:
        try:
            training.make_estimator(cls, candidate_model(model, params))
        except ConfigError as err:
            raise ConfigError(f"model.search.param_grid: {err}") from None
    return points


def candidate_model(model: ModelConfig, params: dict[str, Any]) -> ModelConfig:
    """The model config with one candidate's parameters laid over `model.params`."""
    return model.model_copy(update={"params": {**model.params, **params}, "search": None})


def _folds(task: str, cv: int, seed: int) -> KFold | StratifiedKFold:
    # Shuffled, seeded folds: every candidate is judged on exactly the same rows.
    kind = StratifiedKFold if task == "classification" else KFold
    return kind(n_splits=cv, shuffle=True, random_state=seed)


def score_candidate(
    frame: pd.DataFrame, contract: DataContract, model: ModelConfig, search: SearchConfig,
    params: dict[str, Any], index: int,
) -> CandidateScore:
    """Cross-validate one candidate on `frame` (the training split, never the holdout)."""
    spec = candidate_model(model, params)
    pipeline = training.build_pipeline(contract, spec)
    features = training.feature_frame(frame, contract)
    # Candidates are the unit of parallelism: an estimator that also spread over every core would
    # fight the other candidates for them. One thread also keeps scores identical wherever it runs.
    with threadpool_limits(limits=1):
        scores = cross_val_score(
            pipeline, features, frame[contract.target], cv=_folds(model.task, search.cv, model.seed),
            scoring=scorer_name(search, model.task), n_jobs=1, error_score="raise",
        )
    return CandidateScore(
        index=index, params=dict(params), mean_score=float(np.mean(scores)),
        fold_scores=tuple(float(s) for s in scores),
    )


def collect(scores: list[CandidateScore], search: SearchConfig, task: str) -> SearchResult:
    """Put candidate scores (in any completion order) back in grid order."""
    if not scores:
        raise ValueError("a search needs at least one scored candidate")
    ordered = tuple(sorted(scores, key=lambda c: c.index))
    return SearchResult(scoring=scorer_name(search, task), candidates=ordered)
