"""Score the model on the holdout, apply the quality gate and run the behavioural tests."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops import evaluation
from mlops.config import PipelineConfig
from mlops.contract import DataContract


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(
    pipeline: Pipeline, holdout: pd.DataFrame, contract: DataContract, config: PipelineConfig
) -> evaluation.Evaluation:
    """Holdout metrics, plots and feature importance."""
    return evaluation.evaluate_model(pipeline, holdout, contract, config.model.seed)


@task(name="check-quality-gates", cache_policy=NO_CACHE)
def check_quality_gates(
    metrics: dict[str, float], config: PipelineConfig
) -> tuple[evaluation.GateResult, ...]:
    """Compare metrics with the configured bounds (raising is the flow's decision)."""
    return evaluation.check_gates(metrics, config.gates)


@task(name="run-behaviour-tests", cache_policy=NO_CACHE)
def run_behaviour_tests(
    pipeline: Pipeline, holdout: pd.DataFrame, contract: DataContract, config: PipelineConfig
) -> evaluation.BehaviourReport:
    """Invariance, directional and minimum-functionality tests on the holdout (refusing is the flow's decision)."""
    return evaluation.run_behaviour(pipeline, holdout, contract, config.behaviour, config.model.seed)
