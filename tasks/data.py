"""Load a dataset and fingerprint it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task

from mlops import data, datasets
from mlops.config import DatasetConfig
from tasks import io_task_options


@task(name="load-dataset", **io_task_options())
def load_dataset(uri: str) -> tuple[pd.DataFrame, str]:
    """Read the dataset (local or s3://) and return it with its content fingerprint."""
    frame = data.read_frame(uri)
    return frame, data.fingerprint_frame(frame)


# The same display name as load_dataset: a train run's first task stays "load-dataset" whichever
# way its data comes, so what finds it by name (retry counts, the CLI's signal tests) still does.
@task(name="load-dataset", **io_task_options())
def load_training_data(dataset: DatasetConfig, home: Path) -> datasets.TrainingFrame:
    """The config's training data: the flat file, or its entity frame joined to the feature service."""
    return datasets.read_training_frame(dataset, home)
