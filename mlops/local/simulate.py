"""Deterministic customer-churn data: the bundled dataset and a simulator of later batches.

Every value comes from a seeded numpy Generator, so the same (rows, drift, seed) gives the same
frame on any machine; a million rows take a couple of seconds. Drift is controllable:
covariate shift moves the charges, support calls and contract mix; concept drift changes how
the features relate to churn, so a model trained before it loses accuracy.
"""

from __future__ import annotations

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


def simulate_churn(
    rows: int,
    drift: DriftLevel | DriftSpec = "none",
    seed: int = 0,
    start: str = "2025-01-01",
) -> pd.DataFrame:
    """Generate `rows` customers with features, an event time and the churn label."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    spec = DRIFT_LEVELS[drift] if isinstance(drift, str) else drift
    rng = np.random.default_rng(seed)

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

    # Concept drift turns the reference relations around: at 1, support calls and the contract
    # type push churn the other way and price matters more.
    turn = 1.0 - 2.0 * spec.concept
    support_weight = 0.45 * turn
    price_weight = 0.025 + 0.02 * spec.concept
    logit = (
        -1.2
        + support_weight * support_calls
        + price_weight * (monthly - 65.0)
        - 0.05 * tenure
        + turn * np.select([contract == "month-to-month", contract == "one-year"], [1.1, -0.2], -1.0)
        + np.where(payment == "electronic-check", 0.5, 0.0)
        - 0.15 * (products - 3)
        + np.where(plan == "premium", -0.3, 0.0)
        + 0.004 * (age - 45)
    )
    churned = (rng.uniform(0.0, 1.0, rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    frame = pd.DataFrame(
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
            TARGET: churned,
        }
    )
    # Real billing exports miss some totals; the pipeline must impute, not crash.
    missing = rng.uniform(0.0, 1.0, rows) < 0.01
    frame.loc[missing, "total_charges"] = np.nan
    return frame
