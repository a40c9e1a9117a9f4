"""The `mlops` command, a Typer app.

This is the composition root: unlike the rest of `mlops/`, it may start Prefect flows, and it
imports them lazily so `mlops --help` and bad-config errors stay fast. Exit codes (README):
0 success, 1 unexpected error, 2 bad usage / config / unreadable data / nothing to deploy or roll
back, 3 data validation failed, 4 quality gate failed, 5 promotion refused (or rolled back),
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

from mlops.config import PipelineConfig
from mlops.errors import ConfigError, MlopsError, PromotionRefused
from mlops.progress import Say, progress, quiet_library_warnings, stderr_handlers
from mlops.text import printable

if TYPE_CHECKING:
    from mlops.catalogue import ResolvedConfig
    from mlops.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1
# Ended by a signal: 128 + the signal number, as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
# How long a command waits for Prefect's temporary server (no server running or configured).
TEMPORARY_SERVER_STARTUP_SECONDS = 120


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


def _settings() -> Settings:
    """Infrastructure settings, imported on first use: `drift-check` needs none and starts faster."""
    from mlops.settings import Settings

    return Settings()


def _configure_infrastructure(settings: Settings) -> None:
    """Point MLflow and Prefect at the local stack when it runs and nothing else is configured.

    Must run before Prefect is imported: Prefect reads its settings from the environment then.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlops.local.stack import is_healthy

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
            _allow_slow_temporary_server()


def _allow_slow_temporary_server() -> None:
    """Give Prefect's temporary server time to start on a busy machine.

    Its first start creates and migrates a fresh SQLite database: 14 s on this project's 2-core
    machine when idle, beyond Prefect's 20 s default under load, and the run then fails before it
    begins. A slow start costs seconds; a refused one costs the run. An explicit setting wins.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(TEMPORARY_SERVER_STARTUP_SECONDS))


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

    for handler in stderr_handlers():
        if not isinstance(handler, APILogHandler):
            handler.addFilter(_NoTracebacks())


def _fail(err: BaseException, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    """Print the one readable line (and, for unexpected errors, the traceback after it)."""
    code = err.exit_code if isinstance(err, MlopsError) else EXIT_ERROR
    line = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not isinstance(err, MlopsError):
        line = f"{type(err).__name__}: {line}"
    # Messages quote what people typed (a ref, a reason, a name): escaped, it stays one line and
    # cannot drive the terminal. The JSON line keeps it as given (JSON escapes it).
    print(f"error: {printable(line)}", file=sys.stderr)
    if as_json:
        payload = {"status": "failed", "exit_code": code, "error": line, "error_type": type(err).__name__}
        print(json.dumps({**payload, **(extra or {})}))
    if code == EXIT_ERROR:
        traceback.print_exception(err, file=sys.stderr)
    return code


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
    from mlops.local.stack import stop_descendants

    # The temporary Prefect server (and whatever it started) holds our stdout: a caller reading
    # to the end would wait for it for ever.
    stop_descendants()
    return code


def _run_flow(flow: Any, as_json: bool, **params: Any) -> tuple[Any, Any]:
    """Run a flow in-process; return its final state and its result or the exception that ended it."""
    _quiet_console_tracebacks()
    # Libraries print progress to stdout (MLflow's "View run" links); stdout carries only our
    # result, so everything said during the run goes to stderr (above the spinner when there is one).
    with progress(flow.name, as_json) as say, _task_runs_told(say), contextlib.redirect_stdout(sys.stderr):
        state = flow(**params, return_state=True)
    outcome = _flow_outcome(state)
    if _terminated_during(outcome):
        # A SIGTERM that lands while Prefect is starting a task run can surface as Prefect's own
        # error ("Task run is not set") with the signal only in its context: it is still SIGTERM.
        _mark_crashed(state)
        raise Terminated()
    return state, outcome


def _terminated_during(outcome: Any) -> bool:
    """Whether the exception that ended a run was raised while handling Prefect's TerminationSignal."""
    seen: set[int] = set()
    err = outcome
    while isinstance(err, BaseException) and id(err) not in seen:
        if type(err).__name__ == "TerminationSignal":
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _mark_crashed(state: Any) -> None:
    """Record the run as Crashed (what a SIGTERM makes of it) if Prefect recorded something else."""
    if state.is_crashed():
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:
        client.set_flow_run_state(state.state_details.flow_run_id, Crashed(message="terminated (SIGTERM)"), force=True)


class _TaskRunsTold(logging.Handler):
    """Tells the spinner how many task runs have finished and which one spoke last."""

    def __init__(self, say: Say) -> None:
        super().__init__(logging.INFO)
        self.say = say
        self.finished = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.finished += record.getMessage().startswith("Finished in state")
        self.say(f"{self.finished} task runs finished, last {getattr(record, 'task_run_name', '?')}")


@contextlib.contextmanager
def _task_runs_told(say: Say) -> Iterator[None]:
    logger = logging.getLogger("prefect.task_runs")  # where Prefect logs each task run's end
    handler = _TaskRunsTold(say)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _flow_outcome(state: Any) -> Any:
    """The flow's return value, or the exception that ended it."""
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException) or not state.is_completed():
        return outcome if isinstance(outcome, BaseException) else RuntimeError(state.message or "flow did not complete")
    return outcome


