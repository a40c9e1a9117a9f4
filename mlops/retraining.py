"""Retraining: the data it learns from (reference plus labelled live traffic) and its cooldown."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mlops import audit
from mlops.audit import ACTION_PROMOTED, ACTION_REFUSED, AuditRecord, sort_records
from mlops.config import PipelineConfig, SplitConfig


def combine_with_labelled(base: pd.DataFrame, labelled: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Append labelled prediction-log rows shaped like `base`; `base` itself when there are none."""
    if labelled is None or labelled.empty or "label" not in labelled.columns:
        return base
    rows = pd.DataFrame(index=labelled.index)
    for column in base.columns:
        if column == config.dataset.target:
            rows[column] = labelled["label"]
        elif column == config.dataset.timestamp:
            rows[column] = pd.to_datetime(labelled["timestamp"], utc=True).dt.tz_localize(None)
        elif column in labelled.columns:
            rows[column] = labelled[column]
        elif f"feature.{column}" in labelled.columns:
            rows[column] = labelled[f"feature.{column}"]
        else:
            return base  # the log lacks a column the model needs: train on the reference only
    rows = rows.astype(base.dtypes.to_dict(), errors="ignore")
    return pd.concat([base, rows], ignore_index=True)


@dataclass(frozen=True)
class TrainingData:
    """Where a retrain's data is, and how much of it is labelled live traffic (its newest rows)."""

    uri: str
    rows: int
    labelled_rows: int


def retrain_config(config: PipelineConfig, data: TrainingData) -> PipelineConfig:
    """The config a retrain trains and deploys with: its data, and a holdout of the newest traffic.

    The holdout is the newest `recent_holdout_share` of the labelled traffic, cut by time: the
    champion never saw it, the challenger learns from the older rest, and both are judged on the
    data that drifted. The train flow's split and deploy's promotion holdout cut the same rows.
    Without a timestamp, or with too little labelled traffic, the configured split stays.
    """
    config = config.with_data_uri(data.uri)
    if data.labelled_rows < config.retrain.min_labelled_rows or not config.dataset.timestamp:
        return config
    held_out = math.ceil(config.retrain.recent_holdout_share * data.labelled_rows)
    # split_frame holds out ceil(test_size * rows) rows: aim half a row low so it rounds to `held_out`.
    split = SplitConfig(method="time", test_size=(held_out - 0.5) / data.rows)
    return config.model_copy(update={"split": split})


def snapshot_uri(home: Path, model_name: str) -> str:
    """Where the assembled training data of one retrain is kept (its fingerprint is in lineage)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return str((home / "retrain" / f"{model_name}-{stamp}.parquet").resolve())


# -- storm protection --------------------------------------------------------------------------------
# Prefect's deployment concurrency limit (1, CANCEL_NEW) stops a burst of events from starting
# parallel retrains. The cooldown covers the time after one has finished: the audit trail, which
# every retrain's deploy writes to, says when that was, so the cooldown survives server restarts and
# does not depend on which worker ran what.
RETRAIN_SOURCE = "retrain"
_FINISHING_ACTIONS = (ACTION_PROMOTED, ACTION_REFUSED)


def trigger_evidence(trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the audit trail keeps about why a retrain ran: the event (or 'manual') marked as a retrain."""
    return {**(dict(trigger) if trigger else {"event": "manual"}), "source": RETRAIN_SOURCE}


def last_retrain_finished(records: Iterable[AuditRecord]) -> datetime | None:
    """When the latest retrain's deploy reached its decision (promoted or refused), if ever."""
    for record in reversed(sort_records(records)):
        trigger = record.evidence.get("trigger") or {}
        if record.action in _FINISHING_ACTIONS and trigger.get("source") == RETRAIN_SOURCE:
            return datetime.fromisoformat(record.recorded_at)
    return None


@dataclass(frozen=True)
class Cooldown:
    """Whether a retrain must wait, and until when."""

    minutes: float
    last_finished: datetime | None
    until: datetime | None

    @property
    def active(self) -> bool:
        return self.until is not None

    def reason(self) -> str:
        if self.until is None or self.last_finished is None:
            return "no retrain within the cooldown"
        return (
            f"cooldown: the last retrain finished at {self.last_finished.isoformat(timespec='seconds')}, "
            f"next one allowed after {self.until.isoformat(timespec='seconds')} ({self.minutes:g} min)"
        )


def cooldown_state(records: Iterable[AuditRecord], minutes: float, now: datetime | None = None) -> Cooldown:
    """Cooldown after the last finished retrain; inactive when `minutes` is 0 or it has passed."""
    last = last_retrain_finished(records)
    if last is None or minutes <= 0:
        return Cooldown(minutes, last, None)
    until = last + timedelta(minutes=minutes)
    return Cooldown(minutes, last, until if (now or datetime.now(UTC)) < until else None)


def gate_refusal(
    model_name: str, reason: str, gate_results: Iterable[Any], champion_version: str | None,
    trigger: Mapping[str, Any] | None, flow_run_id: str | None,
) -> AuditRecord:
    """The audit record of a retrained model that missed a quality gate and so was never registered.

    A retrain answers an event with nobody watching; a model not good enough is one of its results,
    kept in the same trail as deploy's refusals (and it starts the cooldown like them).
    """
    checks = [
        {"name": f"gate:{g.metric}", "passed": bool(g.passed), "detail": f"{g.value} {g.bound} {g.threshold}"}
        for g in gate_results
    ]
    return audit.new_record(
        ACTION_REFUSED, model_name, from_version=champion_version, to_version=None,
        decision={"promote": False, "reason": reason, "checks": checks}, reason=reason,
        evidence=audit.build_evidence(trigger=trigger_evidence(trigger)), flow_run_id=flow_run_id,
        actor=audit.default_actor("retrain flow"),
    )
