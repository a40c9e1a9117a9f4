"""Choose the data contract and validate a dataset against it."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops import contract as contracts
from mlops import validation
from mlops.config import PipelineConfig
from mlops.registry import Registry
from tasks import io_task_options


@task(name="stored-contract", **io_task_options())
def stored_contract(registry: Registry, model_name: str) -> tuple[contracts.DataContract | None, str]:
    """The champion's (else the latest version's) contract, or None before the first version."""
    return registry.contract_for(model_name)


@task(name="infer-contract", cache_policy=NO_CACHE)
def infer_contract(frame: pd.DataFrame, config: PipelineConfig) -> contracts.DataContract:
    """The contract of this data: stored with the new model for the next run to check against."""
    return contracts.infer_contract(
        frame, config.dataset.target, config.dataset.timestamp, config.model.task
    )


@task(name="validate-dataset", cache_policy=NO_CACHE)
def validate_dataset(
    frame: pd.DataFrame, contract: contracts.DataContract, config: PipelineConfig
) -> validation.ValidationReport:
    """Run the expectation suite and publish the result as a markdown artifact."""
    report = validation.validate_frame(frame, contract, config.validation, config.dataset.uri)
    create_markdown_artifact(
        key="data-validation", markdown=report.to_markdown(), description=report.summary()
    )
    return report
