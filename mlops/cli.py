"""The `mlops` command.

This is the composition root: unlike the rest of `mlops/`, it may start Prefect flows, and it
imports them lazily so `mlops --help` and bad-config errors stay fast. Exit codes (README):
0 success, 1 unexpected error, 2 bad usage / config / unreadable data / nothing to deploy or roll
back, 3 data validation failed, 4 quality gate failed, 5 promotion refused (or rolled back),
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from mlops.config import PipelineConfig, Settings, load_config
from mlops.errors import ConfigError, MlopsError, PromotionRefused

EXIT_OK = 0
EXIT_ERROR = 1
# Ended by a signal: 128 + the signal number, as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so every layer unwinds
    the same way: Prefect marks the run Crashed, MLflow runs are closed, the command says so."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class _NoTracebacks(logging.Filter):
    """Keep console log lines to one line each: the readable error comes before any traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _configure_infrastructure(settings: Settings) -> None:
    """Point MLflow and Prefect at the local stack when it runs and nothing else is configured.

    Must run before Prefect is imported: Prefect reads its settings from the environment then.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlops.stack import is_healthy

    if not settings.mlflow_tracking_uri and is_healthy(f"{settings.local_mlflow_url}/health", 0.5):
        os.environ["MLFLOW_TRACKING_URI"] = settings.local_mlflow_url
    if "PREFECT_API_URL" not in os.environ and not _profile_api_url():
        if is_healthy(f"{settings.local_prefect_url}/health", 0.5):
            os.environ["PREFECT_API_URL"] = settings.local_prefect_url
        else:
            # No server: Prefect runs a temporary one. Keep its database in the project home
            # so these runs are there to see once `make up` starts the UI on the same store.
            if "PREFECT_HOME" not in os.environ:
                prefect_home = (settings.home / "prefect").resolve()
                prefect_home.mkdir(parents=True, exist_ok=True)
                os.environ["PREFECT_HOME"] = str(prefect_home)


def _profile_api_url() -> str | None:
    """The API URL from the active Prefect profile file, read without importing Prefect."""
    import tomllib
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        data = tomllib.loads(profiles.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active", "default")
    return data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")


def _quiet_console_tracebacks() -> None:
    from prefect.logging.handlers import APILogHandler

    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler):
                handler.addFilter(_NoTracebacks())


def _fail(err: BaseException, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    """Print the one readable line (and, for unexpected errors, the traceback after it)."""
    code = err.exit_code if isinstance(err, MlopsError) else EXIT_ERROR
    line = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not isinstance(err, MlopsError):
        line = f"{type(err).__name__}: {line}"
    print(f"error: {line}", file=sys.stderr)
    if as_json:
        payload = {"status": "failed", "exit_code": code, "error": line, "error_type": type(err).__name__}
        print(json.dumps({**payload, **(extra or {})}))
    if code == EXIT_ERROR:
        traceback.print_exception(err, file=sys.stderr)
    return code


def cmd_train(args: argparse.Namespace) -> int:
    settings = Settings()
    config = _load_for_run(args).with_data_uri(args.data)
    from prefect.settings import PREFECT_UI_URL

    from flows.train import train

    state, result = _run_flow(train, config=config)
    if isinstance(result, BaseException):
        return _fail(result, args.json, {"model_name": config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return EXIT_OK
    print(result.to_text())
    ui = PREFECT_UI_URL.value()
    if ui and result.flow_run_id:
        print(f"  prefect: {ui}/runs/flow-run/{result.flow_run_id}")
    if not result.run_url:
        from mlops.lineage import redact_uri

        print(f"  mlflow store: {redact_uri(os.environ.get('MLFLOW_TRACKING_URI') or settings.default_tracking_uri())}"
              " (`make up` serves its UI)")
    return EXIT_OK


def _run_flow(flow: Any, **params: Any) -> tuple[Any, Any]:
    """Run a flow in-process; return its final state and its result or the exception that ended it."""
    _quiet_console_tracebacks()
    # Libraries print progress to stdout (MLflow's "View run" links); stdout carries only our
    # result, so everything said during the run goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        state = flow(**params, return_state=True)
    return state, _flow_outcome(state)


def _flow_outcome(state: Any) -> Any:
    """The flow's return value, or the exception that ended it."""
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException) or not state.is_completed():
        return outcome if isinstance(outcome, BaseException) else RuntimeError(state.message or "flow did not complete")
    return outcome


