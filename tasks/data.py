"""Load a dataset and fingerprint it."""

from __future__ import annotations

import pandas as pd
from prefect import task

from mlops import data
from tasks import io_task_options


@task(name="load-dataset", **io_task_options())
def load_dataset(uri: str) -> tuple[pd.DataFrame, str]:
    """Read the dataset (local or s3://) and return it with its content fingerprint."""
    frame = data.read_frame(uri)
    return frame, data.fingerprint_frame(frame)
