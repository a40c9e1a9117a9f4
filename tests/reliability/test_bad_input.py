"""Bad data and bad config: one readable `error:` line, the documented exit code, nothing left behind.

Every data case runs through the same library path the `train` flow takes (read, contract,
validation) in a fraction of a second; a representative subset also runs through the `mlops train`
command, where each case costs a Prefect flow run, and there we also check the registry and the
disk. One case per exit code runs the real command as a subprocess; the others call the CLI in
this process (`cli_in_process`), with the same environment and assertions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.config import ValidationConfig, parse_config
from mlops.contract import infer_contract
from mlops.data import read_frame, write_frame
from mlops.errors import ConfigError, DataValidationFailed, MlopsError
from mlops.local.simulate import simulate_churn
from mlops.training import load_estimator_class
from mlops.validation import validate_frame
from tests.integration.test_cli import (
    MODEL,
    base_config,
    cli_env,
    process_state_kept,
    run_cli,
    write_config,
)

BASE = simulate_churn(600, seed=3)
TARGET = "churned"


def _parquet(frame: pd.DataFrame) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        write_frame(frame, str(folder / "bad.parquet"))
        return "bad.parquet"

    return write


def _csv_bytes(payload: bytes) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        (folder / "bad.csv").write_bytes(payload)
        return "bad.csv"

    return write


def _with(column: str, values: object) -> pd.DataFrame:
    frame = BASE.copy()
    frame[column] = values
    return frame


def _one_value(column: str, value: float) -> pd.DataFrame:
    frame = BASE.copy()
    frame[column] = frame[column].where(frame.index != 5, value)
    return frame


def _truncated(folder: Path) -> str:
    write_frame(BASE, str(folder / "full.parquet"))
    payload = (folder / "full.parquet").read_bytes()
    (folder / "full.parquet").unlink()
    (folder / "bad.parquet").write_bytes(payload[: len(payload) // 2])
    return "bad.parquet"


def _latin1() -> bytes:
    frame = BASE.copy()
    frame["region"] = frame["region"].where(frame.index % 7 != 0, "Göteborg")
    return frame.to_csv(index=False).encode("latin-1")


def _duplicate_header() -> bytes:
    header, rest = BASE.to_csv(index=False).split("\n", 1)
    return f"{header.replace('plan', 'region')}\n{rest}".encode()


# (case, how the file is made, exit code, words the error line must contain)
# Cases without a stored contract: this is the model's first version.
FIRST_VERSION = [
    ("missing-target", _parquet(BASE.drop(columns=[TARGET])), 2, "target column 'churned' is not in the data"),
    ("empty-file", _csv_bytes(b""), 2, "bad.csv: file is empty"),
    ("header-only", _csv_bytes((",".join(BASE.columns) + "\n").encode()), 2, "bad.csv: no data rows (header only)"),
    ("not-utf8", _csv_bytes(_latin1()), 2, "bad.csv: not UTF-8 encoded text"),
    ("truncated-parquet", _truncated, 2, "bad.parquet: cannot parse as parquet"),
    ("duplicate-columns", _csv_bytes(_duplicate_header()), 2, "bad.csv: duplicate column name 'region'"),
    ("one-class-target", _parquet(_with(TARGET, 0)), 3, "'churned' (1 distinct value"),
    ("all-null-column", _parquet(_with("monthly_charges", np.nan)), 3, "not_be_null on 'monthly_charges'"),
    ("infinite-value", _parquet(_one_value("monthly_charges", np.inf)), 3, "between on 'monthly_charges'"),
    ("huge-value", _parquet(_one_value("monthly_charges", 1e308)), 3, "between on 'monthly_charges'"),
]
# Cases checked against the contract stored with an earlier version (built from BASE).
AGAINST_CONTRACT = [
    ("missing-feature", _parquet(BASE.drop(columns=["support_calls"])), 3, "missing: support_calls"),
    ("extra-feature", _parquet(_with("colour", "red")), 3, "extra: colour"),
    ("wrong-dtype", _parquet(_with("age", BASE["age"].astype(str))), 3, "type_list on 'age'"),
]


def _library_outcome(folder: Path, make: Callable[[Path], str], stored: bool) -> MlopsError:
    """What the train flow's first steps raise for this file: read, contract, validation."""
    uri = str(folder / make(folder))
    try:
        frame = read_frame(uri)
        source = BASE if stored else frame
        contract = infer_contract(source, TARGET, "event_time", "classification")
        report = validate_frame(frame, contract, ValidationConfig(min_rows=50), uri)
    except MlopsError as err:
        return err
    assert not report.success, "bad data passed validation"
    return DataValidationFailed(report.summary(), report)


