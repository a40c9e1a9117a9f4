"""Retraining: the data it learns from (reference plus labelled live traffic) and its cooldown."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops import audit
from mlops.audit import (
    ACTION_PROMOTED,
    ACTION_REFUSED,
    ACTION_ROLLED_BACK,
    AuditRecord,
    sort_records,
)
from mlops.config import PipelineConfig, SplitConfig
from mlops.contract import MAX_ABS_VALUE, DataContract, infer_contract
from mlops.serving.logstore import TIMESTAMP
from mlops.serving.prediction_log import features_from_log

# -- labelled traffic as training rows -----------------------------------------------------------
# Retraining reads traffic it never vetted. One logged row that breaks the contract (1e308, a label of
# an unknown class) would fail the retrain's validation, and every later one, since the row stays in
# the log: such rows are left out and counted instead, each under the reason that excluded it.


def labelled_since(config: PipelineConfig, now: datetime | None = None) -> datetime:
    """The oldest prediction time a retrain reads labels for: `retrain.labelled_window_days` back."""
    return (now or datetime.now(UTC)) - timedelta(days=config.retrain.labelled_window_days)


def labelled_rows(base: pd.DataFrame, labelled: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame | None:
    """Labelled prediction-log rows in `base`'s columns (not yet typed); None when the log lacks one."""
    if labelled is None or labelled.empty or "label" not in labelled.columns:
        return None
    features = [c for c in base.columns if c not in (config.dataset.target, config.dataset.timestamp)]
    try:
        rows = features_from_log(labelled, [str(c) for c in features])
    except ValueError:
        return None  # the log lacks a column the model needs: train on the reference only
    rows[config.dataset.target] = labelled["label"]
    if config.dataset.timestamp:
        rows[config.dataset.timestamp] = pd.to_datetime(labelled[TIMESTAMP], utc=True).dt.tz_localize(None)
    return rows[list(base.columns)]


