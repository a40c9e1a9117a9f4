"""Deterministic customer data: the bundled datasets and a simulator of later batches.

One population of customers (age, tenure, charges, support calls, contract, ...) with two targets:
`simulate_churn` labels whether each customer leaves (the classifier's data) and `simulate_spend`
what each spends next month (the regressor's). The same seed gives the same customers in both.

Every value comes from a seeded numpy Generator, so the same (rows, drift, seed) gives the same
frame on any machine; a million rows take a couple of seconds. Drift is controllable:
covariate shift moves the charges, support calls and contract mix; concept drift changes how
the features relate to the target, so a model trained before it loses accuracy.

`python -m mlops.local.bundled` (or `make data`) rewrites the bundled files in data/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

DriftLevel = Literal["none", "mild", "strong"]

TARGET = "churned"
TIMESTAMP = "event_time"
CONTRACTS = ("month-to-month", "one-year", "two-year")
PLANS = ("basic", "standard", "premium")
PAYMENT_METHODS = ("card", "bank-transfer", "electronic-check", "mailed-check")
REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class DriftSpec:
    """How far a batch departs from the reference population."""

    charges_shift: float = 0.0  # added to the mean monthly charge
    support_rate_factor: float = 1.0  # multiplies the support-call rate
    month_to_month_share: float = 0.55  # share of month-to-month contracts
    tenure_mean: float = 24.0  # mean customer tenure in months
    electronic_check_share: float = 0.3  # share paying by electronic check
    concept: float = 0.0  # 0 = reference relation; 1 = support calls and contract act reversed


DRIFT_LEVELS: dict[str, DriftSpec] = {
    "none": DriftSpec(),
    "mild": DriftSpec(charges_shift=8.0, support_rate_factor=1.3, month_to_month_share=0.62),
    "strong": DriftSpec(
        charges_shift=30.0, support_rate_factor=2.5, month_to_month_share=0.8,
        tenure_mean=12.0, electronic_check_share=0.55, concept=1.0,
    ),
}


def _customers(rng: np.random.Generator, rows: int, spec: DriftSpec, start: str) -> pd.DataFrame:
    """The customers' features and event times: what every bundled dataset shares.

    The draws come first and in a fixed order, so the same seed gives the same customers whichever
    target is simulated after them (churn.parquet and spend.parquet hold the same people).
    """
    age = rng.integers(18, 81, rows)
    tenure = np.minimum(rng.exponential(spec.tenure_mean, rows).astype(np.int64), 72)
    monthly = np.clip(rng.normal(65.0 + spec.charges_shift, 22.0, rows), 18.0, None).round(2)
    total = (monthly * tenure * rng.uniform(0.95, 1.05, rows)).round(2)
    support_calls = rng.poisson(1.2 * spec.support_rate_factor, rows)
    products = rng.integers(1, 6, rows)
    others = (1.0 - spec.month_to_month_share) / 2
    contract = rng.choice(CONTRACTS, rows, p=[spec.month_to_month_share, others, others])
    plan = rng.choice(PLANS, rows, p=[0.5, 0.35, 0.15])
    rest = (1.0 - spec.electronic_check_share) / 0.7
    payment = rng.choice(
        PAYMENT_METHODS, rows, p=[0.35 * rest, 0.25 * rest, spec.electronic_check_share, 0.1 * rest]
    )
    region = rng.choice(REGIONS, rows)
    # A minute apart, so a time-based split and monitoring windows have something to cut.
    event_time = pd.Timestamp(start) + pd.to_timedelta(np.arange(rows), unit="min")
    return pd.DataFrame(
        {
            TIMESTAMP: event_time,
            "age": age,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls,
            "num_products": products,
            "contract": contract,
            "plan": plan,
            "payment_method": payment,
            "region": region,
        }
    )


def _with_missing_totals(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    # Real billing exports miss some totals; the pipeline must impute, not crash.
    missing = rng.uniform(0.0, 1.0, len(frame)) < 0.01
    frame.loc[missing, "total_charges"] = np.nan
    return frame


def _start(rows: int, drift: DriftLevel | DriftSpec) -> DriftSpec:
    if rows < 1:
        raise ValueError("rows must be at least 1")
    return DRIFT_LEVELS[drift] if isinstance(drift, str) else drift


def simulate_churn(
    rows: int,
    drift: DriftLevel | DriftSpec = "none",
    seed: int = 0,
    start: str = "2025-01-01",
) -> pd.DataFrame:
    """Generate `rows` customers with features, an event time and the churn label."""
    spec = _start(rows, drift)
    rng = np.random.default_rng(seed)
    frame = _customers(rng, rows, spec, start)
    logit = churn_logit(frame, spec)
    frame[TARGET] = (rng.uniform(0.0, 1.0, rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return _with_missing_totals(rng, frame)


def churn_logit(frame: pd.DataFrame, spec: DriftSpec = DRIFT_LEVELS["none"]) -> np.ndarray:
    """The log-odds that each customer of `frame` leaves: the one churn model every label comes from.

    `simulate_churn` applies it to its customers and `simulate_churn_labels` to each customer's
    store features as of the label's time, so both kinds of label mean the same thing.
    """
    support_calls, monthly, tenure = frame["support_calls"], frame["monthly_charges"], frame["tenure_months"]
    contract, payment, plan = frame["contract"], frame["payment_method"], frame["plan"]

    # Concept drift turns the reference relations around: at 1, support calls and the contract
    # type push churn the other way and price matters more.
    turn = 1.0 - 2.0 * spec.concept
    support_weight = 0.45 * turn
    price_weight = 0.025 + 0.02 * spec.concept
    return (
        -1.2
        + support_weight * support_calls
        + price_weight * (monthly - 65.0)
        - 0.05 * tenure
        + turn * np.select([contract == "month-to-month", contract == "one-year"], [1.1, -0.2], -1.0)
        + np.where(payment == "electronic-check", 0.5, 0.0)
        - 0.15 * (frame["num_products"] - 3)
        + np.where(plan == "premium", -0.3, 0.0)
        + 0.004 * (frame["age"] - 45)
    ).to_numpy()


SPEND_TARGET = "monthly_spend"
PLAN_ADD_ON = {"basic": 0.0, "standard": 10.0, "premium": 28.0}
REGION_OFFSET = {"north": 0.0, "south": -3.0, "east": 4.0, "west": 2.0}


def simulate_spend(
    rows: int,
    drift: DriftLevel | DriftSpec = "none",
    seed: int = 0,
    start: str = "2025-01-01",
) -> pd.DataFrame:
    """Generate `rows` customers with features, an event time and next month's spend (the target).

    The same seed gives the same customers as `simulate_churn`; the churn label is not included,
    since whether a customer leaves would leak what they spend.
    """
    spec = _start(rows, drift)
    rng = np.random.default_rng(seed)
    frame = _customers(rng, rows, spec, start)
    contract, plan = frame["contract"], frame["plan"]

    # Concept drift: at 1, support calls mean complaints that cut spend instead of paid support,
    # extra products add half as much, premium customers downgrade their add-ons and
    # month-to-month customers spend 30% less; a model trained before it misjudges every one.
    c = spec.concept
    expected = (
        frame["monthly_charges"] * np.where(contract == "month-to-month", 1.0 - 0.3 * c, 1.0)
        + plan.map(PLAN_ADD_ON).to_numpy() * np.where(plan == "premium", 1.0 - 0.7 * c, 1.0)
        + 6.0 * (1.0 - 0.5 * c) * (frame["num_products"] - 1)
        + (2.5 - 6.5 * c) * frame["support_calls"]
        + 0.15 * np.minimum(frame["tenure_months"], 48)
        - np.select([contract == "two-year", contract == "one-year"], [8.0, 4.0], 0.0)
        + frame["region"].map(REGION_OFFSET).to_numpy()
    ).to_numpy()
    # Skip the draw simulate_churn spends on its label, so that the missing totals fall on the same
    # customers in both datasets; the spend noise comes after them.
    rng.uniform(0.0, 1.0, rows)
    frame = _with_missing_totals(rng, frame)
    spend = expected + rng.normal(0.0, 6.0, rows)
    frame[SPEND_TARGET] = np.clip(spend, 0.0, None).round(2)
    return frame


@dataclass(frozen=True)
class Dataset:
    """A simulated dataset: its simulator, the target it labels and its file in data/ (mlops.local.bundled)."""

    name: str
    target: str
    simulate: Callable[..., pd.DataFrame]

    @property
    def file_name(self) -> str:
        return f"{self.name}.parquet"


DATASETS: dict[str, Dataset] = {
    "churn": Dataset("churn", TARGET, simulate_churn),
    "spend": Dataset("spend", SPEND_TARGET, simulate_spend),
}


def dataset_for_target(target: str) -> Dataset:
    """The simulated dataset whose target column is `target`."""
    for dataset in DATASETS.values():
        if dataset.target == target:
            return dataset
    known = ", ".join(f"{d.target} ({d.name})" for d in DATASETS.values())
    raise ValueError(f"no simulator for target column '{target}' (known: {known})")


# -- the feature store's sources (features/, docs/features.md) ------------------------------------

ENTITY_KEY = "customer_id"
FEATURE_TIMESTAMP = "event_timestamp"
PROFILE_FEATURES = ("age", "contract", "plan", "payment_method", "region")
ACTIVITY_FEATURES = ("tenure_months", "monthly_charges", "total_charges", "support_calls", "num_products")


def simulate_customer_features(
    customers: int, months: int, seed: int = 0, start: str = "2025-01-01"
) -> dict[str, pd.DataFrame]:
    """Feature tables keyed by `customer_id`: one profile row each, and one activity row a month.

    The first snapshot is the population `simulate_churn` draws, so the store serves the same kind
    of customers as the flat files. Later months move the charges and redraw support calls, so a
    customer's features change over time: that change is what point-in-time joins must respect.
    Timestamps are UTC (Feast compares them with its own tz-aware clock); each customer's rows are
    a minute apart from the previous customer's, so no two events share a stamp.
    """
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    rng = np.random.default_rng(seed)
    base = _customers(rng, customers, DRIFT_LEVELS["none"], start)
    ids = np.arange(1, customers + 1, dtype=np.int64)
    offset = pd.to_timedelta(np.arange(customers), unit="min")
    origin = pd.Timestamp(start, tz="UTC")
    profile = pd.DataFrame({ENTITY_KEY: ids, FEATURE_TIMESTAMP: origin + offset})
    for column in PROFILE_FEATURES:
        profile[column] = base[column].to_numpy()

    snapshots = []
    monthly = base["monthly_charges"].to_numpy()
    total = base["total_charges"].to_numpy()
    for month in range(months):
        if month:
            monthly = np.clip(monthly + rng.normal(0.0, 4.0, customers), 18.0, None).round(2)
            total = (total + monthly).round(2)
        snapshots.append(
            pd.DataFrame(
                {
                    ENTITY_KEY: ids,
                    FEATURE_TIMESTAMP: origin + pd.DateOffset(months=month) + offset,
                    "tenure_months": base["tenure_months"].to_numpy() + month,
                    "monthly_charges": monthly,
                    "total_charges": total,
                    "support_calls": base["support_calls"].to_numpy() if not month
                    else rng.poisson(1.2, customers),
                    "num_products": base["num_products"].to_numpy(),
                }
            )
        )
    activity = pd.concat(snapshots, ignore_index=True)
    return {"customer_profile": profile, "customer_activity": activity}


def simulate_churn_labels(
    tables: dict[str, pd.DataFrame], labels_per_customer: int, seed: int = 0
) -> pd.DataFrame:
    """An entity frame for the feature store: `customer_id`, the label's time and `churned`.

    Each label is drawn from `churn_logit` applied to the customer's features AS OF its time: the
    profile and the latest activity snapshot stamped at or before it, never a later one. So the
    store's point-in-time join explains the labels, and a join that leaked later snapshots would
    explain them worse. Label times fall between a snapshot and the next one (well within the
    activity view's 35-day TTL); times are naive UTC, like the flat files' `event_time`.
    """
    if labels_per_customer < 1:
        raise ValueError("labels_per_customer must be at least 1")
    profile, activity = tables["customer_profile"], tables["customer_activity"]
    rng = np.random.default_rng([seed, 16])
    # Which monthly snapshot each label follows, and how long after it (1 hour to 28 days) it is stamped.
    snapshots = activity.sort_values([ENTITY_KEY, FEATURE_TIMESTAMP], kind="stable").reset_index(drop=True)
    per_customer = snapshots.groupby(ENTITY_KEY).size().to_numpy()
    starts = np.concatenate([[0], np.cumsum(per_customer)[:-1]])
    customers = len(per_customer)
    picks = starts.repeat(labels_per_customer) + rng.integers(0, per_customer.repeat(labels_per_customer))
    rows = snapshots.iloc[picks].reset_index(drop=True)
    delay = pd.to_timedelta(rng.integers(3600, 28 * 86400, customers * labels_per_customer), unit="s")
    as_of = rows.merge(profile.drop(columns=FEATURE_TIMESTAMP), on=ENTITY_KEY, how="left")
    logit = churn_logit(as_of)
    churned = (rng.uniform(0.0, 1.0, len(as_of)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    labels = pd.DataFrame(
        {
            ENTITY_KEY: rows[ENTITY_KEY].to_numpy(),
            TIMESTAMP: (rows[FEATURE_TIMESTAMP] + delay).dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(),
            TARGET: churned,
        }
    )
    # In time order: the time split's holdout is then the newest labels.
    return labels.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
