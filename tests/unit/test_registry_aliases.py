"""Alias rules: the pure promotion/rollback plans, and what the registry says about aliases (a copied
embedded store, no server)."""

from __future__ import annotations

import shutil

import pytest

from mlops.errors import ChampionMoved, ModelNotFound
from mlops.registry import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS_CHAMPION,
    ALIAS_ROLLED_BACK,
    AliasPlan,
    Registry,
    plan_promotion,
    plan_rollback,
)


def test_aliases_of_reports_who_holds_an_alias_after_another_run_took_it(tmp_path, mlflow_template):
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = registry.client
    client.create_registered_model("m")
    first = client.create_model_version("m", source=(tmp_path / "a").as_uri()).version
    client.set_registered_model_alias("m", ALIAS_CHALLENGER, first)
    ref = registry.get_version("m", str(first))
    # A second train registers and takes `challenger` after the first set it.
    second = client.create_model_version("m", source=(tmp_path / "b").as_uri()).version
    client.set_registered_model_alias("m", ALIAS_CHALLENGER, second)
    assert ref.aliases == (ALIAS_CHALLENGER,)  # what the first run read when it set the alias
    assert registry.aliases_of("m", str(first)) == ()
    assert registry.aliases_of("m", str(second)) == (ALIAS_CHALLENGER,)


# -- the alias rules as pure plans (no MLflow) -------------------------------------------------------


def _moves(plan: AliasPlan) -> list[tuple[str, str | None]]:
    return [(move.alias, move.version) for move in plan.moves]


def test_first_promotion_only_sets_the_champion():
    plan = plan_promotion("m", "1", champion=None, expected=None)
    assert _moves(plan) == [(ALIAS_CHAMPION, "1")]
    assert (plan.champion, plan.demoted) == ("1", None)


def test_promotion_writes_previous_champion_before_moving_the_champion():
    plan = plan_promotion("m", "3", champion="2", expected="2")
    # previous-champion first: a reader never sees a moment without a champion to fall back to.
    assert _moves(plan) == [(ALIAS_PREVIOUS_CHAMPION, "2"), (ALIAS_CHAMPION, "3")]
    assert (plan.champion, plan.demoted) == ("3", "2")


def test_promoting_the_champion_again_keeps_previous_champion():
    # A retried deploy whose first attempt already moved the alias: nothing is demoted.
    plan = plan_promotion("m", "3", champion="3", expected="2")
    assert _moves(plan) == [(ALIAS_CHAMPION, "3")] and plan.demoted is None


@pytest.mark.parametrize(("champion", "expected"), [("4", "2"), ("4", None), (None, "2")])
def test_a_champion_that_moved_during_the_deploy_stops_the_promotion(champion, expected):
    with pytest.raises(ChampionMoved, match="while this deploy ran") as err:
        plan_promotion("m", "3", champion=champion, expected=expected)
    assert "v3 was compared against" in str(err.value)


def test_rollback_restores_the_previous_champion_and_marks_the_demoted_one():
    plan = plan_rollback("m", champion="3", previous="2")
    assert _moves(plan) == [(ALIAS_ROLLED_BACK, "3"), (ALIAS_CHAMPION, "2"), (ALIAS_PREVIOUS_CHAMPION, None)]
    assert (plan.champion, plan.demoted) == ("2", "3")


@pytest.mark.parametrize("champion", [None, "2"], ids=["no-champion", "champion-is-previous"])
def test_rollback_without_another_champion_demotes_nobody(champion):
    plan = plan_rollback("m", champion=champion, previous="2")
    assert _moves(plan) == [(ALIAS_CHAMPION, "2"), (ALIAS_PREVIOUS_CHAMPION, None)]
    assert plan.demoted is None


def test_rollback_needs_a_previous_champion():
    with pytest.raises(ModelNotFound, match="no 'previous-champion' version to roll back to"):
        plan_rollback("m", champion="3", previous=None)


def test_registry_applies_the_plans_to_a_real_store(tmp_path, mlflow_template):
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.client.create_registered_model("m")
    for name in "abc":
        registry.client.create_model_version("m", source=(tmp_path / name).as_uri())
    assert registry.promote_champion("m", "1", expected=None) is None
    assert registry.promote_champion("m", "2", expected="1") == "1"
    assert registry.rollback_champion("m") == ("2", "1")
    held = {ref.version: ref.aliases for ref in registry.list_versions_with_aliases("m")}
    assert held == {"1": (ALIAS_CHAMPION,), "2": (ALIAS_ROLLED_BACK,), "3": ()}
