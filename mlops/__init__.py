"""mlops: the pure domain library of the pipeline (no Prefect imports; see STYLE.md)."""

__version__ = "0.1.0"