@pytest.mark.parametrize(
    ("make", "code", "words", "stored"),
    [pytest.param(m, c, w, False, id=n) for n, m, c, w in FIRST_VERSION]
    + [pytest.param(m, c, w, True, id=n) for n, m, c, w in AGAINST_CONTRACT],
)
def test_bad_data_is_refused_with_one_line(tmp_path, make, code, words, stored):
    err = _library_outcome(tmp_path, make, stored)
    assert err.exit_code == code, err
    line = str(err).splitlines()[0]
    assert words in line


def _registry_state(folder: Path) -> tuple[list[str], dict[str, str]]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = [str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")]
    try:
        aliases = {k: str(v) for k, v in (client.get_registered_model(MODEL).aliases or {}).items()}
    except MlflowException:
        aliases = {}
    return found, aliases


def _stray_files(folder: Path) -> list[str]:
    """Half-written files: hidden temporaries of atomic writes, or anything named partial."""
    return [
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.is_file() and (p.suffix in (".tmp", ".partial") or p.name.startswith(".bad."))
    ]


def assert_clean_failure(proc, code: int, words: str, folder: Path, versions_before: list[str]) -> None:
    """Exit code, one error line with the words and no traceback, one JSON line, registry untouched."""
    assert proc.returncode == code, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["exit_code"] == code
    found, aliases = _registry_state(folder)
    assert found == versions_before
    assert set(aliases) <= ({"challenger"} if versions_before else set())
    assert _stray_files(folder) == []


# (case, run as a subprocess): one subprocess case per exit code (2 and 3).
CLI_FIRST = [("not-utf8", False), ("truncated-parquet", True), ("one-class-target", True),
             ("all-null-column", False), ("infinite-value", False)]
CLI_CONTRACT = ["missing-feature", "extra-feature"]


@pytest.mark.parametrize(
    ("make", "code", "words", "as_subprocess"),
    [pytest.param(m, c, w, sub, id=n) for n, m, c, w in FIRST_VERSION for case, sub in CLI_FIRST if n == case],
)
def test_cli_refuses_bad_first_data(workdir, prefect_server, request, make, code, words, as_subprocess):
    cfg = write_config(workdir, base_config(make(workdir)))
    args = ["train", "--config", cfg, "--json"]
    if as_subprocess:
        proc = run_cli(args, workdir, prefect_server)
    else:
        proc = request.getfixturevalue("cli_in_process")(args, workdir)
    assert_clean_failure(proc, code, words, workdir, [])


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, mlflow_template, prefect_api) -> Path:
    """A store holding v1 (trained on BASE) as challenger by `mlops train` in this process; each
    test copies its database."""
    from mlops import cli

    folder = tmp_path_factory.mktemp("trained")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    write_frame(BASE, str(folder / "base.parquet"))
    config = write_config(folder, base_config("base.parquet", validation={"min_rows": 50}))
    with pytest.MonkeyPatch.context() as mp, process_state_kept():
        for key, value in {**cli_env(folder), "PREFECT_API_URL": prefect_api}.items():
            mp.setenv(key, value)
        mp.chdir(folder)
        assert cli.main(["train", "--config", config, "--json"]) == 0
    return folder


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [pytest.param(m, c, w, id=n) for n, m, c, w in AGAINST_CONTRACT if n in CLI_CONTRACT],
)
def test_cli_refuses_data_that_breaks_the_stored_contract(tmp_path, trained_store, cli_in_process, make, code, words):
    # The artifacts of v1 stay where they were logged (absolute paths in the copied database).
    shutil.copy(trained_store / "mlflow.db", tmp_path / "mlflow.db")
    config = base_config(make(tmp_path), validation={"min_rows": 50})
    proc = cli_in_process(["train", "--config", write_config(tmp_path, config), "--json"], tmp_path)
    assert_clean_failure(proc, code, words, tmp_path, ["1"])
    assert _registry_state(tmp_path)[1] == {"challenger": "1"}


