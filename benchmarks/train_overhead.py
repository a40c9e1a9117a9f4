"""Orchestration overhead of the `train` flow against the same library calls in plain Python.

Baseline: `plain_train` below calls the same `mlops` functions in the same order as
flows/train.py, with no Prefect. Both sides train on the same 100,000-row dataset, each
repetition against a fresh MLflow SQLite store (so both always take the first-version path),
alternating flow and plain runs so machine noise hits both alike. The Prefect server is started
before timing: its one-time start is excluded, as the issue asks.

    .venv/bin/python benchmarks/train_overhead.py [--rows 100000] [--repeats 3]

Prints both medians and the ratio flow / plain (target: at most 1.15).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from mlops import contract as contracts  # noqa: E402
from mlops import data, evaluation, lineage, training, validation  # noqa: E402
from mlops.config import PipelineConfig, load_config  # noqa: E402
from mlops.local import stack  # noqa: E402
from mlops.local.simulate import simulate_churn  # noqa: E402
from mlops.registry import Registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def plain_train(config: PipelineConfig, registry: Registry) -> str:
    """The train flow's steps as plain function calls: the baseline."""
    frame = data.read_frame(config.dataset.uri)
    fingerprint = data.fingerprint_frame(frame)
    reference, source = registry.contract_for(config.model.name)
    own = contracts.infer_contract(frame, config.dataset.target, config.dataset.timestamp, config.model.task)
    reference = reference or own
    tags = lineage.lineage_tags(
        data_uri=config.dataset.uri, data_fingerprint=fingerprint, config_hash=config.fingerprint(),
        contract_source=source, flow_run_id=None,
    )
    run_id = registry.start_run(config.experiment_name, f"train-{config.model.name}", tags)
    registry.log_params(run_id, {"estimator": config.model.estimator, "seed": config.model.seed})
    registry.log_json(run_id, config.model_dump(mode="json"), "config/pipeline.json")
    report = validation.validate_frame(frame, reference, config.validation, config.dataset.uri)
    registry.log_json(run_id, report.to_dict(), "validation/report.json")
    registry.log_text(run_id, report.to_markdown(), "validation/report.md")
    assert report.success, report.summary()
    train_frame, holdout = evaluation.split_frame(frame, own, config.split, config.model.seed)
    pipeline = training.fit_pipeline(train_frame, own, config.model)
    result = evaluation.evaluate_model(pipeline, holdout, own, config.model.seed)
    registry.log_metrics(run_id, result.metrics)
    registry.log_files(run_id, result.plots, "plots")
    registry.log_json(run_id, result.feature_importance, "evaluation/feature_importance.json")
    evaluation.enforce_gates(evaluation.check_gates(result.metrics, config.gates))
    ref = registry.register_model(
        run_id, config.model.name, pipeline, own,
        input_example=training.feature_frame(holdout.head(5), own),
        trusted_types=training.skops_trusted_types(pipeline), tags=tags,
    )
    registry.end_run(run_id, True)
    return ref.version


def fresh_store(template: Path, workdir: Path, index: int) -> str:
    home = workdir / f"store-{index}"
    home.mkdir()
    shutil.copy(template, home / "mlflow.db")
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    return os.environ["MLFLOW_TRACKING_URI"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data_uri = data.write_frame(simulate_churn(args.rows, seed=0), str(workdir / "churn.parquet"))
    config = load_config(REPO / "configs" / "churn.yaml").with_data_uri(data_uri)
    # The simulated file holds its features: the flat path is what this measures, not the store's join.
    config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"feature_service": None})})

    from mlflow import MlflowClient

    template = workdir / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()

    service = stack.prefect_service(workdir / "home", "127.0.0.1", stack.free_port())
    proc = stack.start(service, workdir / "home", timeout=180)
    os.environ["PREFECT_API_URL"] = f"{service.url}/api"
    from flows.train import train  # imported after PREFECT_API_URL is set

    timings: dict[str, list[float]] = {"plain": [], "flow": []}
    try:
        # Warm-up (imports, GE and sklearn first-call costs), not timed.
        plain_train(config, Registry(fresh_store(template, workdir, 0)))
        train(config=config)
        for i in range(1, args.repeats + 1):
            for kind in ("plain", "flow"):
                uri = fresh_store(template, workdir, i * 2 + (kind == "flow"))
                started = time.perf_counter()
                if kind == "plain":
                    plain_train(config, Registry(uri))
                else:
                    train(config=config)
                timings[kind].append(time.perf_counter() - started)
                print(f"  run {i} {kind:5s} {timings[kind][-1]:7.2f} s", file=sys.stderr)
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)
        shutil.rmtree(workdir, ignore_errors=True)

    plain, flow = statistics.median(timings["plain"]), statistics.median(timings["flow"])
    ratio = flow / plain
    print(f"train on {args.rows:,} rows, median of {args.repeats} runs each (Prefect server start excluded)")
    print(f"  baseline plain python (same mlops calls): {plain:7.2f} s")
    print(f"  prefect flow `train`:                     {flow:7.2f} s")
    print(f"  ratio flow / plain: {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}%, target <= +15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
