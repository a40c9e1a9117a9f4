"""The `mlops` command in-process (Typer's CliRunner): help, usage errors, progress kept off stdout.

What runs flows (exit codes 3-5, signals) is tested on the real command in tests/integration.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlops import cli
from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from mlops.progress import progress

COMMANDS = ["train", "deploy", "rollback", "history", "models", "card", "serve", "monitor", "drift-check", "score", "simulate", "stack", "features"]


@pytest.fixture(autouse=True)
def sigterm_handler_restored() -> Iterator[None]:
    """Commands install their SIGTERM handler in this process; the test session keeps its own."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr counts as an interactive terminal (rich's variables), so progress is shown."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    write_frame(simulate_churn(400, seed=1), str(folder / "ref.parquet"))
    write_frame(simulate_churn(300, "strong", seed=2), str(folder / "cur.parquet"))
    return folder


def invoke(args: list[str]):
    return CliRunner().invoke(cli.app, args)


def test_the_command_lists_every_command_and_completion():
    result = invoke(["--help"])
    assert result.exit_code == 0, result.output
    for name in [*COMMANDS, "--install-completion", "--show-completion"]:
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help_with_an_example(command, flag):
    result = invoke([command, flag])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout and f"mlops {command} " in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "Missing command"),
        (["bogus"], "No such command 'bogus'"),
        (["train"], "give either --config PATH or --model NAME"),
        (["train", "--config"], "'--config' requires an argument"),
        (["train", "--config", "c.yaml", "--colour"], "No such option: --colour"),
        (["deploy", "--config", "c.yaml", "--version", "x"], "'--version': must be a version number such as 3"),
        (["score", "--config", "c.yaml", "--data", "d", "--out", "o", "--chunk-rows", "0"], "'--chunk-rows'"),
        (["simulate", "--rows", "10", "--out", "o.csv", "--drift", "huge"], "'--drift'"),
        (["stack"], "Missing argument 'action'. Choose from: up, down, status"),
        (["stack", "sideways"], "'sideways' is not one of 'up', 'down', 'status'"),
        (["simulate", "--rows", "20.0", "--out", "o.csv"], "'--rows'"),
        (["rollback", "--config", "c.yaml", "--reason", "--json"], "Option '--reason' requires an argument"),
        (["simulate", "--rows", "5", "--s", "1", "--out", "o.csv"], "No such option: --s"),
        # Counts and numbers beyond what the command can hold are refused before any work.
        (["simulate", "--rows", str(10**12), "--out", "o.csv"], "'--rows': must be between 1 and 2,000,000"),
        (["simulate", "--rows", "-5", "--out", "o.csv"], "'--rows'"),
        (["simulate", "--rows", "5", "--seed", "-1", "--out", "o.csv"], "'--seed': must be between 0 and"),
        (["serve", "--port", "70000"], "'--port': must be between 1 and 65,535"),
        (["monitor", "--config", "c.yaml", "--window-hours", "nan"], "'--window-hours'"),
        (["monitor", "--config", "c.yaml", "--window-hours", "-1"], "'--window-hours'"),
    ],
    ids=["no-command", "unknown-command", "missing-option", "missing-value", "unknown-option", "bad-version",
         "chunk-rows-0", "bad-choice", "missing-argument", "bad-argument", "float-for-int", "flag-as-value",
         "ambiguous-prefix", "rows-beyond-bound", "rows-negative", "seed-negative", "port-beyond-range",
         "window-nan", "window-negative"],
)
def test_bad_usage_is_one_error_line_and_exit_2(args, words):
    """Not Typer's box with the usage in it: the one `error:` line every other failure prints."""
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.stderr


