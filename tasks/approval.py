"""The deploy flow's pause for a person's approval: the Resume form, the wait, the timeout.

Not a task: a pause belongs to the flow run (Prefect pauses the run, not a task). The run shows a
Resume form in the Prefect UI built from `ApprovalInput`, with the evidence as its description
and as a markdown artifact; `mlops approve` / `mlops reject` resume the same run with the same input.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout, NotPausedError
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

from mlops import events
from mlops.errors import NothingToApprove
from mlops.promotion.approval import ApprovalVerdict, describe_answer, lost_race
from mlops.results import artifact_key

# How often the paused run asks the server whether it was resumed.
POLL_SECONDS = 2


class ApprovalInput(RunInput):
    """The Resume form: approve or reject, who you are, and why (all kept in the audit trail)."""

    approve: bool = Field(description="Tick to promote the challenger; leave unticked to reject it")
    reviewer: str = Field(default="", description="Who decides (name or e-mail)")
    reason: str = Field(default="", description="Why; required in practice for a rejection")


def wait_for_approval(
    model: str, candidate: str, champion: str | None, gate_reason: str, evidence_markdown: str, timeout_minutes: float,
) -> ApprovalVerdict:
    """Pause the flow run until a person answers or `timeout_minutes` pass (a refusal)."""
    logger = get_run_logger()
    create_markdown_artifact(key=artifact_key("approval", model), markdown=evidence_markdown,
                             description=f"{model}: waiting for approval")
    # Someone has to know: deployments/notifications.yaml turns this into a message.
    name, resource, payload = events.approval_requested(model, candidate, champion, gate_reason, timeout_minutes)
    emit_event(event=name, resource=resource, payload=payload)
    logger.warning(f"waiting up to {timeout_minutes:g} min for approval: `mlops approve --model {model}` "
                   f"or `mlops reject --model {model} --reason TEXT`, or Resume in the Prefect UI")
    form = ApprovalInput.with_initial_data(description=evidence_markdown, approve=False)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=max(1, round(timeout_minutes * 60)),
                                poll_interval=POLL_SECONDS)
    except FlowPauseTimeout:
        # Prefect leaves the run Paused past its deadline, and a paused run may not start tasks.
        # The refusal still has to be audited by this run, so it is set running again first.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.get_id(), Running(message="approval timed out"), force=True)
        return ApprovalVerdict.timeout(timeout_minutes)
    return ApprovalVerdict.answered(answer.approve, answer.reviewer, answer.reason)


# -- answering from outside the run (`mlops approve` / `mlops reject`) ------------------------------


def _model_of(parameters: dict) -> str | None:
    """The model a deploy run is about: `deploy_model`'s `model`, or the config flow's `config`."""
    if parameters.get("model"):
        return str(parameters["model"])
    config = parameters.get("config") or {}
    return (config.get("model") or {}).get("name") if isinstance(config, dict) else None


def waiting_deploys(model: str) -> list[str]:
    """Ids of the model's deploy runs that are paused for approval, oldest first."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            sort=FlowRunSort.START_TIME_ASC,
        )
    return [str(run.id) for run in runs if _model_of(run.parameters) == model]


def _recorded_answer(run_id: str) -> dict | None:
    """The answer the run was resumed with, or None: Prefect keeps it as the run's `paused-N-response` input."""
    with get_client(sync_client=True) as client:
        inputs = client.filter_flow_run_input(flow_run_id=UUID(run_id), key_prefix="paused-", limit=50, exclude_keys=set())
    answers = [item.decoded_value for item in inputs if item.key.endswith("-response")]
    return answers[-1] if answers and isinstance(answers[-1], dict) else None


def _last_decided(model: str) -> str | None:
    """"flow run R was already approved by X" for the model's latest deploy run, when it was answered."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy"])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=20)
    latest = next((str(run.id) for run in runs if _model_of(run.parameters) == model), None)
    recorded = _recorded_answer(latest) if latest else None
    return f"flow run {latest} was already {describe_answer(recorded)}" if recorded else None


def resume_with_answer(run_id: str, answer: dict) -> None:
    """Resume the paused run with `answer`; NothingToApprove when another answer got there first.

    Two reviewers may both see the run waiting: the server resumes it once, and the loser's call
    fails (the run is no longer paused) or is quietly ignored (the server aborts the transition).
    Either way the answer the run holds decides, so it is read back and named to the loser.
    """
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(UUID(run_id), run_input=answer)
    except FlowPauseTimeout as err:
        raise NothingToApprove(f"flow run {run_id}: the approval request has timed out") from err
    except (NotPausedError, RuntimeError) as err:
        lost = lost_race(answer, _recorded_answer(run_id))
        raise NothingToApprove(f"flow run {run_id} was {lost}" if lost else
                               f"flow run {run_id} is no longer waiting for approval") from err
    lost = lost_race(answer, _recorded_answer(run_id))
    if lost:
        raise NothingToApprove(f"flow run {run_id} was {lost}")


def answer_approval(model: str, approve: bool, reviewer: str, reason: str, run_id: str | None = None) -> str:
    """Resume the model's waiting deploy (or `run_id`) with the answer; returns the run's id."""
    answer = {"approve": approve, "reviewer": reviewer, "reason": reason}
    waiting = waiting_deploys(model)
    if run_id is None:
        if not waiting:
            decided = _last_decided(model)
            raise NothingToApprove(f"no deploy of {model} is waiting for approval" + (f" ({decided})" if decided else ""))
        if len(waiting) > 1:
            raise NothingToApprove(f"{len(waiting)} deploys of {model} are waiting for approval: "
                                   f"name one with --run ({', '.join(waiting)})")
        run_id = waiting[0]
    elif run_id not in waiting:
        recorded = _recorded_answer(run_id) if _is_uuid(run_id) else None
        if recorded:
            raise NothingToApprove(f"flow run {run_id} was already {describe_answer(recorded)}")
        raise NothingToApprove(f"flow run {run_id} is not a deploy of {model} waiting for approval")
    resume_with_answer(run_id, answer)
    return run_id


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