def _as_kind(values: pd.Series, kind: str, like: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """(values converted to the column's kind, which non-null values break it, why) for one column."""
    present = values.notna()
    if kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce")
        unusable = present & ~numbers.abs().le(MAX_ABS_VALUE)
        return numbers, unusable, f"not a finite number within ±{MAX_ABS_VALUE:g}"
    if kind == "boolean":
        # A null cannot live in a plain bool column: cast, it would read as False.
        wrong = values.map(lambda v: not isinstance(v, bool | np.bool_)) & present
        return values, wrong | (~present if like.dtype == bool else False), "not true or false"
    if kind == "datetime":
        stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        if getattr(like.dtype, "tz", None) is None:
            stamps = stamps.dt.tz_localize(None)
        return stamps, present & stamps.isna(), "not a date/time"
    return values, present & ~values.map(lambda v: isinstance(v, str)), "not a string"


def drop_contract_breaches(
    rows: pd.DataFrame, contract: DataContract, like: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the contract's every-row checks accept, typed like `like`; rows dropped per reason.

    Validation lets a share of rows miss ranges, category sets and null rates, but not one row of
    the wrong type, a numeric value that is not finite or beyond MAX_ABS_VALUE, a null label or a
    label of a class the contract does not know: those rows go. A row is counted under each reason.
    """
    kept = pd.Series(True, index=rows.index)
    reasons: dict[str, int] = {}
    rows = rows.copy()
    for col in contract.columns:
        if col.name not in rows.columns or col.role == "timestamp":
            continue
        values = rows[col.name]
        if col.role == "target":
            bad = {"null": values.isna()}
            if contract.task == "classification" and contract.classes is not None:
                bad["not a known class"] = values.notna() & ~values.isin(list(contract.classes))
            elif contract.task != "classification":
                values, unusable, why = _as_kind(values, "numeric", like[col.name])
                bad[why] = unusable
        else:
            values, unusable, why = _as_kind(values, col.kind, like[col.name])
            bad = {why: unusable}
        rows[col.name] = values
        for why, mask in bad.items():
            if mask.any():
                reasons[f"{col.name}: {why}"] = int(mask.sum())
                kept &= ~mask
    rows = rows[kept]
    # Cast only columns without nulls: a cast of a null to bool or int would invent a value.
    dtypes = {c: t for c, t in like.dtypes.items() if c in rows.columns and rows[c].notna().all()}
    return rows.astype(dtypes, errors="ignore"), reasons


@dataclass(frozen=True)
class Combined:
    """The retrain's training frame and what of the labelled traffic it holds or left out."""

    frame: pd.DataFrame
    added: int = 0
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


def combine_with_labelled(base: pd.DataFrame, labelled: pd.DataFrame, config: PipelineConfig) -> Combined:
    """`base` plus the newest `retrain.max_labelled_rows` labelled log rows the contract accepts.

    The contract is the one `base` implies (the types validation will hold the rows to); `base`
    alone when the log has no labelled rows or lacks a column the model needs.
    """
    rows = labelled_rows(base, labelled, config)
    if rows is None:
        return Combined(base)
    contract = infer_contract(base, config.dataset.target, config.dataset.timestamp, config.model.task)
    kept, reasons = drop_contract_breaches(rows, contract, base)
    dropped = len(rows) - len(kept)
    if len(kept) > config.retrain.max_labelled_rows:
        newest = labelled.loc[kept.index, TIMESTAMP].sort_values(kind="stable").index[-config.retrain.max_labelled_rows:]
        kept = kept.loc[kept.index.isin(newest)]
    if kept.empty:
        return Combined(base, 0, dropped, reasons)
    return Combined(pd.concat([base, kept], ignore_index=True), len(kept), dropped, reasons)


@dataclass(frozen=True)
class TrainingData:
    """Where a retrain's data is, how much of it is labelled live traffic (its newest rows), and
    what of the labelled traffic was left out: rows breaking the contract (per reason) and log part
    files that could not be parsed."""

    uri: str
    rows: int
    labelled_rows: int
    dropped_rows: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    unreadable_parts: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        """What a retrain result says about its labelled data."""
        return {"labelled_rows": self.labelled_rows, "dropped_rows": self.dropped_rows,
                "drop_reasons": dict(self.drop_reasons), "unreadable_parts": list(self.unreadable_parts)}

    def left_out_note(self) -> str | None:
        """The warning a retrain logs when labelled traffic was left out; None when nothing was."""
        if not (self.dropped_rows or self.unreadable_parts):
            return None
        return (
            f"labelled traffic left out: {self.dropped_rows} row(s) breaking the contract {self.drop_reasons}; "
            f"{len(self.unreadable_parts)} unreadable log part(s) {list(self.unreadable_parts)}"
        )


def plan_training_data(
    config: PipelineConfig, base: pd.DataFrame, labelled: pd.DataFrame | None, skipped: Sequence[str], home: Path,
) -> tuple[TrainingData, pd.DataFrame | None]:
    """What a retrain learns from, and the frame to write to its `uri` first (None: the dataset as it is).

    `labelled` is the prediction log's labelled traffic (None when the retrain does not use it) and
    `skipped` the log part files that could not be read. The traffic joins `base` only when at least
    `retrain.min_labelled_rows` of its rows pass the contract; the combined frame is then a snapshot
    under `home`, so lineage can name and fingerprint the exact data.
    """
    if labelled is None:
        return TrainingData(config.dataset.uri, len(base), 0), None
    combined = combine_with_labelled(base, labelled, config)
    left_out: dict[str, Any] = {"dropped_rows": combined.dropped, "drop_reasons": combined.drop_reasons,
                                "unreadable_parts": tuple(skipped)}
    if combined.added < config.retrain.min_labelled_rows:
        return TrainingData(config.dataset.uri, len(base), 0, **left_out), None
    uri = snapshot_uri(home, config.model.name)
    return TrainingData(uri, len(combined.frame), combined.added, **left_out), combined.frame


def retrain_config(config: PipelineConfig, data: TrainingData) -> PipelineConfig:
    """The config a retrain trains and deploys with: its data, and a holdout of the newest traffic.

    The holdout is the newest `recent_holdout_share` of the labelled traffic, cut by time: the
    champion never saw it, the challenger learns from the older rest, and both are judged on the
    data that drifted. The train flow's split and deploy's promotion holdout cut the same rows.
    Without a timestamp, or with too little labelled traffic, the configured split stays.
    A store-fed model's snapshot is already joined, so its config reads it as a flat file.
    """
    if data.uri != config.dataset.uri and config.dataset.feature_service:
        # The snapshot already holds the joined features (and the log's looked-up ones): joining
        # it to the service again would find every feature twice.
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"feature_service": None})})
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
# Three guards, each for a different moment of a storm. While a retrain of a model runs, its slot
# (a global concurrency limit per model, tasks/catalogue.py) skips the model's other runs at once.
# A run that starts only after that retrain has finished (a queued run, a slow worker) is skipped
# when its event is older than the finished retrain's start: that retrain already saw the drift the
# event reported, whatever the cooldown. And the cooldown covers new events after a retrain. The
# audit trail, which every retrain's deploy writes to, says when retrains started and finished, so
# the guards survive server restarts and do not depend on which worker ran what.
RETRAIN_SOURCE = "retrain"
_FINISHING_ACTIONS = (ACTION_PROMOTED, ACTION_REFUSED)


