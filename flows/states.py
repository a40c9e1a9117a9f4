"""The state a finished run shows in the Prefect UI.

A refusal is an answer, not a failure, so such a run completes; but a green `Completed` for a
refused deploy looked exactly like a promotion in the runs list. Prefect keeps a Completed state's
own name, so these runs end `Completed` named after what happened (the type, and so every
automation and `state_type` check, is unchanged).
"""

from __future__ import annotations

from typing import Any

from prefect.states import Completed

from mlops.drift import INSUFFICIENT_DATA
from mlops.results import STATUS_REFUSED, STATUS_ROLLED_BACK, STATUS_SKIPPED

# A run's result status -> the name of its Completed state; other statuses keep "Completed".
STATE_NAMES = {
    STATUS_REFUSED: "Refused", STATUS_ROLLED_BACK: "RolledBack", STATUS_SKIPPED: "Skipped",
    INSUFFICIENT_DATA: "NoVerdict",  # a monitor window too small to judge: not the same as no drift
}


def completed_as_status(result: Any) -> Any:
    """The flow's return value: `result` itself, or a Completed state named after its status.

    A flow that returns a state it made ends in that state; whoever called the flow (a parent
    flow, the CLI) still gets `result` from it.
    """
    name = STATE_NAMES.get(getattr(result, "status", None))
    if name is None:
        return result
    return Completed(data=result, name=name, message=getattr(result, "reason", None))
