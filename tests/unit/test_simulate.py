"""The bundled dataset and the drift simulator are deterministic and drift as advertised."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops.data import fingerprint_frame, read_frame
from mlops.local.bundled import (
    BUNDLED_ROWS,
    BUNDLED_SEED,
    CHURN_LABELS,
    LABELS_PER_CUSTOMER,
    write_bundled,
)
from mlops.local.simulate import (
    DATASETS,
    SPEND_TARGET,
    TARGET,
    TIMESTAMP,
    churn_logit,
    dataset_for_target,
    simulate_churn,
    simulate_churn_labels,
    simulate_customer_features,
    simulate_spend,
)

REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = simulate_churn(2000, seed=3), simulate_churn(2000, seed=3), simulate_churn(2000, seed=4)
    assert fingerprint_frame(a) == fingerprint_frame(b)
    assert fingerprint_frame(a) != fingerprint_frame(c)


def test_shape_types_and_missing_values():
    frame = simulate_churn(5000, seed=1)
    assert len(frame) == 5000
    assert frame[TARGET].isin([0, 1]).all()
    assert 0.1 < frame[TARGET].mean() < 0.5
    assert frame[TIMESTAMP].is_monotonic_increasing
    assert 0 < frame["total_charges"].isna().mean() < 0.03
    assert set(frame["contract"]) == {"month-to-month", "one-year", "two-year"}


@pytest.mark.parametrize(("level", "min_shift"), [("mild", 4.0), ("strong", 20.0)])
def test_drift_moves_the_distribution(level, min_shift):
    base = simulate_churn(20_000, seed=5)
    drifted = simulate_churn(20_000, level, seed=5)
    assert drifted["monthly_charges"].mean() - base["monthly_charges"].mean() > min_shift
    assert drifted["support_calls"].mean() > base["support_calls"].mean()
    share = (drifted["contract"] == "month-to-month").mean()
    assert share > (base["contract"] == "month-to-month").mean()


def test_rejects_non_positive_rows():
    with pytest.raises(ValueError):
        simulate_churn(0)


# -- the spend dataset (the regressor's) and the bundled files ------------------------------------


def test_spend_is_deterministic_by_seed():
    a, b, c = simulate_spend(2000, seed=3), simulate_spend(2000, seed=3), simulate_spend(2000, seed=4)
    assert fingerprint_frame(a) == fingerprint_frame(b)
    assert fingerprint_frame(a) != fingerprint_frame(c)


@pytest.mark.parametrize("drift", ["none", "strong"])
def test_spend_has_the_same_customers_as_churn_and_no_churn_label(drift):
    spend, churn = simulate_spend(3000, drift, seed=7), simulate_churn(3000, drift, seed=7)
    assert TARGET not in spend.columns  # whether a customer leaves would leak their spend
    assert spend.drop(columns=[SPEND_TARGET]).equals(churn.drop(columns=[TARGET]))  # missing totals too


def test_spend_is_a_non_negative_amount_driven_by_the_features():
    frame = simulate_spend(20_000, seed=1)
    spend = frame[SPEND_TARGET]
    assert spend.notna().all() and (spend >= 0).all()
    assert 70 < spend.mean() < 110 and 15 < spend.std() < 40
    assert frame.groupby("plan")[SPEND_TARGET].mean().idxmax() == "premium"
    assert spend.corr(frame["monthly_charges"]) > 0.6


def _fit_on_reference():
    from sklearn.ensemble import HistGradientBoostingRegressor

    def features(frame):
        return frame.drop(columns=[SPEND_TARGET, TIMESTAMP]).astype(
            {c: "category" for c in ("contract", "plan", "payment_method", "region")}
        )

    reference = simulate_spend(5000, seed=8)
    model = HistGradientBoostingRegressor(max_iter=60, categorical_features="from_dtype", random_state=0)
    model.fit(features(reference), reference[SPEND_TARGET])

    def rmse(frame):
        return float(((model.predict(features(frame)) - frame[SPEND_TARGET]) ** 2).mean() ** 0.5)

    return rmse


@pytest.mark.usefixtures("one_openmp_thread")
def test_only_concept_drift_breaks_a_spend_model_trained_before_it():
    rmse = _fit_on_reference()
    calm, mild, strong = (rmse(simulate_spend(3000, level, seed=9)) for level in ("none", "mild", "strong"))
    assert calm < 7.5  # the noise floor is 6
    assert mild < calm + 1.5  # covariate shift only: the relation still holds
    assert strong > 3 * calm  # concept drift: support calls and contracts now cut spend


def test_datasets_are_found_by_their_target():
    assert dataset_for_target("monthly_spend").simulate is simulate_spend
    assert dataset_for_target("churned").simulate is simulate_churn
    with pytest.raises(ValueError, match="no simulator for target column 'price'.*monthly_spend"):
        dataset_for_target("price")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_bundled_file_is_its_simulators_output(name):
    dataset = DATASETS[name]
    bundled = read_frame(str(REPO / "data" / dataset.file_name))
    assert fingerprint_frame(bundled) == fingerprint_frame(dataset.simulate(BUNDLED_ROWS, seed=BUNDLED_SEED))
    assert (REPO / "data" / dataset.file_name).stat().st_size < 2_000_000


def test_make_data_rewrites_the_bundled_files_unchanged(tmp_path):
    written = write_bundled(tmp_path)
    features = [f"features/{name}.parquet" for name in ("customer_activity", "customer_profile")]
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == sorted([d.file_name for d in DATASETS.values()] + features + [CHURN_LABELS])
    for path in written:
        bundled = REPO / "data" / path.relative_to(tmp_path)
        assert fingerprint_frame(read_frame(str(path))) == fingerprint_frame(read_frame(str(bundled)))
    assert sum((REPO / "data" / name).stat().st_size for name in features) < 2_000_000


def test_customer_features_are_deterministic_keyed_and_change_over_time():
    tables = simulate_customer_features(50, 3, seed=1)
    again = simulate_customer_features(50, 3, seed=1)
    assert {k: fingerprint_frame(v) for k, v in tables.items()} == {k: fingerprint_frame(v) for k, v in again.items()}
    profile, activity = tables["customer_profile"], tables["customer_activity"]
    assert profile["customer_id"].is_unique and len(activity) == 150
    assert str(activity["event_timestamp"].dt.tz) == "UTC"
    assert not activity.duplicated(["customer_id", "event_timestamp"]).any()
    # A customer's charges move between months: what a point-in-time join must not mix up.
    per_customer = activity.groupby("customer_id")["monthly_charges"].nunique()
    assert (per_customer > 1).mean() > 0.9
    with pytest.raises(ValueError, match="at least 1"):
        simulate_customer_features(0, 3)


def _auc(scores, labels) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def test_churn_labels_are_explained_by_the_features_as_of_their_time():
    tables = simulate_customer_features(400, 6, seed=3)
    labels = simulate_churn_labels(tables, 5, seed=3)
    assert list(labels.columns) == ["customer_id", TIMESTAMP, TARGET] and len(labels) == 2000
    assert labels[TIMESTAMP].is_monotonic_increasing and labels[TIMESTAMP].dt.tz is None
    profile, activity = tables["customer_profile"], tables["customer_activity"]
    query = labels.assign(at=labels[TIMESTAMP].dt.tz_localize("UTC")).sort_values("at")
    snapshots = activity.sort_values("event_timestamp")

    def features(direction: str):
        # An independent as-of join (pandas, not Feast): the latest snapshot at or before each label
        # ("backward"), or the first one after it ("forward": the future a leaky join would use).
        joined = pd.merge_asof(query, snapshots, left_on="at", right_on="event_timestamp", by="customer_id",
                               direction=direction, allow_exact_matches=direction == "backward")
        return joined.merge(profile.drop(columns="event_timestamp"), on="customer_id")

    as_of = features("backward")
    # Every label has a snapshot before it, no more than 28 days old (the activity TTL is 35).
    assert as_of["event_timestamp"].notna().all()
    assert ((as_of["at"] - as_of["event_timestamp"]) < pd.Timedelta(days=28)).all()
    future = features("forward").dropna(subset=["event_timestamp"])
    # The labels follow the churn model on the as-of features, and clearly less on later ones.
    right = _auc(churn_logit(as_of), as_of[TARGET])
    leaked = _auc(churn_logit(future), future[TARGET])
    assert right > 0.75 and right > leaked + 0.03
    with pytest.raises(ValueError, match="at least 1"):
        simulate_churn_labels(tables, 0)


def test_the_bundled_churn_labels_are_their_simulators_output():
    tables = simulate_customer_features(1_000, 6, seed=BUNDLED_SEED)
    bundled = read_frame(str(REPO / "data" / CHURN_LABELS))
    assert fingerprint_frame(bundled) == fingerprint_frame(simulate_churn_labels(tables, LABELS_PER_CUSTOMER, seed=BUNDLED_SEED))