def test_main_takes_an_argv_list_and_returns_the_exit_code(tmp_path, capsys):
    out = tmp_path / "batch.csv"
    assert cli.main(["simulate", "--rows", "20", "--drift", "mild", "--seed", "3", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "written", "uri": str(out), "rows": 20, "drift": "mild", "seed": 3}
    assert cli.main(["simulate", "--rows", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: Invalid value for '--rows'")


def test_a_unique_prefix_names_its_option_as_argparse_allowed(tmp_path, capsys):
    out = tmp_path / "batch.csv"
    assert cli.main(["simulate", "--row", "5", "--dr", "strong", "--se", "2", f"--o={out}", "--js"]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "written", "uri": str(out), "rows": 5, "drift": "strong", "seed": 2}


def test_a_config_error_is_one_line_the_json_line_and_exit_2(tmp_path):
    result = invoke(["train", "--config", str(tmp_path / "missing.yaml"), "--json"])
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [result.stderr.strip()]
    assert "missing.yaml" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_progress_goes_to_stderr_on_a_terminal_and_never_into_json(datasets, terminal):
    args = ["drift-check", "--reference", str(datasets / "ref.parquet"), "--current", str(datasets / "cur.parquet")]
    shown = invoke(args)
    assert shown.exit_code == 0, shown.output
    assert "drift-check" in shown.stderr  # the spinner's label
    assert shown.stdout.startswith("dataset drift") and "\x1b" not in shown.stdout

    as_json = invoke([*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["status"] == "drift"  # the whole of stdout is the JSON object
    assert as_json.stderr == ""


def test_no_progress_when_stderr_is_not_a_terminal(datasets, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    result = invoke(["drift-check", "--reference", str(datasets / "ref.parquet"), "--current", str(datasets / "cur.parquet")])
    assert result.exit_code == 0 and result.stderr == ""


class _ConsoleHandler(logging.StreamHandler):
    """The shape of Prefect's console handler: a stream handler that prints through its own rich Console."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.console = Console(file=stream)

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), soft_wrap=True)


@pytest.mark.parametrize("kind", [logging.StreamHandler, _ConsoleHandler])
def test_log_lines_written_while_the_spinner_turns_are_printed_by_its_console(kind, terminal, capsys):
    stderr = sys.stderr
    handler = kind(stderr)
    logger = logging.getLogger(f"test-progress-{kind.__name__}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with progress("working", as_json=False) as say:
            # Straight to the terminal, a line would be drawn through the spinner's own line.
            assert handler.stream is not stderr
            if kind is _ConsoleHandler:
                assert handler.console.file is not stderr
            say("step 2")
            logger.warning("a log line")
        assert handler.stream is stderr
        if kind is _ConsoleHandler:
            assert handler.console.file is stderr
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("a log line") == 1 and "working: step 2" in err


def test_an_error_raised_while_prefect_handles_sigterm_is_still_sigterm():
    from prefect.exceptions import TerminationSignal

    from mlops.cli import _terminated_during

    try:
        try:
            raise TerminationSignal(signal=15)
        except TerminationSignal:
            raise ValueError("Task run is not set")  # noqa: B904 (implicit context, as Prefect 3.9 raised it in CI)
    except ValueError as err:
        assert _terminated_during(err)
    assert not _terminated_during(ValueError("a plain failure"))
    assert not _terminated_during(None)


def test_with_no_prefect_server_the_temporary_one_gets_time_to_start(tmp_path, monkeypatch):
    """Prefect's 20 s default is shorter than a first start under load (CI failed on it)."""
    from mlops.settings import Settings

    for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                "PREFECT_SERVER_ANALYTICS_ENABLED", "GX_ANALYTICS_ENABLED", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.delenv(key, raising=False)  # restored afterwards, whatever the function sets
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    # Ports nothing listens on: no local stack.
    monkeypatch.setenv("MLOPS_PREFECT_PORT", "9")
    monkeypatch.setenv("MLOPS_MLFLOW_PORT", "9")
    cli._configure_infrastructure(Settings())
    assert "PREFECT_API_URL" not in cli.os.environ
    assert cli.os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == str(cli.TEMPORARY_SERVER_STARTUP_SECONDS)
    assert (tmp_path / "home" / "prefect").is_dir()

    # A team's own setting wins.
    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    cli._configure_infrastructure(Settings())
    assert cli.os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45"


@pytest.mark.parametrize("tag", [
    "[" * 5000 + "]" * 5000,
    '{"version": "7\u001b[2J", "steps": "nonsense"}',
    '{"last_look": {"verdict": ["abort"]}}',
], ids=["nested-5000-deep", "escape-codes-and-string-steps", "verdict-a-list"])
def test_rollout_status_on_a_broken_tag_is_one_error_line_and_exit_2(tmp_path, capsys, monkeypatch, tag):
    from mlops import registry
    from mlops.promotion.split import TrafficSplit

    class Registry:  # the MLflow store's part status reads; the tag is parsed by the real code
        def rollout_split(self, name: str) -> TrafficSplit | None:
            return TrafficSplit.from_tag(tag)

        def read_audit(self, name: str) -> list:
            return []

    monkeypatch.setattr(registry, "open_registry", lambda settings=None: Registry())
    config = tmp_path / "churn.yaml"
    config.write_text("dataset: {uri: x.parquet, target: churned}\nmodel: {name: churn}\n")
    for args in (["rollout", "status", "--config", str(config)], ["rollout", "status", "--config", str(config), "--json"]):
        assert cli.main(args) == 2
        out, err = capsys.readouterr()
        assert err.startswith("error: model churn: tag mlops.rollout is not a traffic split: ") and err.count("\n") == 1
        assert err.rstrip("\n").isprintable() and err.rstrip().endswith("serving routes to the champion only")
    assert json.loads(out)["exit_code"] == 2


def test_the_console_command_hides_library_deprecations_and_keeps_our_warnings(monkeypatch):
    import warnings

    from mlops.progress import quiet_library_warnings

    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn("numpy.core is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("a future default", FutureWarning, stacklevel=1)
        warnings.warn("a window with too few rows", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a window with too few rows"]
    # An explicit PYTHONWARNINGS is the user's choice: nothing is hidden then.
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn("numpy.core is deprecated", DeprecationWarning, stacklevel=1)
    assert len(seen) == 1


def test_the_stacks_processes_hide_library_deprecations_unless_the_caller_says(monkeypatch, tmp_path):
    from mlops.config import Settings
    from mlops.local import stack

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    env = stack.worker_service(Settings(), tmp_path).env
    assert "ignore::DeprecationWarning" in env["PYTHONWARNINGS"].split(",")
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    assert stack.serving_service(Settings(), tmp_path, tmp_path).env["PYTHONWARNINGS"] == "error"
