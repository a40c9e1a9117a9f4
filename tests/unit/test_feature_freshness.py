"""Feature freshness: the pure decision (bound, age, stale), its event, and the adapter reading the tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops import events, features
from mlops.errors import ConfigError
from mlops.features.freshness import (
    STALENESS_TAG,
    FreshnessReport,
    assess,
    render_markdown,
    staleness_bound,
)
from tests.feature_repo import balances, make_repo

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BOUND = {STALENESS_TAG: "120"}


@pytest.mark.parametrize("minutes_ago, tags, stale", [
    (60, BOUND, False),
    (120, BOUND, False),  # exactly at the bound is still fresh
    (121, BOUND, True),
    (None, BOUND, True),  # never materialized
    (10_000, {}, False),  # no bound, never stale
    (None, None, False),
])
def test_a_view_is_stale_past_its_bound_or_never_materialized(minutes_ago, tags, stale):
    last = None if minutes_ago is None else NOW - timedelta(minutes=minutes_ago)
    freshness = assess("v", last, tags, NOW)
    assert freshness.stale is stale
    assert freshness.age_minutes == minutes_ago


@pytest.mark.parametrize("raw", ["two hours", "0", "-5", "nan", "inf", ""])
def test_a_bad_bound_is_a_config_error_naming_the_view(raw):
    with pytest.raises(ConfigError, match=f"feature view 'v': tag {STALENESS_TAG}="):
        staleness_bound("v", {STALENESS_TAG: raw})


def test_the_stale_event_names_the_view_and_carries_view_time_bound_and_age():
    freshness = assess("customer_activity", NOW - timedelta(minutes=200), BOUND, NOW)
    name, resource, payload = events.stale_event(freshness, "monitor", "churn-classifier")
    assert name == events.FEATURES_STALE == "mlops.features.stale"
    assert resource["prefect.resource.id"] == "mlops.feature_view.customer_activity"
    assert payload == {
        "view": "customer_activity", "last_materialized": "2026-01-01T08:40:00+00:00", "max_staleness_minutes": 120.0,
        "age_minutes": 200.0, "checked_at": NOW.isoformat(), "stale": True, "source": "monitor",
        "model_name": "churn-classifier",
    }


def test_the_report_and_its_markdown_put_stale_views_first():
    report = FreshnessReport(
        (assess("a_fresh", NOW - timedelta(minutes=5), BOUND, NOW), assess("b_never", None, BOUND, NOW)),
        feature_service="svc",
    )
    assert report.stale == ["b_never"]
    assert report.summary() == "feature service svc: 1 of 2 views stale (b_never)"
    rows = [line for line in render_markdown(report).splitlines() if line.startswith("| ") and "view" not in line]
    assert rows == ["| b_never | never | - | 120 | yes |", "| a_fresh | 2026-01-01T11:55:00+00:00 | 5.0 | 120 | no |"]
    unknown = FreshnessReport(feature_service="svc", error="feature store unreachable: x")
    assert unknown.stale == [] and "freshness unknown" in unknown.summary() and unknown.to_dict()["error"]


def _tagged_repo(tmp_path: Path, bound: str) -> Path:
    repo = make_repo(tmp_path, balances())
    definitions = repo / "definitions.py"
    definitions.write_text(definitions.read_text().replace(
        "ttl=timedelta", f"tags={{{STALENESS_TAG!r}: {bound!r}}}, ttl=timedelta"))
    return repo


def test_the_adapter_reads_the_bound_from_the_registry_and_the_time_from_materialization(tmp_path):
    repo = _tagged_repo(tmp_path, "30")
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)
    [never] = features.view_freshness(store)
    assert (never.view, never.max_staleness_minutes, never.last_materialized, never.stale) == ("balance", 30.0, None, True)

    [status] = features.materialize(store)
    [fresh] = features.view_freshness(store, ["balance"], now=status.last_materialized + timedelta(minutes=29))
    assert fresh.last_materialized == status.last_materialized and not fresh.stale
    [late] = features.view_freshness(store, now=status.last_materialized + timedelta(minutes=31))
    assert late.stale and late.age_minutes == pytest.approx(31)


def test_a_service_names_its_views_and_an_unknown_one_names_the_known(tmp_path):
    repo = _tagged_repo(tmp_path, "30")
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)
    assert features.service_views(store, "scorer") == ["balance"]
    with pytest.raises(ConfigError, match=r"unknown feature service 'nope' \(known: scorer\)"):
        features.service_views(store, "nope")


def test_every_view_of_the_repository_has_a_valid_bound():
    from feast import FeatureView

    views = [o for o in features.load_definitions(REPO / "features") if isinstance(o, FeatureView)]
    assert {v.name for v in views} == {"customer_profile", "customer_activity"}
    for view in views:
        bound = staleness_bound(view.name, view.tags)
        # Past one missed run of the hourly materialize/hourly: neither shorter nor unbounded.
        assert bound is not None and bound >= 60, view.name
