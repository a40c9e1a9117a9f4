"""Load a dataset and fingerprint it."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import data
from tasks import retry_if_transient


@task(name="load-dataset", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
def load_dataset(uri: str) -> tuple[pd.DataFrame, str]:
    """Read the dataset (local or s3://) and return it with its content fingerprint."""
    frame = data.read_frame(uri)
    return frame, data.fingerprint_frame(frame)
