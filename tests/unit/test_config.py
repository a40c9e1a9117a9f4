"""Config validation: every rejection names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mlops.config import PipelineConfig, Settings, load_config, parse_config
from mlops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "dataset": {"uri": "data/churn.parquet", "target": "churned", "timestamp": "event_time"},
    "model": {"name": "churn", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression"},
    "gates": {"min_metrics": {"roc_auc": 0.7}},
}


def _with(path: str, value):
    raw = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return raw


def test_example_config_is_valid():
    config = load_config(REPO / "configs" / "churn.yaml")
    assert config.model.name == "churn-classifier"
    assert config.dataset.target == "churned"
    assert config.gates.min_metrics["roc_auc"] > 0


def test_bundled_configs_one_classifier_one_regressor_each_on_its_own_cadence():
    churn, spend = load_config(REPO / "configs" / "churn.yaml"), load_config(REPO / "configs" / "spend.yaml")
    assert (churn.model.task, spend.model.task) == ("classification", "regression")
    assert spend.model.name == "spend-regressor" and spend.dataset.target == "monthly_spend"
    assert spend.promotion.primary_metric == "rmse" and spend.promotion.significance != "mcnemar"
    assert (churn.monitoring.schedule.cron, churn.monitoring.schedule.interval_minutes) == ("0 * * * *", None)
    assert spend.monitoring.schedule.interval_minutes == 15


@pytest.mark.parametrize(("task", "promotion", "expected"), [
    ("classification", {}, "roc_auc"),
    ("regression", {}, "rmse"),
    ("regression", {"tolerance": 0.5}, "rmse"),
    ("regression", {"primary_metric": "mae"}, "mae"),
    ("classification", {"primary_metric": "f1"}, "f1"),
])
def test_primary_metric_defaults_to_the_tasks_own(task, promotion, expected):
    raw = {**BASE, "model": {**BASE["model"], "task": task}, "gates": {}}
    if promotion:
        raw["promotion"] = promotion
    config = parse_config(raw)
    assert config.promotion.primary_metric == expected
    assert config.promotion.tolerance == promotion.get("tolerance", 0.0)


def test_minimal_config_gets_defaults():
    config = parse_config(BASE)
    assert config.split.method == "random"
    assert config.split.test_size == 0.2
    assert config.experiment_name == "churn"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("model.colour", "red", "unknown key 'model.colour'"),
        ("extra_section", {}, "unknown key 'extra_section'"),
        ("model.task", "clustering", "invalid value for 'model.task'"),
        ("split.test_size", 1.5, "invalid value for 'split.test_size'"),
        ("split.test_size", "big", "invalid value for 'split.test_size'"),
        ("model.params", [1, 2], "invalid value for 'model.params'"),
        ("model.name", "bad name!", "invalid value for 'model.name'"),
        ("model.seed", 2**32, "invalid value for 'model.seed': Input should be less than or equal to 4294967295"),
        ("model.max_classes", 1, "invalid value for 'model.max_classes'"),
        ("experiment", "../../outside", "invalid value for 'experiment': must be 1-100 letters"),
        ("experiment", "team/churn", "invalid value for 'experiment'"),
        ("experiment", "..", "invalid value for 'experiment'"),
        ("experiment", "/abs", "invalid value for 'experiment'"),
        ("model.estimator", "not a path", "invalid value for 'model.estimator'"),
        ("validation.min_rows", -1, "invalid value for 'validation.min_rows'"),
        ("validation.contract.range_margin", -0.5, "invalid value for 'validation.contract.range_margin'"),
    ],
)
def test_bad_values_name_their_key(path, value, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_with(path, value), source="c.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_section_is_named():
    raw = copy.deepcopy(BASE)
    del raw["dataset"]
    with pytest.raises(ConfigError, match="missing required key 'dataset'"):
        parse_config(raw)


def test_time_split_requires_timestamp():
    raw = _with("split.method", "time")
    raw["dataset"]["timestamp"] = None
    with pytest.raises(ConfigError, match="dataset.timestamp"):
        parse_config(raw)


def test_rule_min_above_max_rejected():
    raw = _with("validation.rules", [{"column": "age", "min": 10, "max": 5}])
    with pytest.raises(ConfigError, match="validation.rules.0"):
        parse_config(raw)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_data_override_and_fingerprint():
    config = parse_config(BASE)
    moved = config.with_data_uri("s3://bucket/other.csv")
    assert moved.dataset.uri == "s3://bucket/other.csv"
    assert config.dataset.uri == "data/churn.parquet"
    assert config.with_data_uri(None) is config
    assert moved.fingerprint() != config.fingerprint()
    assert parse_config(BASE).fingerprint() == config.fingerprint()


def test_config_round_trips_as_flow_parameter():
    config = parse_config(BASE)
    assert PipelineConfig.model_validate(config.model_dump(mode="json")) == config


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_PREFECT_PORT", "4321")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings()
    assert settings.local_prefect_url == "http://127.0.0.1:4321/api"
    assert settings.mlflow_tracking_uri is None
    assert settings.default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_settings_ignore_same_named_shell_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOPS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == Path(".mlops")
    assert settings.default_tracking_uri() == f"sqlite:///{(tmp_path / '.mlops' / 'mlflow.db').resolve()}"


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("serving.api_key_env", "AWS_SECRET_ACCESS_KEY", "MLOPS_API_KEY"),
        ("serving.api_key_env", "MLOPS_API_KEY", "MLOPS_API_KEY"),  # even today's default name
        ("rollback.service_url", "http://attacker.example:9/", "MLOPS_SERVING_URL"),
    ],
)
def test_a_config_never_names_a_secret_or_where_it_is_sent(path, value, where):
    with pytest.raises(ConfigError) as err:
        parse_config(_with(path, value), source="c.yaml")
    message = str(err.value)
    assert f"'{path}' is not a config key" in message and where in message and "\n" not in message
    assert err.value.exit_code == 2
    # The same refusal when the config arrives as a flow parameter (an edited deployment).
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        PipelineConfig.model_validate(_with(path, value))


def test_api_key_and_watched_service_come_from_settings(monkeypatch):
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    monkeypatch.delenv("MLOPS_SERVING_URL", raising=False)
    monkeypatch.setenv("MLOPS_STACK_HOST", "127.0.0.2")
    monkeypatch.setenv("MLOPS_SERVING_PORT", "8123")
    settings = Settings()
    assert settings.serving_api_key() is None and settings.watched_serving_url == "http://127.0.0.2:8123"
    monkeypatch.setenv("MLOPS_API_KEY", "")
    assert Settings().serving_api_key() is None  # empty: auth off, as before
    monkeypatch.setenv("MLOPS_API_KEY", "k-1")
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://127.0.0.1:9999")
    settings = Settings()
    assert settings.serving_api_key() == "k-1" and settings.watched_serving_url == "http://127.0.0.1:9999"
    assert "k-1" not in repr(settings)


def _bomb(levels: int, width: int) -> str:
    """A YAML alias bomb: each level is `width` aliases of the one before."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\ndataset: {uri: d.csv, target: y}\nmodel: {name: m}\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_bomb(9, 9), "once its YAML aliases are expanded"),  # 72 aliases, 9**9 strings once expanded
        ("x: &x [*x]\n", "once its YAML aliases are expanded"),  # an anchor that contains itself
        ("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", "more than 100 YAML aliases"),
        ("dataset: {uri: d.csv, target: y}\nmodel: {name: m}\n#" + "x" * (256 * 1024), "more than the limit of 262144"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
    ids=["alias-bomb", "self-alias", "too-many-aliases", "too-big", "too-deep"],
)
def test_a_hostile_config_file_is_refused_before_it_is_expanded(tmp_path, text, words):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and words in str(err.value) and err.value.exit_code == 2


