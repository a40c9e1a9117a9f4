"""The model card of a registered version: built from the training run, stored with it in MLflow and Prefect."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops import cards, evaluation
from mlops.config import PipelineConfig
from mlops.contract import DataContract
from mlops.metrics import predict
from mlops.registry import ModelRef, Registry
from mlops.results import artifact_key
from mlops.training import feature_frame
from tasks import io_task_options

_IO = io_task_options(1, 5, 15)


@task(name="compute-slices", cache_policy=NO_CACHE)
def compute_slices(
    pipeline: Pipeline, holdout: pd.DataFrame, contract: DataContract, config: PipelineConfig
) -> evaluation.SliceReport:
    """Metrics per slice of `evaluation.segments`, with counts and bootstrap intervals."""
    predictions = predict(pipeline, feature_frame(holdout, contract), contract.task)
    gated = [config.promotion.primary_metric, *config.gates.min_slice_metrics, *config.gates.max_slice_gap]
    return evaluation.compute_slices(
        holdout, holdout[contract.target].to_numpy(), predictions, contract.task, config.evaluation,
        list(dict.fromkeys(gated)), config.model.seed,
    )


@task(name="check-slice-gates", cache_policy=NO_CACHE)
def check_slice_gates(slices: evaluation.SliceReport, config: PipelineConfig) -> tuple[evaluation.SliceGateResult, ...]:
    """Compare the judged slices with `gates.min_slice_metrics` and `gates.max_slice_gap`."""
    return evaluation.check_slice_gates(slices, config.gates)


@task(name="build-model-card", cache_policy=NO_CACHE)
def build_model_card(
    run_id: str,
    config: PipelineConfig,
    pipeline: Pipeline,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    contract: DataContract,
    result: evaluation.Evaluation,
    slices: evaluation.SliceReport,
    fingerprint: str,
) -> cards.ModelCard:
    """Every computed section of the card (intervals, calibration, explanations), before the version exists."""
    return cards.build_card(
        config=config, version=cards.PENDING_VERSION, run_id=run_id, pipeline=pipeline, train=train,
        holdout=holdout, contract=contract, evaluation=result, slices=slices, fingerprint=fingerprint, tags={},
    )


@task(name="publish-model-card", **_IO)
def publish_model_card(registry: Registry, ref: ModelRef, card: cards.ModelCard) -> cards.ModelCard:
    """The registered version's card, with its tags and behavioural report, as run artifacts (JSON,
    Markdown, HTML) and as a Prefect markdown artifact."""
    behaviour = registry.read_run_json(ref.run_id, evaluation.behaviour.REPORT_ARTIFACT) if ref.run_id else None
    card = card.registered_as(ref.version, ref.tags, behaviour)
    run_id = card.run_id
    registry.log_text(run_id, card.to_json(), cards.CARD_JSON)
    markdown = cards.render_markdown(card)
    registry.log_text(run_id, markdown, cards.CARD_MARKDOWN)
    registry.log_text(run_id, cards.render_html(card), cards.CARD_HTML)
    create_markdown_artifact(
        key=artifact_key("card", card.model_name), markdown=markdown,
        description=f"model card: {card.model_name} v{card.version}",
    )
    return card
