"""The `deploy` flow: decide whether the challenger replaces the champion, stage, smoke-test, promote."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.rollback import rollback
from flows.states import completed_as_status
from mlops import audit, promotion
from mlops.cards import card_link
from mlops.catalogue import ConfigOverrides
from mlops.config import PipelineConfig, Settings
from mlops.errors import ChampionMoved
from mlops.evaluation import validate_gates
from mlops.promotion.approval import request_markdown
from mlops.promotion.outcome import Comparison, DeployCase, compared_metrics, holdout_info
from mlops.registry import Registry, open_registry
from mlops.results import STATUS_PROMOTED, STATUS_REFUSED, STATUS_ROLLED_BACK, DeployResult
from mlops.text import printable
from tasks.approval import wait_for_approval
from tasks.catalogue import ensure_model_lock, load_model_config
from tasks.data import load_dataset, load_training_data
from tasks.deploy import (
    clear_staging,
    current_champion,
    cut_promotion_holdout,
    emit_model_event,
    load_version_contract,
    paired_significance,
    promote_version,
    publish_deploy_summary,
    record_audit,
    resolve_candidate,
    score_version,
    slice_metrics,
    smoke_test_staging,
    stage_version,
    watch_deployment,
)
from tasks.rollout import end_rollout, roll_out

# How long a deploy waits for another deploy of the same model to finish its promotion step.
PROMOTION_WAIT_SECONDS = 600


def _flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def _record(
    registry: Registry, action: str, name: str, *, from_version: str | None, to_version: str | None,
    decision: dict[str, Any], reason: str, evidence: dict[str, Any], actor: str,
) -> str:
    """Write the audit record, then announce it; the log comes first because it is the evidence."""
    record = audit.new_record(
        action, name, from_version=from_version, to_version=to_version, decision=decision, reason=reason,
        evidence=evidence, flow_run_id=_flow_run_id(), actor=actor,
    )
    path = record_audit(registry, record)
    emit_model_event(record)
    return path


@flow(name="deploy", log_prints=True)
def deploy(
    config: PipelineConfig,
    challenger_version: str | None = None,
    trigger: dict[str, Any] | None = None,
    holdout_uri: str | None = None,
    watch_seconds: float | None = None,
) -> DeployResult:
    """Compare the challenger with the champion on the same holdout and promote it if it is not worse.

    The challenger (or `challenger_version`) must meet every quality gate and be no worse than the
    champion on `promotion.primary_metric` beyond `promotion.tolerance` (plus the paired test, if
    configured; with `promotion.compare_worst_slice`, on its worst slice of `evaluation.segments` too).
    It is then staged (`staging`), smoke-tested as serving loads it, and made `champion`;
    the old champion becomes `previous-champion`. With `rollback.enabled`, the serving app is watched
    for `watch_seconds` (default `rollback.window_seconds`) and a breach rolls the promotion back.
    A refusal completes the run with status `refused` (its state named `Refused` in the Prefect UI,
    `RolledBack` after a rollback); every outcome is in the model's audit log.

    Args:
        config: The pipeline config; `promotion`, `gates` and `rollback` set the decision.
        challenger_version: Version to deploy (default: the `challenger` alias).
        trigger: What started the deploy (a retrain's event), for the audit trail.
        holdout_uri: Labelled data both models are scored on (default: the dataset's holdout).
        watch_seconds: Post-deployment watch length (default `rollback.window_seconds`; 0 skips it).
    """
    result = _deploy_in_run(config, challenger_version, trigger, holdout_uri, watch_seconds)
    return completed_as_status(result)


def _deploy_in_run(
    config: PipelineConfig,
    challenger_version: str | None,
    trigger: dict[str, Any] | None,
    holdout_uri: str | None,
    watch_seconds: float | None,
) -> DeployResult:
    """The deploy flow's decisions, inside its run: every branch returns the run's result."""
    logger = get_run_logger()
    if holdout_uri:
        config = config.model_copy(
            update={"promotion": config.promotion.model_copy(update={"holdout_uri": holdout_uri})}
        )
    task = config.model.task
    # Config mistakes fail before anything is read or moved.
    validate_gates(config.gates, task)
    promotion.validate_policy(config.promotion, task)
    registry = open_registry()
    name = config.model.name
    actor = audit.default_actor("deploy flow")

    candidate = resolve_candidate(registry, name, challenger_version)
    champion = current_champion(registry, name)
    champion_version = champion.version if champion else None
    case = DeployCase(name, candidate.version, champion_version, _flow_run_id())
    if case.unchanged:
        result = case.unchanged_result()
        publish_deploy_summary(result)
        return result

    blocker = promotion.candidate_blocker(candidate.tags)
    if blocker is not None:
        path = _record(registry, audit.ACTION_REFUSED, name, from_version=champion_version,
                       to_version=candidate.version, decision=case.blocked_decision(blocker), reason=blocker,
                       evidence=audit.build_evidence(version_tags=candidate.tags, trigger=trigger), actor=actor)
        result = case.blocked_result(blocker, path)
        publish_deploy_summary(result)
        return result

    # -- fair comparison on the same rows ---------------------------------------------------------
    contract = load_version_contract(registry, candidate)
    data_uri = config.promotion.holdout_uri or config.dataset.uri
    if config.promotion.holdout_uri:
        frame, _ = load_dataset(data_uri)
    else:
        # The training data as train read it (for a store-fed model, the joined frame): the split
        # then cuts the same holdout rows the challenger was evaluated on.
        frame = load_training_data(config.dataset, Settings().home).frame
    holdout, fingerprint = cut_promotion_holdout(frame, contract, config)
    truth = holdout[contract.target].to_numpy()
    new_predictions, new_metrics = score_version(registry, candidate, holdout)
    old_metrics = paired = slice_reports = None
    if champion is not None:
        old_predictions, old_metrics = score_version(registry, champion, holdout)
        paired = paired_significance(config, truth, new_predictions, old_predictions)
        if config.promotion.compare_worst_slice:
            # Average gains can hide a segment the challenger serves worse: both are sliced on the same rows.
            slice_reports = (slice_metrics(config, holdout, truth, new_predictions),
                             slice_metrics(config, holdout, truth, old_predictions))
    decision = promotion.decide_promotion(
        new_metrics, old_metrics, config.promotion, config.gates, paired, task=task, slice_reports=slice_reports
    )
    comparison = Comparison(
        case, decision, compared_metrics(new_metrics, old_metrics), holdout_info(data_uri, len(holdout), fingerprint),
        paired, candidate.tags, trigger, card=card_link(name, candidate.version, candidate.run_id),
    )

    def refuse(reason: str, smoke_report: dict[str, Any] | None = None) -> DeployResult:
        logger.warning("promotion refused: %s", printable(reason))
        path = _record(registry, audit.ACTION_REFUSED, name, from_version=champion_version,
                       to_version=candidate.version, decision=decision.to_dict(), reason=reason,
                       evidence=comparison.evidence(smoke_report), actor=actor)
        result = comparison.result(STATUS_REFUSED, champion_version, reason, smoke=smoke_report, audit_records=[path])
        publish_deploy_summary(result)
        return result

    if not decision.promote:
        return refuse(decision.reason)

    def aborted(reason: str, smoke_report: dict[str, Any]) -> DeployResult:
        logger.warning("rollout aborted, champion v%s keeps all traffic: %s", champion_version, printable(reason))
        path = _record(registry, audit.ACTION_ROLLED_BACK, name, from_version=candidate.version,
                       to_version=champion_version, decision=decision.to_dict(), reason=reason,
                       evidence=comparison.evidence(smoke_report), actor=actor)
        result = comparison.result(STATUS_ROLLED_BACK, champion_version, reason, smoke=smoke_report, audit_records=[path])
        publish_deploy_summary(result)
        return result

    # -- a person's approval, when the model's policy asks for one -------------------------------
    # Asked before staging, so that no lock or alias is held while nobody answers; the champion is
    # checked again when it moves (ChampionMoved), so a deploy that won meanwhile is not undone.
    # A rollout needs a champion to compare with live; a first champion is promoted as before.
    rolling_out = config.rollout.enabled and champion_version is not None
    ask_before_full = rolling_out and config.approval.at == "before-full"
    approval = None

    def ask_approval() -> str | None:
        """Pause for a person's answer; the refusal's reason, or None when approved."""
        nonlocal approval, comparison
        evidence = request_markdown(name, candidate.version, champion_version, decision.reason, comparison.metrics,
                                    config.approval.timeout_minutes, comparison.rollout)
        approval = wait_for_approval(name, candidate.version, champion_version, decision.reason, evidence,
                                     config.approval.timeout_minutes)
        comparison = comparison.with_approval(approval.to_dict())
        return None if approval.approved else approval.refusal()

    if config.approval.required and not ask_before_full:
        if (refusal := ask_approval()) is not None:
            return refuse(refusal)

    # -- staging and smoke test -----------------------------------------------------------------
    # One deploy of this model at a time from here on, across processes and workers: staging, smoke
    # test and alias moves of two deploys would share the one `staging` alias, and the later would
    # move `champion` on a verdict about a replaced one. The lease frees the slot of a killed worker.
    with concurrency(ensure_model_lock("promote", name), occupy=1, timeout_seconds=PROMOTION_WAIT_SECONDS, strict=True):
        stage_version(registry, name, candidate.version)
        try:
            report = smoke_test_staging(registry, name, holdout, config)
            if not report.passed:
                return refuse(report.reason, report.to_dict())
            if rolling_out:
                # Live evidence, step by step; `champion` has not moved, so an abort only takes the
                # challenger's traffic away (end_rollout below), at once.
                outcome = roll_out(registry, config, candidate.version, champion_version, actor, _flow_run_id())
                comparison = comparison.with_rollout(outcome.to_dict())
                if not outcome.promote:
                    return aborted(outcome.reason, report.to_dict())
                if config.approval.required and ask_before_full and (refusal := ask_approval()) is not None:
                    return refuse(refusal, report.to_dict())
            try:
                previous = promote_version(registry, name, candidate.version, champion_version)
            except ChampionMoved as err:
                # A concurrent deploy won; the refusal goes in the audit trail like any other.
                return refuse(str(err), report.to_dict())
        finally:
            # staging is a waiting room: nothing stays there after the decision, whatever it was;
            # and once champion has moved (or not), the challenger's share of traffic ends.
            if rolling_out:
                end_rollout(registry, name)
            clear_staging(registry, name)
    reason = decision.reason
    if approval is not None:
        reason = f"{reason}; approved by {approval.reviewer}" + (f": {approval.reason}" if approval.reason else "")
    logger.info("promoted v%s: %s", candidate.version, printable(reason))
    paths = [
        _record(registry, audit.ACTION_PROMOTED, name, from_version=previous, to_version=candidate.version,
                decision=decision.to_dict(), reason=reason, evidence=comparison.evidence(report.to_dict()), actor=actor)
    ]

    # -- post-deployment watch --------------------------------------------------------------------
    status, champion_after, verdict = STATUS_PROMOTED, candidate.version, None
    window = config.rollback.window_seconds if watch_seconds is None else watch_seconds
    if config.rollback.enabled and window > 0:
        verdict = watch_deployment(config.model.name, config.rollback, candidate.version, window)
        logger.info("post-deployment watch: %s", printable(verdict.reason))
        if verdict.breached:
            if previous is None:
                # A first champion has nothing to fall back to; removing it would leave serving empty.
                logger.warning("breach on the first champion, nothing to roll back to: %s", printable(verdict.reason))
            else:
                rolled = rollback(config=config, reason=f"post-deployment watch: {verdict.reason}",
                                  trigger={"watch": verdict.to_dict()}, expected_champion=candidate.version)
                paths.append(rolled.audit_record)
                status, champion_after, reason = STATUS_ROLLED_BACK, rolled.to_version, rolled.reason

    result = comparison.result(
        status, champion_after, reason, smoke=report.to_dict(), watch=verdict.to_dict() if verdict else None,
        audit_records=paths,
    )
    publish_deploy_summary(result)
    return result



@flow(name="deploy", log_prints=True)
def deploy_model(
    model: str,
    overrides: ConfigOverrides | None = None,
    challenger_version: str | None = None,
    holdout_uri: str | None = None,
    watch_seconds: float | None = None,
) -> DeployResult:
    """Deploy a catalogue model's challenger: the same run as `deploy`, with the config read from
    the model's file at run time (file and content hash kept as the artifact `config-<model>`).

    Args:
        model: The model: one of the catalogue's (configs/*.yaml) model names.
        overrides: Config keys to change for this run only; keys left empty keep the file's value.
        challenger_version: Version to deploy (default: the `challenger` alias).
        holdout_uri: Labelled data both models are scored on (default: the dataset's holdout).
        watch_seconds: Post-deployment watch length (default `rollback.window_seconds`; 0 skips it).
    """
    resolved = load_model_config(model, overrides)
    return deploy.fn(config=resolved.config, challenger_version=challenger_version, holdout_uri=holdout_uri,
                     watch_seconds=watch_seconds)
