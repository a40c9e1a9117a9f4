"""The `batch-score` flow: a dataset in, the same rows with the model's predictions out."""

from __future__ import annotations

from prefect import flow, get_run_logger

from mlops import batch, data
from mlops.batch import BatchScoreResult
from mlops.config import PipelineConfig
from mlops.registry import open_registry
from tasks.batch import load_scoring_model, score_chunk, write_predictions
from tasks.data import load_dataset
from tasks.fanout import fan_out


@flow(name="batch-score", log_prints=True)
def batch_score(
    config: PipelineConfig, data_uri: str, output_uri: str, version: str | None = None, chunk_rows: int = 50_000,
) -> BatchScoreResult:
    """Score `data_uri` with the champion (or `version`) chunk by chunk and write the rows with predictions.

    Chunks run as task runs on `execution.task_runner` (sequential, or Dask for large files); the
    output (local path or s3://, .csv or .parquet) appears only once every chunk has been scored.
    """
    logger = get_run_logger()
    data.parse_uri(output_uri)  # a bad output name fails before any scoring
    registry = open_registry()
    ref, model, contract = load_scoring_model(registry, config.model.name, version)
    frame, _ = load_dataset(data_uri)
    chunks = batch.chunk_frame(frame, chunk_rows)
    calls = [{"model": model, "chunk": chunk, "contract": contract, "index": i} for i, chunk in enumerate(chunks)]
    rows = write_predictions(fan_out(score_chunk, calls, config.execution), output_uri)
    logger.info(f"scored {rows} rows in {len(chunks)} chunks with {ref.name} v{ref.version} -> {output_uri}")
    return BatchScoreResult(
        model_name=ref.name, model_version=ref.version, input_uri=data_uri, output_uri=output_uri,
        rows=rows, chunks=len(chunks),
    )