def _resolve(config_path: str | None, model: str | None) -> ResolvedConfig:
    """The config a command runs with: a file (`--config`) or a catalogue model (`--model`)."""
    from mlops.catalogue import file_config, load_catalogue, resolve_config

    if (config_path is None) == (model is None):
        raise ConfigError("give either --config PATH or --model NAME (a model of the catalogue, `mlops catalogue`)")
    if model is not None:
        return resolve_config(load_catalogue(_settings().catalogue_dir), model)
    return file_config(config_path)


def _load_for_run(config_path: str | None, model: str | None = None) -> PipelineConfig:
    """The command's config, then MLflow and Prefect pointed at the local stack where it runs.

    A bad config raises ConfigError before anything is imported or contacted; the command's
    guard prints it.
    """
    return _resolved_for_run(config_path, model).config


def _resolved_for_run(config_path: str | None, model: str | None) -> ResolvedConfig:
    resolved = _resolve(config_path, model)
    _configure_infrastructure(_settings())
    return resolved


class _OneLineErrors(TyperGroup):
    """Typer's group, but a usage error ends as every other failure does: one `error:` line, exit 2.

    Typer draws a box with the usage around it; the README promises one line on stderr.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as err:  # Click's usage errors (exit code 2)
            # Some messages list choices on further lines: one line still, so callers can read it.
            print(f"error: {printable(' '.join(err.format_message().split()))}", file=sys.stderr)
            code = err.exit_code
        if standalone_mode:
            sys.exit(code)
        return code


class _ArgparseTokens(TyperCommand):
    """Two argparse rules the command had, kept where Click differs.

    A unique prefix of an option names it (`--chunk 1000`, `--window 2`), and an option that needs a
    value is not given the next option as its value: `--reason --json` is a usage error, not the
    reason "--json" with the JSON output gone. `--reason=--json` still says it on purpose.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        options = {name: param for param in self.get_params(ctx) if param.param_type_name == "option" for name in param.opts}
        tokens: list[str] = []
        for token in args:
            if token == "--":
                tokens.extend(args[len(tokens):])
                break
            name, equals, value = token.partition("=")
            if name.startswith("--") and name not in options:
                matches = [known for known in options if known.startswith(name)]
                token = f"{matches[0]}{equals}{value}" if len(matches) == 1 else token
            if tokens and tokens[-1] in options and not options[tokens[-1]].is_flag and token.partition("=")[0] in options:
                ctx.fail(f"Option '{tokens[-1]}' requires an argument.")
            tokens.append(token)
        return super().parse_args(ctx, tokens)


