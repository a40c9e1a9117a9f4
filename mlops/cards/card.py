"""The model card: what a registered version is for, what it learned from, how well and for whom it works.

Built by the train flow from what the run already knows (config, data, contract, holdout evaluation,
slices), stored with the version as JSON, Markdown and HTML, and rebuilt by `mlops card` with the
version's current tags, behavioural report and audit trail. Everything here is pure: the caller reads
the registry and passes plain values in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops.audit import AuditRecord, sort_records
from mlops.cards.calibration import calibration_summary, truth_name
from mlops.cards.explain import partial_dependences
from mlops.config import PipelineConfig
from mlops.contract import DataContract
from mlops.evaluation import Evaluation, SliceReport, bootstrap_intervals
from mlops.evaluation.plots import plot_partial_dependence, plot_reliability
from mlops.metrics import DECIMALS, predict
from mlops.training import feature_frame

CARD_SCHEMA = 1
# The version of a card built before registration gives the version its number.
PENDING_VERSION = "pending"
# Partial dependence is drawn for this many of the most important features.
TOP_FEATURES = 3
# Holdout plots of the evaluation that the card shows, by task.
CARD_PLOTS = {
    "classification": ("confusion_matrix.png", "roc_curve.png", "feature_importance.png"),
    "regression": ("residuals.png", "predicted_vs_actual.png", "feature_importance.png"),
}
# Version tags that are evidence of something else (the metrics, the validation) rather than lineage.
_NOT_LINEAGE = ("metrics", "validation")


@dataclass(frozen=True)
class ModelCard:
    """Every section of the card as plain, JSON-ready values; plots are base64 PNG."""

    model_name: str
    version: str
    run_id: str
    task: str
    created_at: str
    about: dict[str, str]
    data: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    primary_metric: str
    slices: dict[str, Any] | None
    calibration: dict[str, Any] | None
    residuals: dict[str, Any] | None
    explanations: dict[str, Any]
    limitations: list[str]
    lineage: dict[str, str] = field(default_factory=dict)
    behaviour: dict[str, Any] | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)
    confidence: float = 0.95
    schema: int = CARD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def slice_report(self) -> SliceReport | None:
        return SliceReport.from_dict(self.slices) if self.slices else None

    def with_registry_state(
        self,
        tags: Mapping[str, str],
        behaviour: Mapping[str, Any] | None,
        audit: Iterable[AuditRecord],
    ) -> ModelCard:
        """The card with the version's current lineage tags, behavioural report and audit records of this version."""
        mine = [r for r in sort_records(audit) if self.version in (r.from_version, r.to_version)]
        return replace(
            self,
            lineage=lineage_of(tags),
            behaviour=dict(behaviour) if behaviour is not None else None,
            audit=[_audit_row(r) for r in mine],
        )


    def registered_as(self, version: str, tags: Mapping[str, str], behaviour: Mapping[str, Any] | None) -> ModelCard:
        """The card of the version registration created: its number, lineage tags and behavioural report."""
        return replace(self, version=str(version)).with_registry_state(tags, behaviour, ())


def lineage_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The version's tags that trace it back to data, code, config and run (audit mirrors left out)."""
    return {k: v for k, v in sorted(tags.items()) if k not in _NOT_LINEAGE and not k.startswith("audit.")}


def _audit_row(record: AuditRecord) -> dict[str, Any]:
    return {
        "recorded_at": record.recorded_at, "action": record.action, "from_version": record.from_version,
        "to_version": record.to_version, "actor": record.actor, "reason": record.reason,
    }


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def describe_data(
    train: pd.DataFrame, holdout: pd.DataFrame, contract: DataContract, source: str, fingerprint: str
) -> dict[str, Any]:
    """Source, fingerprint, rows, time range, target distribution and the contract of the training data."""
    whole = pd.concat([train, holdout])
    target = whole[contract.target]
    if contract.task == "classification":
        shares = target.value_counts(normalize=True, dropna=False).sort_index()
        distribution: dict[str, Any] = {
            "kind": "classes",
            "shares": {truth_name(k): round(float(v), 4) for k, v in shares.items()},
        }
    else:
        values = pd.to_numeric(target, errors="coerce")
        distribution = {
            "kind": "numeric",
            **{k: round(float(v), 4) for k, v in values.describe(percentiles=[0.05, 0.5, 0.95]).items() if k != "count"},
        }
    time_range = None
    if contract.timestamp and contract.timestamp in whole.columns:
        stamps = whole[contract.timestamp]
        time_range = {"column": contract.timestamp, "start": str(stamps.min()), "end": str(stamps.max()),
                      "holdout_start": str(holdout[contract.timestamp].min())}
    return {
        "source": source,
        "fingerprint": fingerprint,
        "rows": {"train": len(train), "holdout": len(holdout), "total": len(whole)},
        "time_range": time_range,
        "target": contract.target,
        "target_distribution": distribution,
        "contract": {
            "numeric_features": contract.numeric_features,
            "categorical_features": contract.categorical_features,
            "timestamp": contract.timestamp,
            "classes": [truth_name(c) for c in contract.classes] if contract.classes else None,
        },
    }