BASE_CONFIG = base_config("churn.parquet")


@pytest.mark.parametrize(
    ("section", "update", "key"),
    [
        ("model", {"colour": "red"}, "unknown key 'model.colour'"),
        ("split", {"test_size": "big"}, "'split.test_size'"),
        ("model", {"seed": 1.5}, "'model.seed'"),
        ("model", {"estimator": "not a path"}, "'model.estimator'"),
        ("promotion", {"tolerance": -0.1}, "'promotion.tolerance'"),
        ("monitoring", {"threshold": -0.1}, "'monitoring.threshold'"),
        ("monitoring", {"per_column_threshold": {"age": -1}}, "'monitoring.per_column_threshold.age'"),
        ("rollback", {"max_error_rate": -1}, "'rollback.max_error_rate'"),
        ("serving", {"max_rows": 0}, "'serving.max_rows'"),
    ],
)
def test_bad_config_names_the_key(section, update, key):
    raw = json.loads(json.dumps(BASE_CONFIG))
    raw[section] = {**raw.get(section, {}), **update}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "c.yaml")
    message = str(caught.value)
    assert key in message and "\n" not in message and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("sklearn.nothing.Here", "module 'sklearn.nothing' not found"),
        ("sklearn.ensemble.NoSuchForest", "has no attribute 'NoSuchForest'"),
        ("collections.OrderedDict", "outside the allowed estimator packages"),
        ("sklearn.utils.Bunch", "is not a scikit-learn estimator"),
        ("sklearn.preprocessing.StandardScaler", "is not a classifier"),
        ("sklearn.linear_model.Ridge", "is not a classifier"),
        ("sklearn.ensemble", "is a module, not a class"),
    ],
)
def test_bad_estimator_path_is_a_config_error(path, words):
    with pytest.raises(ConfigError) as caught:
        load_estimator_class(path, "classification")
    assert words in str(caught.value) and str(caught.value).startswith("model.estimator")


def test_cli_bad_estimator_leaves_nothing(workdir, cli_in_process):
    config = base_config("churn.parquet")
    config["model"]["estimator"] = "collections.OrderedDict"
    proc = cli_in_process(["train", "--config", write_config(workdir, config), "--json"], workdir,
                          MLOPS_ESTIMATOR_MODULES="collections")
    assert_clean_failure(proc, 2, "is not a scikit-learn estimator", workdir, [])


def test_cli_refuses_parameters_the_estimator_rejects_only_inside_fit(workdir, cli_in_process):
    config = base_config("churn.parquet")
    config["model"].update(estimator="sklearn.linear_model.LogisticRegression",
                           params={"solver": "liblinear", "penalty": "elasticnet", "l1_ratio": 0.5})
    proc = cli_in_process(["train", "--config", write_config(workdir, config), "--json"], workdir)
    assert_clean_failure(proc, 2, "model.params: invalid parameters for sklearn.linear_model.LogisticRegression: "
                         "Only 'saga' solver supports elasticnet penalty", workdir, [])


def test_cli_refuses_a_yaml_alias_bomb_naming_the_file(workdir):
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = workdir / "bomb.yaml"
    path.write_text("\n".join(levels) + "\n")
    proc = run_cli(["train", "--config", str(path), "--json"], workdir, None)
    assert_clean_failure(proc, 2, f"config file {path} is refused: more than 262144 bytes once its YAML aliases "
                         "are expanded", workdir, [])