def _load_for_run(args: argparse.Namespace) -> PipelineConfig:
    """The command's config, then MLflow and Prefect pointed at the local stack where it runs.

    A bad config raises ConfigError before anything is imported or contacted; main() prints it.
    """
    config = load_config(args.config)
    _configure_infrastructure(Settings())
    return config


def cmd_deploy(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from prefect.settings import PREFECT_UI_URL

    from flows.deploy import STATUS_REFUSED, STATUS_ROLLED_BACK, deploy

    state, result = _run_flow(deploy, config=config, challenger_version=args.version, holdout_uri=args.holdout)
    if isinstance(result, BaseException):
        return _fail(result, args.json, {"model_name": config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    code = EXIT_OK
    if result.status in (STATUS_REFUSED, STATUS_ROLLED_BACK):
        what = "promotion refused" if result.status == STATUS_REFUSED else "promotion rolled back"
        refused = PromotionRefused(f"{what}: {config.model.name} v{result.candidate_version}: {result.reason}")
        code = refused.exit_code
        print(f"error: {str(refused).splitlines()[0]}", file=sys.stderr)
    if args.json:
        print(json.dumps({**result.to_dict(), "exit_code": code}, default=str))
        return code
    print(result.to_text())
    ui = PREFECT_UI_URL.value()
    if ui and result.flow_run_id:
        print(f"  prefect:    {ui}/runs/flow-run/{result.flow_run_id}")
    return code


def cmd_rollback(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from flows.rollback import rollback

    state, result = _run_flow(rollback, config=config, reason=args.reason)
    if isinstance(result, BaseException):
        return _fail(result, args.json, {"model_name": config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    print(json.dumps(result.to_dict()) if args.json else result.to_text())
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from mlops.audit import render_table
    from mlops.registry import open_registry

    try:
        # Settings are read again: _configure_infrastructure may have pointed MLflow at the local stack.
        records = open_registry(Settings()).read_audit(config.model.name)
    except Exception as err:  # the registry is unreachable or refused: one readable line first
        return _fail(err, args.json)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], default=str))
    else:
        print(render_table(records) if records else f"no audit records for model {config.model.name}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from mlops.registry import open_registry
    from mlops.summary import render_versions, version_rows

    try:
        versions = open_registry(Settings()).list_versions_with_aliases(config.model.name)
    except Exception as err:
        return _fail(err, args.json)
    key_metrics = list(dict.fromkeys([config.promotion.primary_metric, *config.gates.min_metrics, *config.gates.max_metrics]))
    rows = version_rows(versions, key_metrics)
    if args.json:
        print(json.dumps(rows, default=str))
    else:
        print(render_versions(config.model.name, rows, key_metrics))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    config = _load_for_run(args)
    from mlops.serving import run

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.default_tracking_uri()
    from mlops.lineage import redact_uri

    print(f"serving {config.model.name}@champion from {redact_uri(tracking_uri)} on http://{args.host}:{args.port}", file=sys.stderr)
    run(config, tracking_uri, host=args.host, port=args.port)
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from flows.monitor import monitor

    state, result = _run_flow(monitor, config=config, current_uri=args.current, window_hours=args.window_hours)
    if isinstance(result, BaseException):
        return _fail(result, args.json, {"model_name": config.model.name})
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return EXIT_OK
    print(f"{result.status}: {config.model.name} champion v{result.champion_version}, {result.rows} rows of {result.window}")
    print(f"  drift share {result.drift_share:.2f}; drifted: {', '.join(result.drifted_columns) or 'none'}")
    if result.performance:
        p = result.performance
        print(f"  {p['metric']}: live {p['current']:.4f} vs trained {p['reference']:.4f}{' (degraded)' if p['degraded'] else ''}")
    print(f"  event: {result.event or 'none'}; report: {result.report_location or 'n/a'}")
    return EXIT_OK


def cmd_drift_check(args: argparse.Namespace) -> int:
    """Ad-hoc drift check of two datasets; exit 0 with or without drift, 2 on bad input."""
    from mlops.drift import check_datasets as run_drift_check
    from mlops.drift import report_dict

    try:
        report = run_drift_check(args.reference, args.current, args.config)
    except MlopsError as err:
        return _fail(err, args.json)
    if args.json:
        print(json.dumps(report_dict(report)))
        return EXIT_OK
    print(report.summary())
    for c in report.columns:
        print(f"  {c.column:24s} {c.method:14s} {c.statistic:12.6g} threshold {c.threshold:<8g} {'DRIFT' if c.drifted else 'ok'}")
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    config = _load_for_run(args)
    from flows.batch_score import batch_score

    state, result = _run_flow(
        batch_score, config=config, data_uri=args.data, output_uri=args.out, version=args.version, chunk_rows=args.chunk_rows
    )
    if isinstance(result, BaseException):
        return _fail(result, args.json, {"model_name": config.model.name})
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"scored {result.rows} rows ({result.chunks} chunks) with {result.model_name} v{result.model_version} -> {result.output_uri}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from mlops.data import parse_uri, write_frame
    from mlops.simulate import simulate_churn

    try:
        parse_uri(args.out)
        frame = simulate_churn(args.rows, args.drift, seed=args.seed, start=args.start)
        write_frame(frame, args.out)
    except MlopsError as err:
        return _fail(err, args.json)
    if args.json:
        print(json.dumps({"status": "written", "uri": args.out, "rows": len(frame), "drift": args.drift, "seed": args.seed}))
    else:
        print(f"wrote {len(frame)} rows (drift={args.drift}, seed={args.seed}) to {args.out}")
    return EXIT_OK


def cmd_stack(args: argparse.Namespace) -> int:
    from mlops import stack

    settings = Settings()
    try:
        if args.action == "up":
            for service, state in stack.up(settings):
                print(f"{service.name:8s} {state:16s} {'' if state.startswith('skipped') else service.url}".rstrip())
        elif args.action == "down":
            for service, state in stack.down(settings):
                print(f"{service.name:8s} {state}")
        else:
            states = stack.status(settings)
            for service, healthy in states:
                print(f"{service.name:8s} {'up' if healthy else 'down':5s} {service.url}")
            return EXIT_OK if all(h for _, h in states) else 3
    except (RuntimeError, MlopsError) as err:
        return _fail(err, False)
    return EXIT_OK


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _version(value: str) -> str:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a version number such as 3")
    return str(int(value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description="Closed-loop MLOps pipeline on Prefect and MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="validate data, train, evaluate and register a challenger")
    train.add_argument("--config", required=True, help="pipeline config YAML")
    train.add_argument("--data", help="dataset URI overriding dataset.uri (path or s3://)")
    train.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    train.set_defaults(handler=cmd_train)

    deploy = sub.add_parser("deploy", help="compare the challenger with the champion and promote it if it is not worse")
    deploy.add_argument("--config", required=True, help="pipeline config YAML")
    deploy.add_argument("--version", type=_version, help="version to deploy (default: the 'challenger' alias)")
    deploy.add_argument("--holdout", help="labelled data both models are scored on (overrides promotion.holdout_uri)")
    deploy.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    deploy.set_defaults(handler=cmd_deploy)

    rollback = sub.add_parser("rollback", help="move 'champion' back to 'previous-champion'")
    rollback.add_argument("--config", required=True, help="pipeline config YAML")
    rollback.add_argument("--reason", default="manual rollback", help="why (kept in the audit log)")
    rollback.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    rollback.set_defaults(handler=cmd_rollback)

    history = sub.add_parser("history", help="the model's audit log: promotions, refusals, rollbacks")
    history.add_argument("--config", required=True, help="pipeline config YAML")
    history.add_argument("--json", action="store_true", help="print a JSON list, oldest first")
    history.set_defaults(handler=cmd_history)

    models = sub.add_parser("models", help="registered versions with their aliases and key metrics")
    models.add_argument("--config", required=True, help="pipeline config YAML")
    models.add_argument("--json", action="store_true", help="print a JSON list, oldest version first")
    models.set_defaults(handler=cmd_models)

    serve = sub.add_parser("serve", help="serve the champion over HTTP (canary, shadow, prediction log, metrics)")
    serve.add_argument("--config", required=True, help="pipeline config YAML")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=cmd_serve)

    monitor = sub.add_parser("monitor", help="check recent traffic (or a dataset) for drift; emit an event on a breach")
    monitor.add_argument("--config", required=True, help="pipeline config YAML")
    monitor.add_argument("--current", help="data to check instead of the prediction log window (path or s3://)")
    monitor.add_argument("--window-hours", type=float, help="prediction-log window (default: monitoring.window_hours)")
    monitor.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    monitor.set_defaults(handler=cmd_monitor)

    check = sub.add_parser("drift-check", help="compare two datasets for drift on every row (Evidently's decisions)")
    check.add_argument("--reference", required=True, help="reference data (path or s3://) or a stored profile (.npz)")
    check.add_argument("--current", required=True, help="data to check (path or s3://; local parquet is streamed)")
    check.add_argument("--config", help="YAML with drift settings: a pipeline config or its monitoring section")
    check.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    check.set_defaults(handler=cmd_drift_check)

    score = sub.add_parser("score", help="batch-score a dataset with the champion; rows with predictions out")
    score.add_argument("--config", required=True, help="pipeline config YAML (execution: sequential or dask)")
    score.add_argument("--data", required=True, help="dataset to score (path or s3://)")
    score.add_argument("--out", required=True, help="output URI (.csv or .parquet; path or s3://)")
    score.add_argument("--version", type=_version, help="version to score with (default: the 'champion' alias)")
    score.add_argument("--chunk-rows", type=_positive, default=50_000, help="rows per scoring task")
    score.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    score.set_defaults(handler=cmd_score)

    simulate = sub.add_parser("simulate", help="write a synthetic churn batch with controllable drift")
    simulate.add_argument("--rows", type=_positive, required=True)
    simulate.add_argument("--drift", choices=["none", "mild", "strong"], default="none")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--start", default="2025-01-01", help="timestamp of the first event")
    simulate.add_argument("--out", required=True, help="output URI (.csv or .parquet; path or s3://)")
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(handler=cmd_simulate)

    stack = sub.add_parser("stack", help="start, stop or check the local stack: Prefect and MLflow servers, worker (with prefect.yaml deployed), serving app")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=cmd_stack)
    return parser


def _interrupted(err: KeyboardInterrupt, as_json: bool) -> int:
    """Ctrl-C or SIGTERM: one line, the JSON line, and no process of ours left running."""
    # A second signal must not cut the clean-up short with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    terminated = isinstance(err, Terminated)
    code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    line = "terminated (SIGTERM)" if terminated else "interrupted"
    print(f"error: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps({"status": "failed", "exit_code": code, "error": line, "error_type": type(err).__name__}))
    sys.stdout.flush()
    if "prefect" in sys.modules:
        # Ship the run's last logs (its Crashed state is already recorded) while its server is up.
        from prefect.logging.handlers import APILogWorker

        with contextlib.suppress(Exception):
            APILogWorker.drain_all(timeout=5)
    from mlops.stack import stop_descendants

    # The temporary Prefect server (and whatever it started) holds our stdout: a caller reading
    # to the end would wait for it for ever.
    stop_descendants()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return handler(args)
    except ConfigError as err:  # one line and exit 2, from whichever command read the config
        return _fail(err, getattr(args, "json", False))
    except KeyboardInterrupt as err:
        return _interrupted(err, getattr(args, "json", False))


if __name__ == "__main__":
    sys.exit(main())
