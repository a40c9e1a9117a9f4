"""Model CI's pure parts (mlops/ci.py): which models a git change selects, the champion comparison,
and the report's JSON and Markdown."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops import ci
from mlops.catalogue import load_catalogue
from mlops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository holding a copy of the catalogue and the feature repository, committed."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "customers.py").write_text("# features\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def select(repo: Path, ref: str | None) -> ci.Selection:
    catalogue = load_catalogue(repo / "configs")
    changed = None if ref is None else ci.changed_files(ref, ["configs", "features"], cwd=repo)
    return ci.select_models(catalogue, changed, repo / "features")


def test_nothing_changed_selects_nothing_and_no_ref_selects_every_model(repo):
    assert select(repo, "HEAD").models == []
    assert select(repo, "HEAD").unchanged == ["churn-classifier", "spend-regressor"]
    assert select(repo, None).models == ["churn-classifier", "spend-regressor"]


def test_a_changed_config_selects_its_model_only(repo):
    path = repo / "configs" / "spend.yaml"
    path.write_text(path.read_text().replace("r2: 0.85", "r2: 0.8"))
    git(repo, "commit", "-q", "-am", "looser gate")
    picked = select(repo, "HEAD~1")
    assert (picked.models, picked.unchanged, picked.refused) == (["spend-regressor"], ["churn-classifier"], [])


def test_an_uncommitted_or_untracked_change_counts_too(repo):
    raw = yaml.safe_load((repo / "configs" / "spend.yaml").read_text())
    raw["model"]["name"] = "spend-two"
    (repo / "configs" / "spend2.yaml").write_text(yaml.safe_dump(raw))
    assert select(repo, "HEAD").models == ["spend-two"]


def test_a_feature_change_selects_the_store_fed_models(repo):
    (repo / "features" / "customers.py").write_text("# features, changed\n")
    assert select(repo, "HEAD").models == ["churn-classifier"]  # spend reads a flat file


def test_a_broken_changed_config_is_refused_with_its_reason(repo):
    (repo / "configs" / "spend.yaml").write_text("dataset: {uri: x.csv, target: y}\nmodel: {name: s, colour: red}\n")
    picked = select(repo, "HEAD")
    assert picked.models == []
    [(path, message)] = picked.refused
    assert path.name == "spend.yaml" and message.endswith("unknown key 'model.colour'")


def test_an_unknown_ref_is_a_config_error(repo):
    with pytest.raises(ConfigError, match="--changed-since: unknown git ref 'nope'"):
        ci.changed_files("nope", ["configs"], cwd=repo)


def test_comparison_says_better_worse_or_why_there_is_none():
    champion = ci.Champion("3", {"rmse": 6.0})
    assert ci.compare("rmse", False, {"rmse": 5.5}, champion).verdict == "rmse 5.5000 vs champion v3 6.0000: better by 0.5000"
    assert ci.compare("rmse", False, {"rmse": 6.5}, champion).verdict.endswith("worse by 0.5000")
    assert ci.compare("roc_auc", True, {"roc_auc": 0.8}, champion).verdict == "champion v3 has no recorded roc_auc"
    assert ci.compare("rmse", False, {"rmse": 5.0}, None).verdict == ci.NO_CHAMPION
    assert ci.compare("rmse", False, {"rmse": 5.0}, None, "registry x unreachable: no champion to compare").verdict.startswith("registry x")



def test_same_holdout_scores_win_over_the_recorded_metric_and_say_so():
    champion = ci.Champion("3", {"rmse": 6.0})
    shared = ci.SharedHoldout(120, {"rmse": 5.8}, {"rmse": 5.2})
    comparison = ci.compare("rmse", False, {"rmse": 5.5}, champion, shared=shared)
    assert (comparison.challenger, comparison.champion) == (5.8, 5.2)
    assert comparison.note == "both scored on this run's holdout (120 rows)"
    assert comparison.verdict == "rmse 5.8000 vs champion v3 5.2000: worse by 0.6000"
    # A shared score without the metric (or not finite) falls back to the recorded one.
    fallback = ci.compare("rmse", False, {"rmse": 5.5}, champion, shared=ci.SharedHoldout(120, {}, {"rmse": float("nan")}))
    assert (fallback.challenger, fallback.champion) == (5.5, 6.0)
    assert fallback.note == "the champion's metric is from its own training holdout, not this one"


def test_a_champion_that_could_not_be_scored_is_compared_by_its_recorded_metric_and_says_why():
    champion = ci.Champion("3", {"rmse": 6.0}, unloadable="RegistryError: artifact store unreachable")
    comparison = ci.compare("rmse", False, {"rmse": 5.5}, champion)
    assert comparison.champion == 6.0
    assert comparison.note.endswith("(it could not be scored here: RegistryError: artifact store unreachable)")

def _checks() -> list[ci.ModelCheck]:
    behaviour = {"passed": False, "tests": [
        {"name": "calls", "kind": "directional", "passed": False, "detail": "support_calls +2: ...",
         "failing_cases": [{"support_calls": 1, "before": 0.4, "after": 0.3}]}]}
    refused = ci.ModelCheck("churn", "configs/churn.yaml", ci.STATUS_REFUSED, 4, "behavioural test failed: 'calls' ...",
                            metrics={"roc_auc": 0.8}, behaviour=behaviour,
                            gates=[{"metric": "roc_auc", "bound": "min", "threshold": 0.75, "value": 0.8, "passed": True}],
                            comparison=ci.compare("roc_auc", True, {"roc_auc": 0.8}, None))
    return [ci.ModelCheck("spend", "configs/spend.yaml", ci.STATUS_PASSED, 0), refused]


def test_report_json_shape_and_exit_code():
    report = ci.CiReport("origin/main", _checks(), ["other"])
    payload = json.loads(report.to_json())
    assert (payload["status"], payload["exit_code"], payload["changed_since"], payload["unchanged"]) == ("failed", 4, "origin/main", ["other"])
    churn = payload["models"][1]
    assert {"name", "config_file", "status", "exit_code", "error", "metrics", "gates", "behaviour", "comparison",
            "summary", "card_summary"} <= set(churn)
    assert churn["summary"] == ["**refused** (exit 4): behavioural test failed: 'calls' ...", "quality gates: 1 of 1 passed",
                                "behavioural tests: 0 of 1 passed", "champion: no champion to compare"]
    assert ci.CiReport(None, _checks()[:1]).exit_code == 0


def test_report_markdown_has_each_models_summary_card_place_and_failing_cases():
    text = ci.CiReport("origin/main", _checks()).to_markdown()
    assert text.startswith("# Model CI: failed (exit 4)")
    assert text.count("### Summary") == 2 and text.count("### Model card") == 2
    assert "| calls | directional | FAIL | support_calls +2: ... |" in text
    assert '{"support_calls": 1, "before": 0.4, "after": 0.3}' in text
    assert "No model's config or features changed." in ci.CiReport("HEAD", []).to_markdown()


@pytest.mark.parametrize("option", ["--output={victim}", "--output=../victim.txt", "-O{victim}", "--no-index"])
def test_a_ref_that_reads_as_a_git_option_is_an_unknown_ref_and_writes_nothing(repo, option):
    # `--changed-since=--output=FILE` emptied FILE through `git diff` and the run said "passed".
    victim = repo / "victim.txt"
    victim.write_text("kept\n")
    ref = option.format(victim=victim)
    with pytest.raises(ConfigError) as caught:
        ci.changed_files(ref, ["configs", "features"], cwd=repo / "configs")
    assert str(caught.value).startswith(f"--changed-since: unknown git ref '{ref}'")
    assert "\n" not in str(caught.value)
    assert victim.read_text() == "kept\n"


def test_a_ref_is_resolved_to_its_commit_before_the_diff(repo):
    (repo / "configs" / "spend.yaml").write_text((repo / "configs" / "spend.yaml").read_text() + "\n")
    git(repo, "commit", "-q", "-am", "touch")
    git(repo, "tag", "base", "HEAD~1")
    assert select(repo, "base").models == ["spend-regressor"]
    with pytest.raises(ConfigError, match="unknown git ref 'base:configs'"):
        ci.changed_files("base:configs", ["configs"], cwd=repo)  # a tree, not a commit


def test_a_change_no_model_checks_is_not_passed(repo):
    # Feature definitions changed, but no model reads the store: nothing was checked, and the
    # run must not say it passed (exit 2 naming what changed).
    for path in (repo / "configs").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw["dataset"].pop("feature_service", None)
        path.write_text(yaml.safe_dump(raw))
    git(repo, "commit", "-q", "-am", "no store-fed model")
    (repo / "features" / "customers.py").write_text("# features, changed\n")
    (repo / "configs" / ".draft.yaml").write_text("model: {name: draft}\n")  # skipped by the catalogue
    picked = select(repo, "HEAD")
    assert picked.models == []
    assert sorted(p.name for p in picked.unchecked) == [".draft.yaml", "customers.py"]
    report = ci.CiReport("HEAD", [], picked.unchanged, [str(p) for p in picked.unchecked])
    payload = json.loads(report.to_json())
    assert (payload["status"], payload["exit_code"]) == ("failed", 2)
    assert report.to_markdown().startswith("# Model CI: failed (exit 2)")
    assert report.error.startswith("changed since HEAD but no model checked: ")


def test_a_removed_config_is_a_change_no_model_checks(repo):
    (repo / "configs" / "spend.yaml").unlink()
    picked = select(repo, "HEAD")
    assert (picked.models, [p.name for p in picked.unchecked]) == ([], ["spend.yaml"])


def test_nothing_changed_is_not_called_passed_either():
    payload = json.loads(ci.CiReport("HEAD", [], ["churn-classifier"]).to_json())
    assert (payload["status"], payload["exit_code"]) == ("nothing-to-check", 0)
    assert ci.CiReport("HEAD", []).to_markdown().startswith("# Model CI: nothing to check")


def test_the_command_refuses_an_option_as_ref_in_one_line_exit_2(repo, monkeypatch, capsys):
    from mlops import cli

    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLOPS_CATALOGUE", raising=False)
    monkeypatch.delenv("MLOPS_FEATURE_REPO", raising=False)
    victim = repo / "victim.txt"
    victim.write_text("kept\n")
    assert cli.main(["ci", f"--changed-since=--output={victim}", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: --changed-since: unknown git ref '--output={victim}' "
                                         "(fatal: Needed a single revision)"]
    assert json.loads(captured.out)["exit_code"] == 2
    assert victim.read_text() == "kept\n"