def _decides(record: AuditRecord) -> bool:
    """A deploy's decision: promoted, refused, or a rollout aborted on live evidence (the champion
    never moved, so that is the deploy's answer); a rollback of a promotion is not one."""
    return record.action in _FINISHING_ACTIONS or (record.action == ACTION_ROLLED_BACK and "rollout" in record.evidence)


def trigger_evidence(trigger: Mapping[str, Any] | None, started: datetime | None = None) -> dict[str, Any]:
    """What the audit trail keeps about why a retrain ran: the event (or 'manual') marked as a
    retrain, and when the retrain started (which later runs of the same storm compare against)."""
    evidence = {**(dict(trigger) if trigger else {"event": "manual"}), "source": RETRAIN_SOURCE}
    if started is not None:
        evidence["retrain_started"] = started.isoformat()
    return evidence


def _retrain_decisions(records: Iterable[AuditRecord]) -> list[AuditRecord]:
    """The model's retrain decisions (promoted or refused by a retrain), newest last."""
    return [r for r in sort_records(records)
            if _decides(r) and (r.evidence.get("trigger") or {}).get("source") == RETRAIN_SOURCE]


def last_retrain_finished(records: Iterable[AuditRecord]) -> datetime | None:
    """When the latest retrain's deploy reached its decision (promoted or refused), if ever."""
    decisions = _retrain_decisions(records)
    return datetime.fromisoformat(decisions[-1].recorded_at) if decisions else None


def _instant(value: Any) -> datetime | None:
    """A timestamp from the audit trail or an event (ISO text, maybe with a space), in UTC; None if absent or unreadable."""
    try:
        stamp = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def answered_by(records: Iterable[AuditRecord], trigger: Mapping[str, Any] | None) -> str | None:
    """Why the event in `trigger` needs no retrain of its own, or None when it does.

    It needs none when a retrain of the model started after the event occurred and has decided:
    that retrain learned from the data the event was about. A run without an event time (a manual
    run) is never answered this way.
    """
    occurred = _instant((trigger or {}).get("occurred"))
    if occurred is None:
        return None
    for record in reversed(_retrain_decisions(records)):
        started = _instant(record.evidence["trigger"].get("retrain_started"))
        if started is not None and started >= occurred:
            version = f" (v{record.to_version})" if record.to_version else ""
            return (f"already answered: the event of {occurred.isoformat(timespec='seconds')} came before the "
                    f"retrain that started at {started.isoformat(timespec='seconds')} and was {record.action}{version}")
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


def skip_reason(records: Iterable[AuditRecord], minutes: float, trigger: Mapping[str, Any] | None,
                now: datetime | None = None) -> str | None:
    """Why a retrain that holds its model's slot must still train nothing, or None when it may train."""
    records = list(records)
    cooldown = cooldown_state(records, minutes, now)
    return cooldown.reason() if cooldown.active else answered_by(records, trigger)


def gate_refusal(
    model_name: str, reason: str, gate_results: Iterable[Any], champion_version: str | None,
    trigger: Mapping[str, Any] | None, flow_run_id: str | None, started: datetime | None = None,
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
        evidence=audit.build_evidence(trigger=trigger_evidence(trigger, started)), flow_run_id=flow_run_id,
        actor=audit.default_actor("retrain flow"),
    )
