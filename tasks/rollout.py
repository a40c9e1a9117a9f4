"""The rollout's contact with the world: the registry's traffic split, the serving app, the prediction log.

`roll_out` runs `mlops.promotion.rollout.drive_rollout` with `ServiceRollout` as its I/O. The
serving app is the one Settings names (MLOPS_SERVING_URL, or the local stack's), as for the
post-deployment watch, so no config can send the API key elsewhere. One task, not one per look:
a rollout looks hundreds of times, and every task run costs Prefect bookkeeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlops import audit
from mlops.config import PipelineConfig, Settings
from mlops.promotion import live, watch
from mlops.promotion.rollout import (
    RolloutOutcome,
    StepEvidence,
    StepVerdict,
    drive_rollout,
    minutes_since,
    start_split,
)
from mlops.promotion.split import TrafficSplit
from mlops.registry import Registry
from mlops.serving.prediction_log import (
    TIMESTAMP,
    join_labels,
    model_log_uri,
    read_labels,
    read_prediction_log,
)
from mlops.text import printable
from tasks.deploy import emit_model_event


class ServiceRollout:
    """RolloutIO over the registry (the split), the serving app's /metrics and the prediction log."""

    def __init__(self, registry: Registry, config: PipelineConfig, actor: str, flow_run_id: str | None,
                 settings: Settings | None = None) -> None:
        settings = settings or Settings()
        self.registry, self.config, self.actor, self.flow_run_id = registry, config, actor, flow_run_id
        self.url, self.api_key = settings.watched_serving_url, settings.serving_api_key()
        self.log_uri = model_log_uri(config.serving.prediction_log_uri, config.model.name)
        self.logger = get_run_logger()
        # Counters at the step's first scrape, per version: health is judged on the step's own traffic.
        self._baseline: tuple[int, dict[str, watch.Counters]] | None = None

    def publish(self, split: TrafficSplit) -> None:
        if self._baseline is None or self._baseline[0] != split.step_index:
            # Counted from before the step's first request: its own traffic, errors included.
            self._baseline = (split.step_index, self._counters(split) or {})
        self.registry.set_rollout_split(self.config.model.name, split)

    def _counters(self, split: TrafficSplit) -> dict[str, watch.Counters] | None:
        text = watch.fetch_metrics(self.url, self.api_key)
        if text is None:
            return None
        versions = [v for v in (split.champion_version, split.version) if v is not None]
        try:
            return {v: watch.parse_counters(text, v, self.config.model.name) for v in versions}
        except ValueError:
            return None

    def _health(self, split: TrafficSplit) -> dict[str, watch.Counters]:
        current = self._counters(split)
        if current is None:  # unreachable: no requests seen, so the step waits (and times out)
            self.logger.warning("serving app at %s not readable; no health evidence this look", self.url)
            return {}
        before = self._baseline[1] if self._baseline is not None else {}
        return {v: watch.increase(before.get(v, watch.Counters()), now) for v, now in current.items()}

    def look(self, split: TrafficSplit) -> StepEvidence:
        health = self._health(split)
        started = pd.Timestamp(split.started_at)
        predictions = read_prediction_log(self.log_uri, since=started)
        labelled = join_labels(predictions, read_labels(self.log_uri, since=started))
        step_log = predictions[predictions[TIMESTAMP] >= pd.Timestamp(split.step_started_at)] \
            if not predictions.empty else predictions
        evidence = live.step_evidence(
            split, minutes_since(split.step_started_at, self.now()),
            health.get(split.champion_version or "", watch.Counters()), health.get(split.version, watch.Counters()),
            labelled, step_log, self.config.model.task,
        )
        self.logger.info("rollout v%s at %s: challenger %d requests, %d errors, %d labelled rows",
                         split.version, split.describe_step(), evidence.challenger.requests,
                         evidence.challenger.errors, evidence.challenger.outcomes.n if evidence.challenger.outcomes else 0)
        return evidence

    def record_step(self, split: TrafficSplit, verdict: StepVerdict, evidence: StepEvidence) -> None:
        record = audit.new_record(
            audit.ACTION_ROLLOUT_STEP, split.model_name, from_version=split.champion_version, to_version=split.version,
            decision=verdict.to_dict(), reason=f"{split.describe_step()}: {verdict.action}: {verdict.reason()}",
            evidence={"step": split.step, "step_index": split.step_index, "steps": split.steps,
                      "step_started_at": split.step_started_at, "rollout_started_at": split.started_at,
                      "live": evidence.to_dict()},
            flow_run_id=self.flow_run_id, actor=self.actor,
        )
        self.registry.append_audit(record)
        emit_model_event.fn(record)
        self.logger.info("rollout step %s: %s (%s)", printable(split.describe_step()), verdict.action, printable(verdict.reason()))

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)


@task(name="roll-out", cache_policy=NO_CACHE)
def roll_out(
    registry: Registry, config: PipelineConfig, version: str, champion: str, actor: str, flow_run_id: str | None,
) -> RolloutOutcome:
    """Move the challenger through `rollout.steps` on live evidence; the split is left for the caller to clear."""
    io = ServiceRollout(registry, config, actor, flow_run_id)
    split = start_split(config.model.name, version, champion, config.rollout.steps, io.now(), flow_run_id)
    return drive_rollout(split, config.rollout, io)


@task(name="end-rollout", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2)
def end_rollout(registry: Registry, model_name: str) -> None:
    """Remove the split: every serving replica routes as its config says again (champion only by default)."""
    registry.set_rollout_split(model_name, None)
