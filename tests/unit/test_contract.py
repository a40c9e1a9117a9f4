"""Contract inference and its JSON round trip."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops.contract import DataContract, infer_contract
from mlops.errors import DataError
from mlops.local.simulate import simulate_churn


def test_infers_roles_kinds_ranges_and_categories():
    frame = simulate_churn(3000, seed=0)
    contract = infer_contract(frame, "churned", "event_time", "classification")
    assert contract.column("churned").role == "target"
    assert contract.column("event_time").kind == "datetime"
    age = contract.column("age")
    assert (age.kind, age.min, age.max) == ("numeric", float(frame.age.min()), float(frame.age.max()))
    assert contract.column("plan").categories == ("basic", "premium", "standard")
    assert contract.column("total_charges").null_fraction > 0
    assert contract.classes == (0, 1)
    assert "churned" not in contract.feature_names and "event_time" not in contract.feature_names
    assert set(contract.categorical_features) == {"contract", "plan", "payment_method", "region"}


def test_json_round_trip_is_exact():
    contract = infer_contract(simulate_churn(500, seed=1), "churned", "event_time", "classification")
    assert DataContract.from_json(contract.to_json()) == contract


def test_missing_target_is_a_data_error():
    frame = pd.DataFrame({"x": [1, 2]})
    with pytest.raises(DataError, match="target column 'y' is not in the data"):
        infer_contract(frame, "y", None, "regression")


def test_infinite_values_do_not_become_the_range():
    frame = pd.DataFrame({"x": [1.0, 2.0, float("inf")], "y": [0, 1, 0]})
    contract = infer_contract(frame, "y", None, "classification")
    assert contract.column("x").max == 2.0