def test_a_config_with_a_few_aliases_still_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "dataset: {uri: d.csv, target: y}\nmodel: {name: m, params: &p {max_iter: 30}}\n"
        "monitoring: {per_column_threshold: &t {a: 0.1, b: 0.2}}\n"
    )
    assert load_config(path).model.params == {"max_iter": 30}


@pytest.mark.timeout(30)
def test_a_config_path_that_is_a_fifo_or_a_device_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=rf"config file {fifo}: is a FIFO \(named pipe\); only regular files are read"):
        load_config(fifo)
    device = tmp_path / "device.yaml"
    device.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="is a character device"):
        load_config(device)


@pytest.mark.parametrize("task", [[], {}, 3])
def test_a_task_that_is_not_a_name_is_refused_naming_the_key(task):
    # Found by tests/reliability/test_properties.py: the default-metric rule hashed the value first.
    with pytest.raises(ConfigError, match="model.task"):
        parse_config({"dataset": {"uri": "x.parquet", "target": "y"}, "model": {"name": "m", "task": task}})


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        ([{"name": "a", "kind": "invariance", "column": "c"}],
         "invalid value for 'behaviour.tests.0': give exactly one of value or permute: true"),
        ([{"name": "a", "kind": "invariance", "column": "c", "value": "x", "permute": True}],
         "invalid value for 'behaviour.tests.0': give exactly one of value or permute: true"),
        ([{"name": "a", "kind": "invariance", "column": "c", "permute": True, "max_flip_rate": 5}],
         "invalid value for 'behaviour.tests.0.max_flip_rate'"),
        ([{"name": "a", "kind": "directional", "column": "c", "delta": 0}],
         "invalid value for 'behaviour.tests.0.delta': must be a finite non-zero number"),
        ([{"name": "a", "kind": "directional", "column": "c", "delta": 1, "direction": "up"}],
         "invalid value for 'behaviour.tests.0.direction'"),
        ([{"name": "a", "kind": "directional", "column": "c", "delta": 1, "colour": 1}],
         "unknown key 'behaviour.tests.0.colour'"),
        ([{"name": "a", "kind": "minimum", "cases": []}], "invalid value for 'behaviour.tests.0.cases'"),
        ([{"name": "a", "kind": "minimum", "cases": [{"row": {"x": 1}}]}],
         "missing required key 'behaviour.tests.0.cases.0.expected'"),
        ([{"kind": "directional", "column": "c", "delta": 1}], "missing required key 'behaviour.tests.0.name'"),
        ([{"name": "a", "kind": "sometimes", "column": "c"}], "invalid value for 'behaviour.tests.0'"),
        ([{"name": "a", "kind": "directional", "column": "c", "delta": 1},
          {"name": "a", "kind": "invariance", "column": "c", "permute": True}],
         "invalid value for 'behaviour.tests': test names must be unique, repeated: a"),
    ],
)
def test_behaviour_tests_are_refused_naming_their_key(tests, message):
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "behaviour": {"tests": tests}})
    assert str(caught.value).startswith(f"config <config>: {message}")
    assert "\n" not in str(caught.value)


