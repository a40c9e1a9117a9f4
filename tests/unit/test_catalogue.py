"""The model catalogue: configs/*.yaml by model name, refused files, typed overrides, what `make up` sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlops.catalogue import (
    ConfigOverrides,
    UnknownModel,
    deep_merge,
    file_config,
    load_catalogue,
    resolve_config,
)
from mlops.catalogue_status import ModelStatus, model_statuses, render_statuses, serving_state
from mlops.config import MonitoringSchedule, PipelineConfig
from mlops.errors import ConfigError
from mlops.local.catalogue_sync import monitor_schedules, schedule_slug, with_model_choices

ROOT = Path(__file__).resolve().parents[2]
CHURN = yaml.safe_load((ROOT / "configs" / "churn.yaml").read_text())


def _write(directory: Path, file: str, raw: dict | str) -> Path:
    path = directory / file
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def _config(name: str, **changes) -> dict:
    raw = deep_merge(CHURN, {"model": {"name": name}, **changes})
    # The flat file holds its features: configs/churn.yaml's feature service would join them twice.
    # (A new mapping: deep_merge shares CHURN's nested ones, which other tests read.)
    raw["dataset"] = {**{k: v for k, v in raw["dataset"].items() if k != "feature_service"},
                      "uri": str(ROOT / "data" / "churn.parquet")}
    return raw


def test_the_projects_catalogue_loads_without_problems():
    catalogue = load_catalogue(ROOT / "configs")
    assert "churn-classifier" in catalogue.names and catalogue.problems == ()
    assert {entry.config.model.task for entry in catalogue.entries.values()} <= {"classification", "regression"}


def test_every_file_is_one_model_by_its_name(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    _write(tmp_path, "b.yml", _config("beta"))
    _write(tmp_path, "notes.txt", "not a config")
    catalogue = load_catalogue(tmp_path)
    assert catalogue.names == ["alpha", "beta"] and catalogue.problems == ()
    assert catalogue.get("beta").path == tmp_path / "b.yml"
    assert len(catalogue.get("alpha").sha256) == 64


def test_a_duplicate_name_is_refused_naming_both_files_and_the_first_keeps_it(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    _write(tmp_path, "b.yaml", _config("alpha", split={"test_size": 0.3}))
    _write(tmp_path, "c.yaml", _config("gamma"))
    catalogue = load_catalogue(tmp_path)
    assert catalogue.names == ["alpha", "gamma"]
    assert catalogue.get("alpha").config.split.test_size == 0.2
    (problem,) = catalogue.problems
    assert problem.refused and problem.path == tmp_path / "b.yaml"
    assert "'alpha'" in problem.message and str(tmp_path / "a.yaml") in problem.message
    assert "\n" not in problem.message


@pytest.mark.parametrize("text, expected", [
    ("model: [unclosed", "is not valid YAML at line"),
    (yaml.safe_dump({**_config("broken"), "modle": {}}), "unknown key 'modle'"),
    ("- just\n- a list\n", "expected a mapping at the top level"),
])
def test_a_broken_file_is_refused_by_name_and_the_others_stay(tmp_path, text, expected):
    _write(tmp_path, "good.yaml", _config("good"))
    bad = _write(tmp_path, "bad.yaml", text)
    catalogue = load_catalogue(tmp_path)
    assert catalogue.names == ["good"]
    (problem,) = catalogue.problems
    assert problem.refused and problem.path == bad and str(bad) in problem.message and expected in problem.message
    assert "\n" not in problem.message


def test_a_model_whose_data_is_missing_stays_listed_with_a_warning(tmp_path):
    raw = _config("nodata")
    raw["dataset"]["uri"] = str(tmp_path / "absent.parquet")
    _write(tmp_path, "nodata.yaml", raw)
    _write(tmp_path, "good.yaml", _config("good"))
    catalogue = load_catalogue(tmp_path)
    assert catalogue.names == ["good", "nodata"]
    (problem,) = catalogue.problems
    assert not problem.refused and "dataset " in problem.message and "absent.parquet not found" in problem.message


def test_a_store_fed_model_whose_entity_frame_is_missing_is_warned_about_by_it(tmp_path):
    # The project's churn model takes its features from the store: its data is the entity frame.
    raw = deep_merge(CHURN, {"model": {"name": "stored"}})
    assert raw["dataset"]["feature_service"] == "churn_model"
    raw["dataset"]["uri"] = str(tmp_path / "labels.parquet")
    _write(tmp_path, "stored.yaml", raw)
    (problem,) = load_catalogue(tmp_path).problems
    assert not problem.refused and f"entity frame {tmp_path / 'labels.parquet'} not found" in problem.message


def test_an_unknown_model_names_itself_and_the_known_ones(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    _write(tmp_path, "bad.yaml", "model: [")
    catalogue = load_catalogue(tmp_path)
    with pytest.raises(UnknownModel, match=r"unknown model 'bad': the catalogue .* has alpha; config .*bad.yaml is not valid YAML"):
        resolve_config(catalogue, "bad")
    assert UnknownModel.exit_code == 2


def test_a_missing_catalogue_directory_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="model catalogue not found"):
        load_catalogue(tmp_path / "nope")


def test_overrides_merge_mappings_replace_lists_and_are_validated_as_a_whole(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    catalogue = load_catalogue(tmp_path)
    resolved = resolve_config(catalogue, "alpha", {
        "model": {"params": {"max_iter": 20}},
        "validation": {"rules": [{"column": "age", "min": 0}]},
    })
    assert resolved.config.model.params == {"max_iter": 20, "learning_rate": 0.05}
    assert [rule.column for rule in resolved.config.validation.rules] == ["age"]
    assert resolved.overrides.keys() == {"model", "validation"}
    assert resolved.record() == {"file": str(tmp_path / "a.yaml"), "file_sha256": catalogue.get("alpha").sha256,
                                 "overrides": "model,validation"}
    # No overrides: the file's own config, untouched.
    assert resolve_config(catalogue, "alpha").config == catalogue.get("alpha").config
    # The whole is validated again: a time split needs the timestamp the override removed.
    with pytest.raises(ConfigError, match="split.method 'time' needs dataset.timestamp"):
        resolve_config(catalogue, "alpha", {"dataset": {"timestamp": ""}})


@pytest.mark.parametrize("overrides, message", [
    ({"model": {"name": "other"}}, "overrides: unknown key 'model.name'"),
    ({"split": {"test_size": 2}}, "overrides: invalid value for 'split.test_size'"),
    ({"nope": 1}, "overrides: unknown key 'nope'"),
])
def test_a_bad_override_is_one_line_naming_the_key(tmp_path, overrides, message):
    _write(tmp_path, "a.yaml", _config("alpha"))
    with pytest.raises(ConfigError) as err:
        resolve_config(load_catalogue(tmp_path), "alpha", overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _leaves(schema: dict, defs: dict, path: str = "") -> dict[str, dict]:
    """Every leaf field of a JSON schema (refs followed), by dotted path."""
    found = {}
    for name, field in schema.get("properties", {}).items():
        options = field.get("anyOf", [field])
        ref = next((o["$ref"] for o in options if "$ref" in o), None)
        if ref is not None:
            found.update(_leaves(defs[ref.rsplit("/", 1)[1]], defs, f"{path}{name}."))
        else:
            found[f"{path}{name}"] = field
    return found


def test_the_overrides_form_has_every_config_key_optional_typed_and_described():
    full = PipelineConfig.model_json_schema()
    partial = ConfigOverrides.model_json_schema()
    config_leaves = _leaves(full, full["$defs"])
    override_leaves = _leaves(partial, partial["$defs"])
    assert set(override_leaves) == set(config_leaves) - {"model.name"}
    assert not partial.get("required")
    for key, field in override_leaves.items():
        # The form shows the same description the file's key has.
        assert field.get("description") == config_leaves[key].get("description"), key
        assert field.get("default", None) is None, key
        assert any(option.get("type") == "null" for option in field.get("anyOf", [])), key


def test_file_config_records_the_file_and_its_hash(tmp_path):
    path = _write(tmp_path, "x.yaml", _config("x"))
    resolved = file_config(path)
    assert resolved.config.model.name == "x" and resolved.source == str(path) and resolved.overrides == {}


# -- what `make up` sets from the catalogue --------------------------------------------------------

def test_the_model_field_becomes_a_choice_among_the_catalogue_names():
    schema = {"type": "object", "properties": {"model": {"type": "string", "title": "model", "position": 0},
                                               "overrides": {"anyOf": [{"type": "null"}]}}}
    chosen = with_model_choices(schema, ["a", "b"])
    assert chosen["properties"]["model"]["enum"] == ["a", "b"] and chosen["properties"]["model"]["position"] == 0
    assert "enum" not in schema["properties"]["model"]  # the deployment's own schema is not mutated
    assert with_model_choices(schema, []) is schema  # no names: an empty choice would refuse every run
    assert with_model_choices({"properties": {"config": {}}}, ["a"]) == {"properties": {"config": {}}}


def test_each_model_gets_its_own_monitor_schedule_carrying_its_name(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha", monitoring={"schedule": {"interval_minutes": 15}}))
    _write(tmp_path, "b.yaml", _config("beta", monitoring={"schedule": {"cron": "30 2 * * *", "active": False}}))
    schedules = monitor_schedules(load_catalogue(tmp_path))
    assert schedules == [
        {"schedule": {"interval": 900.0, "timezone": "UTC"}, "active": True, "parameters": {"model": "alpha"},
         "slug": schedule_slug("alpha")},
        {"schedule": {"cron": "30 2 * * *", "timezone": "UTC"}, "active": False, "parameters": {"model": "beta"},
         "slug": "model-beta"},
    ]


@pytest.mark.parametrize("spec, message", [
    ({"cron": "every hour"}, "cron line of 5 fields"),
    ({"cron": None}, "needs cron or interval_minutes"),
    ({"interval_minutes": 0.5}, "greater than or equal to 1"),
])
def test_a_bad_monitoring_schedule_is_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        MonitoringSchedule(**spec)


# -- `mlops catalogue` ---------------------------------------------------------------------------

class _Ref:
    def __init__(self, version: str) -> None:
        self.version = version


class _Registry:
    def __init__(self, aliases: dict, runs: dict, down: bool = False) -> None:
        self.aliases, self.runs, self.down = aliases, runs, down

    def version_by_alias(self, name, alias):
        if self.down:
            raise ConnectionError("registry down")
        version = self.aliases.get((name, alias))
        return _Ref(version) if version else None

    def latest_run(self, experiment):
        return self.runs.get(experiment)

    def read_audit(self, name):
        return []


def test_the_listing_reads_each_model_from_its_own_sources(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    _write(tmp_path, "b.yaml", _config("beta"))
    registry = _Registry({("alpha", "champion"): "3", ("alpha", "challenger"): "4", ("beta", "champion"): "1"},
                         {"alpha-monitoring": {"start_time": 1_764_547_200_000, "metrics": {"dataset_drift": 1.0}}})
    ready = {"catalogue": {"alpha": {"ready": True, "loaded": True, "champion": "3"},
                           "beta": {"ready": False, "loaded": False, "champion": None}}}
    alpha, beta = model_statuses(load_catalogue(tmp_path), registry, ready)
    assert (alpha.champion, alpha.challenger, alpha.drift_detected, alpha.serving) == ("3", "4", True, "serving v3")
    assert alpha.last_drift_check == "2025-12-01T00:00:00+00:00"
    assert (beta.champion, beta.challenger, beta.last_drift_check, beta.serving) == ("1", None, None, "loaded on demand")
    table = render_statuses([alpha, beta])
    assert table.splitlines()[0].split()[:3] == ["model", "task", "champion"]
    assert "(drift)" in table.splitlines()[1] and "never" in table.splitlines()[2]


def test_the_listing_survives_a_registry_and_a_serving_app_that_are_down(tmp_path):
    _write(tmp_path, "a.yaml", _config("alpha"))
    (status,) = model_statuses(load_catalogue(tmp_path), _Registry({}, {}, down=True), None)
    assert isinstance(status, ModelStatus)
    assert (status.champion, status.serving) == ("unknown", "unreachable")


def test_serving_state_of_a_single_model_app_and_of_a_model_it_does_not_serve():
    single = {"model_name": "alpha", "ready": True, "models": {"champion": {"version": "2"}}}
    assert serving_state(single, "alpha") == "serving v2"
    assert serving_state(single, "beta") == "not served"


def test_the_catalogue_cli_lists_models_and_exits_2_on_a_refused_file(tmp_path, monkeypatch, capsys):
    from mlops.cli import main

    shutil.copy(ROOT / "configs" / "churn.yaml", tmp_path / "churn.yaml")
    _write(tmp_path, "broken.yaml", "model: [")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLOPS_CATALOGUE", str(tmp_path))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://127.0.0.1:9")  # nothing listens: 'unreachable'
    monkeypatch.setenv("MLOPS_PREFECT_PORT", "9")
    monkeypatch.setenv("MLOPS_MLFLOW_PORT", "9")
    assert main(["catalogue", "--json"]) == 2
    out, err = capsys.readouterr()
    import json

    (row,) = json.loads(out)
    assert row["name"] == "churn-classifier" and row["serving"] == "unreachable" and row["champion"] is None
    (refusal,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert refusal.startswith("error: refused config") and "broken.yaml" in refusal