def residual_summary(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Where a regressor's errors lie: bias, spread and the tails of truth minus prediction."""
    residuals = truth.astype(float) - pred.astype(float)
    quantiles = np.quantile(residuals, [0.05, 0.5, 0.95])
    return {
        "mean": round(float(residuals.mean()), DECIMALS), "std": round(float(residuals.std()), DECIMALS),
        "p05": round(float(quantiles[0]), DECIMALS), "median": round(float(quantiles[1]), DECIMALS),
        "p95": round(float(quantiles[2]), DECIMALS),
    }


def derived_limitations(
    declared: Iterable[str], data: Mapping[str, Any], slices: SliceReport | None, calibration: Mapping[str, Any] | None
) -> list[str]:
    """The config's limitations, then those the evidence shows: time range, unjudged slices, miscalibration."""
    notes = list(declared)
    window = data.get("time_range")
    if window:
        notes.append(f"Trained on events from {window['start']} to {window['end']}; later populations may differ.")
    if slices is not None:
        small = [s.label for s in slices.slices if not s.judged]
        if small:
            notes.append(
                f"Slices with fewer than {slices.min_rows} holdout rows are reported, not judged: {', '.join(small)}."
            )
    if calibration is not None and calibration["ece"] > 0.05:
        notes.append(f"Probabilities are miscalibrated (expected calibration error {calibration['ece']:.3f} > 0.05).")
    return notes


def build_card(
    *,
    config: PipelineConfig,
    version: str,
    run_id: str,
    pipeline: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    contract: DataContract,
    evaluation: Evaluation,
    slices: SliceReport | None,
    fingerprint: str,
    tags: Mapping[str, str],
    behaviour: Mapping[str, Any] | None = None,
    audit: Iterable[AuditRecord] = (),
    now: datetime | None = None,
) -> ModelCard:
    """Every section of the card of one registered version, from what its training run knows."""
    task = contract.task
    seed = config.model.seed
    features = feature_frame(holdout, contract)
    truth = holdout[contract.target].to_numpy()
    predictions = predict(pipeline, features, task)
    intervals = bootstrap_intervals(
        task, truth, predictions, evaluation.metrics, config.evaluation.bootstrap_samples,
        config.evaluation.confidence, seed,
    )
    metrics = {
        name: {"value": value, **({"low": intervals[name][0], "high": intervals[name][1]} if name in intervals else {})}
        for name, value in evaluation.metrics.items()
    }
    plots = {name: _b64(evaluation.plots[name]) for name in CARD_PLOTS[task] if name in evaluation.plots}
    calibration = residuals = None
    if task == "classification":
        calibration = calibration_summary(truth, predictions)
        if calibration is not None:
            bins = calibration["bins"]
            plots["reliability.png"] = _b64(plot_reliability(
                [b["predicted"] or 0.0 for b in bins], [b["observed"] or 0.0 for b in bins], [b["count"] for b in bins]
            ))
    else:
        residuals = residual_summary(truth, predictions.pred)
    top = list(evaluation.feature_importance)[:TOP_FEATURES]
    dependence = partial_dependences(pipeline, features, contract, top, seed)
    ylabel = "average predicted probability" if task == "classification" else "average prediction"
    for curve in dependence:
        plots[f"pdp_{curve['feature']}.png"] = _b64(
            plot_partial_dependence(curve["feature"], curve["grid"], curve["average"], ylabel)
        )
    importance = [
        {"feature": name, "mean": mean, "std": evaluation.importance_spread.get(name)}
        for name, mean in evaluation.feature_importance.items()
    ]
    data = describe_data(train, holdout, contract, config.dataset.uri, fingerprint)
    card = ModelCard(
        model_name=config.model.name,
        version=str(version),
        run_id=run_id,
        task=task,
        created_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        about={"purpose": config.card.purpose, "owner": config.card.owner, "intended_use": config.card.intended_use},
        data=data,
        metrics=metrics,
        primary_metric=config.promotion.primary_metric,
        slices=slices.to_dict() if slices is not None and slices.segments else None,
        calibration=calibration,
        residuals=residuals,
        explanations={"importance": importance, "partial_dependence": dependence},
        limitations=derived_limitations(config.card.limitations, data, slices, calibration),
        plots=plots,
        confidence=config.evaluation.confidence,
    )
    return card.with_registry_state(tags, behaviour, audit)