def test_behaviour_defaults_and_bundled_tests():
    assert parse_config(BASE).behaviour.tests == []
    churn = load_config(Path(__file__).resolve().parents[2] / "configs" / "churn.yaml")
    assert {t.kind for t in churn.behaviour.tests} == {"invariance", "directional", "minimum"}


_DIRECTIONAL = {"kind": "directional", "column": "c", "delta": 1}


@pytest.mark.parametrize("padded", ["x\n", "x ", " x", "x\r", "x\t", "x\n\n"])
@pytest.mark.parametrize(
    ("key", "place"),
    [
        ("model.name", lambda raw, v: raw["model"].update(name=v)),
        ("experiment", lambda raw, v: raw.update(experiment=v)),
        ("dataset.feature_service", lambda raw, v: raw["dataset"].update(feature_service=v)),
        ("behaviour.tests.0.name", lambda raw, v: raw.update(behaviour={"tests": [{"name": v, **_DIRECTIONAL}]})),
        ("behaviour.tests.0.name", lambda raw, v: raw.update(behaviour={"tests": [
            {"name": v, "kind": "minimum", "cases": [{"row": {"x": 1}, "expected": 1}]}]})),
    ],
)
def test_a_name_with_surrounding_whitespace_is_refused_whole(key, place, padded):
    # `$` matches before a final newline: "x\n" passed, split tables and made a second model
    # beside "x". A name is matched whole.
    raw = copy.deepcopy(BASE)
    place(raw, padded)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="c.yaml")
    assert f"invalid value for '{key}'" in str(caught.value)
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


def test_the_prediction_log_defaults_under_the_home_wherever_the_process_starts(monkeypatch, tmp_path):
    # It defaulted to ./.mlops/predictions: two homes shared one log, a stack started elsewhere wrote elsewhere.
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.chdir(elsewhere)
    assert parse_config(BASE).serving.prediction_log_uri == str(home.resolve() / "predictions")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "other"))
    assert parse_config(BASE).serving.prediction_log_uri == str((tmp_path / "other").resolve() / "predictions")
    # A configured location is kept as written, and a config passed as a flow parameter keeps its value.
    configured = parse_config(_with("serving.prediction_log_uri", "s3://bucket/log"))
    assert configured.serving.prediction_log_uri == "s3://bucket/log"
    dumped = parse_config(BASE).model_dump(mode="json")
    monkeypatch.setenv("MLOPS_HOME", str(home))
    assert PipelineConfig.model_validate(dumped).serving.prediction_log_uri.endswith("other/predictions")