app = typer.Typer(
    name="mlops",
    help="Closed-loop MLOps pipeline on Prefect and MLflow.",
    cls=_OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _guarded(command: Callable[..., int]) -> Callable[..., int]:
    """Every command's ending: a ConfigError is its one line (exit 2); Ctrl-C or SIGTERM is `_interrupted`."""

    @functools.wraps(command)
    def run(**params: Any) -> int:
        as_json = params.get("as_json", False)
        signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return command(**params)
        except ConfigError as err:  # one line and exit 2, from whichever command read the config
            return _fail(err, as_json)
        except KeyboardInterrupt as err:  # Typer would end it as a silent exit 130
            return _interrupted(err, as_json)

    return run


def _command(name: str, help: str, example: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a guarded command with its one-line help and an example under it."""

    def register(command: Callable[..., int]) -> Callable[..., int]:
        guarded = _guarded(command)
        app.command(name, cls=_ArgparseTokens, help=help, epilog=f"Example:\n\n{example}")(guarded)
        return guarded

    return register


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise typer.BadParameter("must be at least 1")
    return number


# The most rows `mlops simulate` builds in one go: building a batch peaks near 650 bytes a row
# (the draws, the strings, the frame), so 2,000,000 rows stay under 1.5 GB; an unbounded count ended
# as a 43-line traceback after taking 3.7 GiB. A larger set is several batches, each with its seed.
MAX_SIMULATED_ROWS = 2_000_000
# numpy's seeds and model.seed share this range (a negative seed is refused inside numpy).
MAX_SEED = 2**32 - 1
MAX_PORT = 65_535


def _int_between(low: int, high: int) -> Callable[[str], int]:
    """A parser for an integer option that must lie in [low, high]: refused at the door, one line."""

    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise typer.BadParameter(f"must be between {low:,} and {high:,}")
        return number

    return parse


# A window longer than a century is a typo; a much longer one overflowed the window's timedelta.
MAX_WINDOW_HOURS = 100 * 366 * 24


def _positive_hours(value: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and 0 < number <= MAX_WINDOW_HOURS):
        raise typer.BadParameter(f"must be a number of hours above 0 and at most {MAX_WINDOW_HOURS:,}")
    return number


def _version(value: str) -> str:
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter("must be a version number such as 3")
    return str(int(value))


# The options several commands share, spelled once.
ConfigOption = Annotated[str | None, typer.Option("--config", metavar="PATH", show_default=False,
                                                  help="pipeline config YAML (or --model)")]
ModelOption = Annotated[str | None, typer.Option("--model", metavar="NAME", show_default=False,
                                                 help="a model of the catalogue, configs/*.yaml (or --config)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
JsonListFlag = Annotated[bool, typer.Option("--json", help="print a JSON list, oldest first")]
EXAMPLE_CONFIG = "configs/churn.yaml"


@_command("train", "validate data, train, evaluate and register a challenger",
          f"mlops train --config {EXAMPLE_CONFIG} --data data/churn.parquet --json")
def cmd_train(
    config: ConfigOption = None,
    model: ModelOption = None,
    data: Annotated[str | None, typer.Option("--data", metavar="URI",
                                             help="dataset URI overriding dataset.uri (path or s3://)")] = None,
    as_json: JsonFlag = False,
) -> int:
    settings = _settings()
    resolved = _resolved_for_run(config, model)
    run_config = resolved.config.with_data_uri(data)
    from prefect.settings import PREFECT_UI_URL

    from flows.train import train

    state, result = _run_flow(train, as_json, config=run_config, config_source=resolved.record())
    if isinstance(result, BaseException):
        return _fail(result, as_json, {"model_name": run_config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    if as_json:
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


@_command("deploy", "compare the challenger with the champion and promote it if it is not worse",
          f"mlops deploy --config {EXAMPLE_CONFIG} --version 3")
def cmd_deploy(
    config: ConfigOption = None,
    model: ModelOption = None,
    version: Annotated[str | None, typer.Option("--version", metavar="N", parser=_version, show_default=False,
                                                help="version to deploy (default: the 'challenger' alias)")] = None,
    holdout: Annotated[str | None, typer.Option("--holdout", metavar="URI",
                                                help="labelled data both models are scored on (overrides promotion.holdout_uri)")] = None,
    as_json: JsonFlag = False,
) -> int:
    run_config = _load_for_run(config, model)
    from prefect.settings import PREFECT_UI_URL

    from flows.deploy import deploy
    from mlops.results import STATUS_REFUSED, STATUS_ROLLED_BACK

    state, result = _run_flow(deploy, as_json, config=run_config, challenger_version=version, holdout_uri=holdout)
    if isinstance(result, BaseException):
        return _fail(result, as_json, {"model_name": run_config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    code = EXIT_OK
    if result.status in (STATUS_REFUSED, STATUS_ROLLED_BACK):
        code = PromotionRefused.exit_code
        print(f"error: {result.error_line()}", file=sys.stderr)
    if as_json:
        print(json.dumps({**result.to_dict(), "exit_code": code}, default=str))
        return code
    print(result.to_text())
    ui = PREFECT_UI_URL.value()
    if ui and result.flow_run_id:
        print(f"  prefect:    {ui}/runs/flow-run/{result.flow_run_id}")
    return code


@_command("rollback", "move 'champion' back to 'previous-champion'",
          f"mlops rollback --config {EXAMPLE_CONFIG} --reason 'bad canary'")
def cmd_rollback(
    config: ConfigOption = None,
    model: ModelOption = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="why (kept in the audit log)")] = "manual rollback",
    as_json: JsonFlag = False,
) -> int:
    run_config = _load_for_run(config, model)
    from flows.rollback import rollback

    state, result = _run_flow(rollback, as_json, config=run_config, reason=reason)
    if isinstance(result, BaseException):
        return _fail(result, as_json, {"model_name": run_config.model.name, "flow_run_id": str(state.state_details.flow_run_id)})
    print(json.dumps(result.to_dict()) if as_json else result.to_text())
    return EXIT_OK


def _answer(config: str | None, model: str | None, approve: bool, reviewer: str | None, reason: str,
            run: str | None, as_json: bool) -> int:
    """Resume the model's deploy that waits for approval, with the answer (approve or reject)."""
    run_config = _load_for_run(config, model)
    from mlops.audit import default_actor
    from tasks.approval import answer_approval

    name = run_config.model.name
    who = reviewer or default_actor("mlops CLI")
    try:
        run_id = answer_approval(name, approve, who, reason, run)
    except Exception as err:  # nothing waiting (exit 2), or the Prefect server unreachable (exit 1)
        return _fail(err, as_json)
    verdict = "approved" if approve else "rejected"
    if as_json:
        print(json.dumps({"status": verdict, "model_name": name, "flow_run_id": run_id, "reviewer": who, "reason": reason}))
    else:
        print(printable(f"{verdict} the deploy of {name} waiting in flow run {run_id} (as {who}); it goes on from here"))
    return EXIT_OK


ReviewerOption = Annotated[str | None, typer.Option("--reviewer", metavar="NAME", show_default=False,
                                                    help="who decides (default: user@host)")]
RunOption = Annotated[str | None, typer.Option("--run", metavar="ID", show_default=False,
                                               help="the paused deploy's flow run id (when several wait)")]


def _answer_command(verb: str, approve: bool, help: str, example: str) -> None:
    """Register `approve` or `reject`: the same options, a different answer."""

    def command(
        config: ConfigOption = None,
        model: ModelOption = None,
        reason: Annotated[str, typer.Option("--reason", metavar="TEXT",
                                            help="why (kept in the audit log; required to reject)")] = "",
        reviewer: ReviewerOption = None,
        run: RunOption = None,
        as_json: JsonFlag = False,
    ) -> int:
        if not approve and not reason.strip():
            return _fail(ConfigError("reject needs --reason: the audit trail keeps why a promotion was refused"), as_json)
        return _answer(config, model, approve, reviewer, reason, run, as_json)

    command.__name__ = f"cmd_{verb}"
    _command(verb, help, example)(command)


_answer_command("approve", True, "approve the promotion a deploy of the model is waiting on (approval.required)",
                "mlops approve --model churn-classifier --reason 'reviewed the card'")
_answer_command("reject", False, "reject the promotion a deploy of the model is waiting on; the champion stays",
                "mlops reject --model churn-classifier --reason 'slice gap too wide'")


@_command("history", "the model's audit log: promotions, refusals, rollbacks", f"mlops history --config {EXAMPLE_CONFIG} --json")
def cmd_history(config: ConfigOption = None, model: ModelOption = None, as_json: JsonListFlag = False) -> int:
    run_config = _load_for_run(config, model)
    from mlops.audit import render_table
    from mlops.registry import open_registry

    try:
        # Settings are read again: _configure_infrastructure may have pointed MLflow at the local stack.
        records = open_registry(_settings()).read_audit(run_config.model.name)
    except Exception as err:  # the registry is unreachable or refused: one readable line first
        return _fail(err, as_json)
    if as_json:
        print(json.dumps([r.to_dict() for r in records], default=str))
    else:
        print(render_table(records) if records else f"no audit records for model {run_config.model.name}")
    return EXIT_OK


@_command("rollout", "a progressive rollout's step, traffic split and live comparison: `mlops rollout status`",
          "mlops rollout status --model churn-classifier --json")
def cmd_rollout(
    action: Annotated[str, typer.Argument(metavar="status", help="what to show (status)")],
    config: ConfigOption = None,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> int:
    if action != "status":
        raise ConfigError(f"unknown rollout action '{action}' (known: status)")
    run_config = _load_for_run(config, model)
    from mlops.promotion.status import render_status, rollout_status
    from mlops.registry import open_registry

    try:
        status = rollout_status(open_registry(_settings()), run_config.model.name)
    except Exception as err:  # the registry is unreachable, or its split tag is broken: one line
        return _fail(err, as_json)
    print(json.dumps(status, default=str) if as_json else render_status(status))
    return EXIT_OK


@_command("card", "the model card of a version: purpose, data, metrics, slices, calibration, tests, audit trail",
          "mlops card --model churn-classifier --version 3 --out card.html")
def cmd_card(
    config: ConfigOption = None,
    model: ModelOption = None,
    version: Annotated[str | None, typer.Option("--version", metavar="N", parser=_version, show_default=False,
                                                help="the version (default: the champion, else the newest)")] = None,
    out: Annotated[str | None, typer.Option("--out", metavar="PATH", show_default=False,
                                            help="write the card here: HTML if PATH ends .html, else Markdown "
                                                 "(default: Markdown on stdout)")] = None,
) -> int:
    run_config = _load_for_run(config, model)
    from pathlib import Path

    from mlops.cards import render_html, render_markdown
    from mlops.cards.store import current_card
    from mlops.registry import open_registry

    try:
        card = current_card(open_registry(_settings()), run_config.model.name, version)
        if out is None:
            print(render_markdown(card), end="")
            return EXIT_OK
        text = render_html(card) if out.lower().endswith(".html") else render_markdown(card)
        Path(out).write_text(text, encoding="utf-8")
    except Exception as err:  # unknown version, no card, unwritable path: one readable line first
        return _fail(err, False)
    print(f"model card of {card.model_name} v{card.version} written to {out}", file=sys.stderr)
    return EXIT_OK


@_command("models", "registered versions with their aliases and key metrics", f"mlops models --config {EXAMPLE_CONFIG}")
def cmd_models(
    config: ConfigOption = None,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list, oldest version first")] = False,
) -> int:
    run_config = _load_for_run(config, model)
    from mlops.registry import open_registry
    from mlops.results import render_versions, version_rows

    try:
        versions = open_registry(_settings()).list_versions_with_aliases(run_config.model.name)
    except Exception as err:
        return _fail(err, as_json)
    promotion, gates = run_config.promotion, run_config.gates
    key_metrics = list(dict.fromkeys([promotion.primary_metric, *gates.min_metrics, *gates.max_metrics]))
    rows = version_rows(versions, key_metrics)
    if as_json:
        print(json.dumps(rows, default=str))
    else:
        print(render_versions(run_config.model.name, rows, key_metrics))
    return EXIT_OK


@_command("serve", "serve the champions over HTTP: every catalogue model, or one with --config",
          "mlops serve --catalogue configs --port 8000")
def cmd_serve(
    config: Annotated[str | None, typer.Option("--config", metavar="PATH", show_default=False,
                                               help="serve only the model of this pipeline config YAML")] = None,
    catalogue: Annotated[str | None, typer.Option("--catalogue", metavar="DIR", show_default=False,
                                                  help="serve every model of this directory (default: MLOPS_CATALOGUE, configs)")] = None,
    default_model: Annotated[str | None, typer.Option(
        "--default-model", metavar="NAME", show_default=False,
        help="the model POST /predict and /labels answer for (default: MLOPS_DEFAULT_MODEL, else the config "
             "with serving.default: true, else the only model)")] = None,
    host: Annotated[str, typer.Option("--host", metavar="H")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", parser=_int_between(1, MAX_PORT))] = 8000,
) -> int:
    settings = _settings()
    if config is not None and catalogue is not None:
        raise ConfigError("give --config (one model) or --catalogue (every model), not both")
    from mlops.serving.host import describe_default
    from mlops.serving.server import run, serving_configs

    configs, problems = serving_configs(config, catalogue or settings.catalogue_dir)
    default_model = default_model or settings.default_model
    default_line = describe_default(configs, default_model)  # a default that is not served: exit 2 now
    for problem in problems:
        print(f"warning: {printable(problem)}", file=sys.stderr)
    _configure_infrastructure(settings)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.default_tracking_uri()
    from mlops.lineage import redact_uri

    names = ", ".join(c.model.name for c in configs)
    print(f"serving {names} (champions) from {redact_uri(tracking_uri)} on http://{host}:{port}", file=sys.stderr)
    print(default_line, file=sys.stderr)
    run(configs, tracking_uri, host=host, port=port, default_model=default_model)
    return EXIT_OK


@_command("monitor", "check recent traffic (or a dataset) for drift; emit an event on a breach",
          f"mlops monitor --config {EXAMPLE_CONFIG} --window-hours 24")
def cmd_monitor(
    config: ConfigOption = None,
    model: ModelOption = None,
    current: Annotated[str | None, typer.Option("--current", metavar="URI",
                                                help="data to check instead of the prediction log window (path or s3://)")] = None,
    window_hours: Annotated[float | None, typer.Option("--window-hours", metavar="H", parser=_positive_hours, show_default=False,
                                                       help="prediction-log window (default: monitoring.window_hours)")] = None,
    as_json: JsonFlag = False,
) -> int:
    run_config = _load_for_run(config, model)
    from flows.monitor import monitor

    state, result = _run_flow(monitor, as_json, config=run_config, current_uri=current, window_hours=window_hours)
    if isinstance(result, BaseException):
        return _fail(result, as_json, {"model_name": run_config.model.name})
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        return EXIT_OK
    print(f"{result.status}: {run_config.model.name} champion v{result.champion_version}, {result.rows} rows of {result.window}")
    # Column names come from the data: escaped, they cannot break the line or drive the terminal.
    print(printable(f"  drift share {result.drift_share:.2f}; drifted: {', '.join(result.drifted_columns) or 'none'}"))
    if result.performance:
        p = result.performance
        print(f"  {p['metric']}: live {p['current']:.4f} vs trained {p['reference']:.4f}{' (degraded)' if p['degraded'] else ''}")
    print(f"  event: {result.event or 'none'}; report: {result.report_location or 'n/a'}")
    return EXIT_OK


@_command("drift-check", "compare two datasets for drift on every row (Evidently's decisions)",
          "mlops drift-check --reference data/churn.parquet --current batch.parquet --json")
def cmd_drift_check(
    reference: Annotated[str, typer.Option("--reference", metavar="URI", show_default=False,
                                           help="reference data (path or s3://) or a stored profile (.npz)")],
    current: Annotated[str, typer.Option("--current", metavar="URI", show_default=False,
                                         help="data to check (path or s3://; local parquet is streamed)")],
    config: Annotated[str | None, typer.Option("--config", metavar="PATH",
                                               help="YAML with drift settings: a pipeline config or its monitoring section")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Ad-hoc drift check of two datasets; exit 0 with or without drift, 2 on bad input."""
    from mlops.drift import check_datasets, report_dict

    try:
        with progress(f"drift-check {current}", as_json):
            report = check_datasets(reference, current, config)
    except MlopsError as err:
        return _fail(err, as_json)
    if as_json:
        print(json.dumps(report_dict(report)))
        return EXIT_OK
    print(report.summary())
    for c in report.columns:
        print(f"  {c.column:24s} {c.method:14s} {c.statistic:12.6g} threshold {c.threshold:<8g} {'DRIFT' if c.drifted else 'ok'}")
    return EXIT_OK


@_command("score", "batch-score a dataset with the champion; rows with predictions out",
          f"mlops score --config {EXAMPLE_CONFIG} --data data/churn.parquet --out scored.parquet")
def cmd_score(
    data: Annotated[str, typer.Option("--data", metavar="URI", show_default=False, help="dataset to score (path or s3://)")],
    out: Annotated[str, typer.Option("--out", metavar="URI", show_default=False,
                                     help="output URI (.csv or .parquet; path or s3://)")],
    config: Annotated[str | None, typer.Option("--config", metavar="PATH", show_default=False,
                                               help="pipeline config YAML (execution: sequential or dask; or --model)")] = None,
    model: ModelOption = None,
    version: Annotated[str | None, typer.Option("--version", metavar="N", parser=_version, show_default=False,
                                                help="version to score with (default: the 'champion' alias)")] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", metavar="N", parser=_positive, help="rows per scoring task")] = 50_000,
    as_json: JsonFlag = False,
) -> int:
    run_config = _load_for_run(config, model)
    from flows.batch_score import batch_score

    state, result = _run_flow(
        batch_score, as_json, config=run_config, data_uri=data, output_uri=out, version=version, chunk_rows=chunk_rows
    )
    if isinstance(result, BaseException):
        return _fail(result, as_json, {"model_name": run_config.model.name})
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"scored {result.rows} rows ({result.chunks} chunks) with {result.model_name} v{result.model_version} -> {result.output_uri}")
    return EXIT_OK


@_command("simulate", "write a synthetic churn batch with controllable drift",
          "mlops simulate --rows 5000 --drift strong --seed 1 --out batch.parquet")
def cmd_simulate(
    rows: Annotated[int, typer.Option("--rows", metavar="N", parser=_int_between(1, MAX_SIMULATED_ROWS), show_default=False,
                                      help=f"rows to write (at most {MAX_SIMULATED_ROWS:,})")],
    out: Annotated[str, typer.Option("--out", metavar="URI", show_default=False,
                                     help="output URI (.csv or .parquet; path or s3://)")],
    drift: Annotated[Literal["none", "mild", "strong"], typer.Option("--drift")] = "none",
    seed: Annotated[int, typer.Option("--seed", metavar="S", parser=_int_between(0, MAX_SEED))] = 0,
    start: Annotated[str, typer.Option("--start", help="timestamp of the first event")] = "2025-01-01",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> int:
    from mlops.data import parse_uri, write_frame
    from mlops.local.simulate import simulate_churn

    try:
        parse_uri(out)
        frame = simulate_churn(rows, drift, seed=seed, start=start)
        write_frame(frame, out)
    except MlopsError as err:
        return _fail(err, as_json)
    if as_json:
        print(json.dumps({"status": "written", "uri": out, "rows": len(frame), "drift": drift, "seed": seed}))
    else:
        print(f"wrote {len(frame)} rows (drift={drift}, seed={seed}) to {out}")
    return EXIT_OK


@_command("catalogue", "every model of the catalogue (configs/*.yaml): champion, challenger, last drift check, "
          "last retrain, serving state; refused files on stderr (exit 2)", "mlops catalogue --json")
def cmd_catalogue(as_json: JsonListFlag = False) -> int:
    from mlops.catalogue import load_catalogue
    from mlops.catalogue_status import fetch_ready, model_statuses, render_statuses
    from mlops.registry import open_registry

    settings = _settings()
    catalogue = load_catalogue(settings.catalogue_dir)
    for problem in catalogue.problems:
        print(f"{'error: refused' if problem.refused else 'warning:'} {printable(problem.message)}", file=sys.stderr)
    _configure_infrastructure(settings)
    settings = _settings()
    statuses = model_statuses(catalogue, open_registry(settings),
                              fetch_ready(settings.watched_serving_url, settings.serving_api_key()))
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses]))
    else:
        print(render_statuses(statuses) if statuses else f"no models in {catalogue.directory}")
    return ConfigError.exit_code if catalogue.problems else EXIT_OK


@_command("stack", "start, stop or check the local stack: Prefect and MLflow servers, worker (with prefect.yaml deployed), serving app",
          "mlops stack up")
def cmd_stack(action: Annotated[Literal["up", "down", "status"], typer.Argument(show_default=False)]) -> int:
    from mlops.local import stack

    settings = _settings()
    try:
        if action == "up":
            notes: list[str] = []
            for service, state in stack.up(settings, notes=notes):
                print(f"{service.name:8s} {state:16s} {'' if state.startswith('skipped') else service.url}".rstrip())
            for line in notes:
                print(line)
        elif action == "down":
            for service, state in stack.down(settings):
                print(f"{service.name:8s} {state}")
        else:
            states = stack.status(settings)
            for service, state in states:
                taken = " (port in use by a process that is not this stack's)" if state == stack.STATE_NOT_OURS else ""
                print(f"{service.name:8s} {state:5s} {service.url}{taken}")
            return EXIT_OK if all(state == stack.STATE_UP for _, state in states) else 3
    except (RuntimeError, MlopsError) as err:
        return _fail(err, False)
    return EXIT_OK


ViewOption = Annotated[list[str] | None, typer.Option("--view", metavar="NAME", show_default=False,
                                                     help="a feature view (repeatable; default: all)")]
FeatureRepoOption = Annotated[str, typer.Option("--repo", metavar="PATH", help="the Feast repository")]


@_command("features", "the feature store (Feast): register the repository's definitions, load the "
          "online store incrementally, or show each view's last materialization",
          "mlops features materialize --json")
def cmd_features(
    action: Annotated[Literal["apply", "materialize", "status"], typer.Argument(show_default=False)],
    view: ViewOption = None,
    repo: FeatureRepoOption = "features",
    as_json: JsonFlag = False,
) -> int:
    from mlops import features

    try:
        store = features.open_store(repo, _settings().home)
        if action == "apply":
            applied = features.apply_repo(store, repo)
            if as_json:
                print(json.dumps({"status": "ok", "action": action, **applied}))
            else:
                for kind, names in applied.items():
                    print(f"{kind.replace('_', ' '):16s} {', '.join(names) or '-'}")
            return EXIT_OK
        statuses = features.materialize(store, views=view) if action == "materialize" else features.status(store, view)
    except MlopsError as err:
        return _fail(err, as_json)
    if as_json:
        print(json.dumps({"status": "ok", "action": action, "views": [s.to_dict() for s in statuses]}))
    else:
        print(features.render_markdown(statuses), end="")
    return EXIT_OK


@_command("ci", "train and check the catalogue models a change touches, in a throwaway store; one report",
          "mlops ci --changed-since origin/main --out model-ci.md")
def cmd_ci(
    changed_since: Annotated[str | None, typer.Option("--changed-since", metavar="REF", show_default=False,
                                                      help="only models whose config (or features, if store-fed) changed since this git ref")] = None,
    sample_rows: Annotated[int | None, typer.Option("--sample-rows", metavar="N", parser=_positive, show_default=False,
                                                    help="train on a seeded sample of N rows of each dataset")] = None,
    out: Annotated[str | None, typer.Option("--out", metavar="PATH", show_default=False,
                                            help="also write the Markdown report here")] = None,
    as_json: JsonFlag = False,
) -> int:
    import tempfile
    from pathlib import Path

    from mlops import ci
    from mlops.catalogue import load_catalogue

    settings = _settings()
    catalogue = load_catalogue(settings.catalogue_dir)
    changed = None
    if changed_since is not None:
        changed = ci.changed_files(changed_since, [settings.catalogue_dir, settings.feature_repo])
    selection = ci.select_models(catalogue, changed, settings.feature_repo)
    checks = [
        ci.ModelCheck(name=path.stem, config_file=_shown_path(path), status=ci.STATUS_INVALID,
                      exit_code=ConfigError.exit_code, error=message)
        for path, message in selection.refused
    ]
    entries = [catalogue.entries[name] for name in selection.models]
    champions, no_registry = _ci_champions(settings, [entry.name for entry in entries])
    if entries:
        # Everything the runs write (MLflow store and artifacts, Prefect's database, the feature
        # store's local state) goes to a directory removed afterwards: CI never touches a real registry.
        with tempfile.TemporaryDirectory(prefix="mlops-ci-", ignore_cleanup_errors=True) as tmp:
            _isolate_for_ci(Path(tmp))
            checks += [_ci_check(entry, sample_rows, Path(tmp), champions.get(entry.name), no_registry, as_json)
                       for entry in entries]
    report = ci.CiReport(changed_since, checks, selection.unchanged, [_shown_path(p) for p in selection.unchecked])
    for check in checks:
        if check.exit_code:
            print(f"error: {check.name}: {printable(check.error)}", file=sys.stderr)
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
    markdown = report.to_markdown()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(markdown)
    print(report.to_json() if as_json else markdown, end="\n" if as_json else "")
    return report.exit_code


def _shown_path(path: Any) -> str:
    """A path relative to the working directory when it is under it (as the report shows files)."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _ci_champions(settings: Settings, names: list[str]) -> tuple[dict[str, Any], str | None]:
    """Each model's champion in the registry the other commands would use, if one is reachable.

    Read before the run is pointed at its throwaway store; read only. The second value says why
    there is no comparison at all (no registry reachable), else None.
    """
    from mlops import ci
    from mlops.lineage import redact_uri
    from mlops.local.stack import is_healthy

    uri = settings.mlflow_tracking_uri
    if not uri:
        if is_healthy(f"{settings.local_mlflow_url}/health", 0.5):
            uri = settings.local_mlflow_url
        elif (settings.home / "mlflow.db").is_file():
            uri = settings.default_tracking_uri()
        else:
            return {}, f"no registry reachable: {ci.NO_CHAMPION}"
    if uri.startswith(("http://", "https://")) and not is_healthy(f"{uri.rstrip('/')}/health", 2.0):
        return {}, f"registry {redact_uri(uri)} unreachable: {ci.NO_CHAMPION}"
    from mlops.registry import ALIAS_CHAMPION, Registry

    champions: dict[str, Any] = {}
    try:
        registry = Registry(uri)
        for name in names:
            ref = registry.version_by_alias(name, ALIAS_CHAMPION)
            if ref is not None:
                try:
                    metrics = json.loads(ref.tags.get("metrics", "{}"))
                except ValueError:
                    metrics = {}
                model, unloadable = _ci_load_champion(registry, ref)
                champions[name] = ci.Champion(ref.version, metrics if isinstance(metrics, dict) else {}, model, unloadable)
    except Exception as err:  # a registry that cannot answer only loses the comparison
        return {}, f"registry {redact_uri(uri)} unreachable ({type(err).__name__}): {ci.NO_CHAMPION}"
    return champions, None


def _ci_load_champion(registry: Any, ref: Any) -> tuple[Any, str | None]:
    """The champion's pipeline and its own contract, read now: once the run is isolated the team's
    registry is out of reach. A champion that cannot be loaded is compared by its recorded metric."""
    try:
        return (registry.load_model(ref.name, ref.version), registry.load_contract(ref)), None
    except Exception as err:  # an artifact store CI cannot read only loses the same-holdout score
        return None, _error_line(err)


def _error_line(err: BaseException) -> str:
    """`Type: first line of the message`, for a reason quoted inside a report line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _ci_shared_holdout(config: Any, data_uri: str | None, home: Any, registry: Any, version: str,
                       champion: Any) -> Any:
    """Challenger and champion scored on the same rows, as deploy would score them: the promotion
    holdout of the data this run trained on (the joined frame, for a store-fed model)."""
    from mlops import ci, datasets, promotion

    frame = datasets.read_training_frame(config.with_data_uri(data_uri).dataset, home).frame
    contract = registry.load_contract(registry.get_version(config.model.name, version))
    # Cut with the challenger's contract: the rows its own evaluation held out.
    holdout = promotion.promotion_holdout(frame, contract, config)
    _, challenger = promotion.score_on_holdout(registry.load_model(config.model.name, version), holdout, contract)
    champion_pipeline, champion_contract = champion.model
    _, scored = promotion.score_on_holdout(champion_pipeline, holdout, champion_contract)
    return ci.SharedHoldout(len(holdout), challenger, scored)


def _isolate_for_ci(tmp: Any) -> None:
    """Point MLflow, Prefect and the project home at `tmp`; must run before Prefect is imported."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    # A team's Feast registry and online store are shared state too: the feature repository is
    # applied to a local registry under `tmp` instead (its sources are only read).
    for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH", "MLFLOW_REGISTRY_URI",
                "MLOPS_FEAST_REGISTRY", "MLOPS_FEAST_ONLINE_STORE"):
        os.environ.pop(key, None)
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    # No server: Prefect runs a temporary one with its database here.
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    _allow_slow_temporary_server()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _ci_check(entry: Any, sample_rows: int | None, tmp: Any, champion: Any, no_registry: str | None,
              as_json: bool) -> Any:
    """Train one catalogue model in the throwaway store and gather its part of the report."""
    from dataclasses import replace

    from flows.train import train
    from mlops import ci
    from mlops.errors import DataValidationFailed, QualityGateFailed
    from mlops.evaluation import check_gates
    from mlops.evaluation.behaviour import REPORT_ARTIFACT
    from mlops.metrics import higher_is_better
    from mlops.registry import open_registry

    config = entry.config
    shown = _shown_path(entry.path)
    data_uri = None
    if sample_rows is not None:
        try:
            data_uri = _ci_sample(config, sample_rows, tmp)
        except MlopsError as err:
            return ci.ModelCheck(entry.name, shown, ci.STATUS_FAILED, err.exit_code, str(err).splitlines()[0])
    if config.dataset.feature_service:
        # The throwaway home has no feature registry yet: register the repository's definitions
        # (as `mlops features apply` does) so the point-in-time join can run.
        from mlops import features

        try:
            home = tmp / "home"
            features.apply_repo(features.open_store(config.dataset.feature_repo, home), config.dataset.feature_repo)
        except MlopsError as err:
            return ci.ModelCheck(entry.name, shown, ci.STATUS_FAILED, err.exit_code, str(err).splitlines()[0])
    source = {"file": str(entry.path), "file_sha256": entry.sha256, "overrides": "none"}
    _, outcome = _run_flow(train, as_json, config=config, data_uri=data_uri, config_source=source)
    check = ci.ModelCheck(entry.name, shown, ci.STATUS_PASSED, EXIT_OK, rows=sample_rows)
    if isinstance(outcome, BaseException):
        check.exit_code = outcome.exit_code if isinstance(outcome, MlopsError) else EXIT_ERROR
        line = str(outcome).splitlines()[0] if str(outcome) else type(outcome).__name__
        check.error = line if isinstance(outcome, MlopsError) else f"{type(outcome).__name__}: {line}"
        if isinstance(outcome, DataValidationFailed | QualityGateFailed):
            check.status = ci.STATUS_REFUSED
        elif isinstance(outcome, ConfigError):
            check.status = ci.STATUS_INVALID
        else:
            check.status = ci.STATUS_FAILED
    # The version this run registered (None when it ended before registering one).
    version = None if isinstance(outcome, BaseException) else getattr(outcome, "model_version", None)
    registry = open_registry()
    latest = registry.latest_run(config.experiment_name)
    if latest is not None:
        check.metrics = dict(latest["metrics"])
        if check.metrics:
            check.gates = [
                {"metric": g.metric, "bound": g.bound, "threshold": g.threshold, "value": g.value, "passed": g.passed}
                for g in check_gates(check.metrics, config.gates)
            ]
            metric = config.promotion.primary_metric
            shared = None
            if champion is not None and champion.model is not None and version:
                try:
                    shared = _ci_shared_holdout(config, data_uri, tmp / "home", registry, version, champion)
                except Exception as err:  # e.g. a champion whose contract this data no longer meets
                    champion = replace(champion, unloadable=_error_line(err))
            check.comparison = ci.compare(metric, higher_is_better(metric), check.metrics, champion, no_registry, shared)
        check.behaviour = registry.read_run_json(latest["run_id"], REPORT_ARTIFACT)
    if version:
        from mlops.cards import card_summary
        from mlops.cards.store import current_card

        try:
            check.card_summary = card_summary(current_card(registry, config.model.name, version))
        except MlopsError as err:  # the report still stands without the card's summary
            check.card_summary = f"_Model card not available: {err}_"
    return check


def _ci_sample(config: PipelineConfig, rows: int, tmp: Any) -> str:
    """A seeded sample of at most `rows` rows of the model's dataset (its entity frame, if store-fed)."""
    from mlops.data import read_frame, write_frame

    frame = read_frame(config.dataset.uri)
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=config.model.seed).sort_index()
    (tmp / "samples").mkdir(exist_ok=True)
    return write_frame(frame, str(tmp / "samples" / f"{config.model.name}.parquet"))


def main(argv: Sequence[str] | None = None) -> int:
    """The `mlops` entry point: the command's exit code (argv defaults to the process's arguments)."""
    if argv is None:
        quiet_library_warnings()
    code = typer.main.get_command(app).main(args=argv, prog_name="mlops", standalone_mode=False)
    if argv is None:
        # The process is about to exit: frozen objects are left out of the collections that
        # interpreter shutdown runs over every live object (0.1-0.2 s of a cold drift-check).
        gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
