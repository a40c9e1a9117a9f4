"""Steps every catalogue deployment starts with: the model's config, and the per-model locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops.catalogue import ResolvedConfig, load_catalogue, resolve_config
from mlops.config import Settings
from mlops.results import artifact_key
from tasks import io_task_options


@task(name="load-model-config", cache_policy=NO_CACHE)
def load_model_config(model: str, overrides: Any = None) -> ResolvedConfig:
    """The catalogue's config of `model` (read now, not when the deployment was made) with the run's
    overrides applied; which file and content hash were used is logged and kept as an artifact."""
    resolved = resolve_config(load_catalogue(Settings().catalogue_dir), model, overrides)
    get_run_logger().info(f"config of {model}: {resolved.describe()}")
    changed = "\n".join(f"- `{key}`" for key in sorted(resolved.overrides)) or "none"
    create_markdown_artifact(
        key=artifact_key("config", model),
        markdown=f"# Config of {model}\n\n| file | sha256 |\n|---|---|\n| `{resolved.source}` | `{resolved.sha256}` |"
                 f"\n\nOverridden sections: {changed}\n",
        description=f"config file and content hash of {model} for this run",
    )
    return resolved


@task(name="ensure-model-lock", **io_task_options())
def ensure_model_lock(purpose: str, model_name: str) -> str:
    """Name of a Prefect global concurrency limit with one slot, one per model and purpose.

    A deployment's own concurrency limit is shared by every model it runs for: one model's burst
    would cancel or queue another model's runs. A limit named per model keeps them apart.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    name = f"mlops-{purpose}-{model_name}"
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass
    return name


SLOT_LEASE_SECONDS = 60.0


def _slot_taken(err: BaseException) -> bool:
    """Whether a failed acquisition means the slot is held (HTTP 423), not that the server failed."""
    cause = err.__cause__
    response = getattr(cause, "response", None)
    return getattr(response, "status_code", None) == 423


@contextmanager
def model_slot(purpose: str, model_name: str) -> Iterator[bool]:
    """Hold the model's one `purpose` slot for the block, yielding True; False at once when another
    run holds it (nothing waits: a storm of triggers for one model must end, not queue).

    The holder renews a 60 s lease (the server's shortest) while it runs; a worker killed inside
    stops renewing, and the server frees the slot within about 75 s (the lease plus its 15 s
    sweep), before the heartbeat automation has even marked that run Crashed (90 s)."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(ensure_model_lock(purpose, model_name), occupy=1, max_retries=0,
                                                 lease_duration=SLOT_LEASE_SECONDS, strict=True))
        except ConcurrencySlotAcquisitionError as err:
            if not _slot_taken(err):
                raise
            acquired = False
        else:
            acquired = True
        yield acquired
