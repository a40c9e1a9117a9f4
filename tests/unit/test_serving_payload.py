"""Request bodies of the serving app: every accepted shape, and each refusal naming its field."""

from __future__ import annotations

import math

import orjson
import pandas as pd
import pytest

from mlops.contract import MAX_ABS_VALUE, infer_contract
from mlops.local.simulate import simulate_churn
from mlops.serving.payload import (
    PayloadError,
    RecordValidator,
    check_content_type,
    parse_labels,
    parse_records,
)

FEATURES = [
    "age", "tenure_months", "monthly_charges", "total_charges", "support_calls", "num_products",
    "contract", "plan", "payment_method", "region",
]


@pytest.fixture(scope="module")
def contract():
    return infer_contract(simulate_churn(200, seed=1), "churned", "event_time", "classification")


@pytest.fixture(scope="module")
def validator(contract) -> RecordValidator:
    return RecordValidator(contract)


def record(**overrides) -> dict:
    base = {
        "age": 40, "tenure_months": 12, "monthly_charges": 70.5, "total_charges": 846.0,
        "support_calls": 1, "num_products": 2, "contract": "one-year", "plan": "basic",
        "payment_method": "card", "region": "north",
    }
    base.update(overrides)
    return base


def body(doc) -> bytes:
    return orjson.dumps(doc)


def refusal(fn, *args) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        fn(*args)
    return caught.value


# -- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["records", "dataframe_records"])
def test_record_lists_parse(key):
    rows = [record(), record(age=50)]
    assert parse_records(body({key: rows}), 10) == rows


def test_dataframe_split_parses_to_records():
    rows = [record(), record(age=51)]
    split = {"columns": FEATURES, "index": [7, 8], "data": [[r[c] for c in FEATURES] for r in rows]}
    assert parse_records(body({"dataframe_split": split}), 10) == rows


@pytest.mark.parametrize(
    ("raw", "status", "reason", "text"),
    [
        (b"", 422, "empty_body", "empty"),
        (b"   \n", 422, "empty_body", "empty"),
        (b'{"records": [', 400, "malformed_json", "malformed JSON"),
        (b"\xff\xfe", 400, "malformed_json", "malformed JSON"),
        (b"[1, 2]", 422, "invalid_body", "expected a JSON object"),
        (b'{"rows": []}', 422, "invalid_body", "unknown top-level key 'rows'"),
        (b"{}", 422, "invalid_body", "expected exactly one of"),
        (b'{"records": [], "dataframe_records": []}', 422, "invalid_body", "'records' and 'dataframe_records'"),
        (b'{"records": {"age": 1}}', 422, "invalid_body", "'records' must be an array"),
        (b'{"records": [1]}', 422, "invalid_body", "record 0: must be an object"),
        (b'{"records": []}', 422, "no_records", "'records' has no records"),
        (b'{"dataframe_split": {"columns": ["a"], "data": []}}', 422, "no_records", "no records"),
        (b'{"dataframe_split": []}', 422, "invalid_body", "'dataframe_split' must be an object"),
        (b'{"dataframe_split": {"columns": "a", "data": []}}', 422, "invalid_body", "columns"),
        (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}', 422, "invalid_body", "names 'a' twice"),
        (b'{"dataframe_split": {"columns": ["a"], "data": {}}}', 422, "invalid_body", "'dataframe_split.data'"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [1]}}', 422, "invalid_body", "record 0: 'dataframe_split.data' rows"),
        (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}', 422, "invalid_body", "record 1: has 1 values for 2 columns"),
    ],
)
def test_bad_bodies_are_refused(raw, status, reason, text):
    err = refusal(parse_records, raw, 10)
    assert (err.status, err.reason) == (status, reason)
    assert text in err.detail


def test_more_rows_than_max_rows_is_refused():
    err = refusal(parse_records, body({"records": [record()] * 4}), 3)
    assert (err.status, err.reason) == (422, "too_many_rows")
    assert "4 > serving.max_rows 3" in err.detail


# -- validation against the contract -------------------------------------------------------------


def test_valid_records_come_back_typed(validator):
    clean = validator.validate([record(total_charges=None), record(age=41.5)])
    assert clean[0]["age"] == 40.0 and isinstance(clean[0]["age"], float)
    assert clean[0]["total_charges"] is None
    assert clean[1]["age"] == 41.5
    assert list(clean[0]) == FEATURES  # contract order


def test_unseen_category_is_accepted(validator):
    # The encoder ignores it; drift monitoring is where it shows.
    assert validator.validate([record(plan="enterprise")])[0]["plan"] == "enterprise"


@pytest.mark.parametrize(
    ("rows", "message", "field", "reason"),
    [
        ([record(age="abc")], "record 0: field 'age' must be a number, got 'abc'", "age", "invalid_type"),
        ([record(), record(age=True)], "record 1: field 'age' must be a number, got true", "age", "invalid_type"),
        ([record(monthly_charges=[1])], "record 0: field 'monthly_charges' must be a number, got an array", "monthly_charges", "invalid_type"),
        ([record(support_calls=math.inf)], "record 0: field 'support_calls' must be a finite number, got inf", "support_calls", "invalid_type"),
        ([record(plan=3)], "record 0: field 'plan' must be a string, got 3", "plan", "invalid_type"),
        ([record(region={"a": 1})], "record 0: field 'region' must be a string, got an object", "region", "invalid_type"),
        ([record(), record(), {k: v for k, v in record().items() if k != "tenure_months"}],
         "record 2: missing field 'tenure_months'", "tenure_months", "missing_field"),
        ([record(colour="red")], "record 0: unknown field 'colour' (not a feature of this model)", "colour", "unknown_field"),
        ([record(churned=1)], "record 0: unknown field 'churned' (not a feature of this model)", "churned", "unknown_field"),
    ],
)
def test_invalid_records_name_the_record_and_field(validator, rows, message, field, reason):
    err = refusal(validator.validate, rows)
    assert err.status == 422
    assert err.detail == message
    assert (err.field, err.reason) == (field, reason)
    assert err.body() == {"detail": message, "record": err.record, "field": field}


@pytest.mark.parametrize("value", [1e308, -1e101, MAX_ABS_VALUE * 1.0000001, 2**400])
def test_numbers_beyond_trainings_bound_are_refused(validator, value):
    # Training refuses |x| > MAX_ABS_VALUE; a served row must be one retraining can use.
    err = refusal(validator.validate, [record(monthly_charges=value)])
    assert err.status == 422 and err.field == "monthly_charges"
    assert err.detail.startswith("record 0: field 'monthly_charges' must be at most 1e+100 in absolute value, got ")
    assert validator.validate([record(monthly_charges=-MAX_ABS_VALUE)])[0]["monthly_charges"] == -MAX_ABS_VALUE


@pytest.fixture(scope="module")
def mixed_contract():
    """A date-time feature and a category set of numbers, the columns whose types a client can vary."""
    frame = pd.DataFrame({
        "signup": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"]),
        "tier": pd.Series([1, 2, 1, 2], dtype=object),
        "y": [0, 1, 0, 1],
    })
    return infer_contract(frame, "y", None, "classification")


def test_each_feature_is_logged_as_one_type(mixed_contract):
    validator = RecordValidator(mixed_contract)
    clean = validator.validate([
        {"signup": "2026-05-01T10:00:00+00:00", "tier": 2.0},
        {"signup": "2026-05-02", "tier": True},
        {"signup": None, "tier": "gold"},
    ])
    assert [r["signup"] for r in clean] == ["2026-05-01T10:00:00+00:00", "2026-05-02", None]
    # The contract's own spelling of a non-text category: 2.0 and true name 2 and 1, as ints.
    assert [(r["tier"], type(r["tier"])) for r in clean] == [(2, int), (1, int), ("gold", str)]


@pytest.mark.parametrize(
    ("value", "shown"), [(1767225600, "1767225600"), ("yesterday", "'yesterday'"), (True, "true"), ([1], "an array")]
)
def test_date_times_must_be_iso_text(mixed_contract, value, shown):
    err = refusal(RecordValidator(mixed_contract).validate, [{"signup": value, "tier": 1}])
    assert err.detail == f"record 0: field 'signup' must be an ISO 8601 date-time string, got {shown}"
    assert (err.status, err.field) == (422, "signup")


@pytest.mark.parametrize(
    ("value", "near_miss"),
    [("application/json", "application/jsonp"), ("application/json; charset=utf-8", "application/json; charset=utf-16"),
     ("Application/JSON;charset=\"UTF-8\"", "Application/JSON;charset=\"UTF-16\"")],
)
def test_json_content_types_are_accepted_and_their_near_misses_are_not(value, near_miss):
    assert check_content_type(value) is None
    assert refusal(check_content_type, near_miss).status == 415


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "none"), ("text/plain", "'text/plain'"), ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
     ("multipart/form-data; boundary=x", "'multipart/form-data; boundary=x'"), ("application/json; charset=utf-16", "'application/json; charset=utf-16'"),
     ("application/jsonp", "'application/jsonp'")],
)
def test_other_content_types_are_415(value, shown):
    err = refusal(check_content_type, value)
    assert (err.status, err.reason) == (415, "unsupported_media_type")
    assert err.detail == f"Content-Type must be application/json, got {shown}"


def test_long_values_are_shortened_in_messages(validator):
    err = refusal(validator.validate, [record(age="x" * 500)])
    assert len(err.detail) < 120 and err.detail.endswith("...")


# -- labels --------------------------------------------------------------------------------------


def test_labels_parse_and_take_the_contract_class(contract):
    items = [{"request_id": "a", "row": 0, "label": 1}, {"request_id": "a", "row": 1, "label": 0.0}]
    parsed = parse_labels(body({"labels": items}), 10, contract)
    assert parsed == [("a", 0, 1), ("a", 1, 0)]
    assert all(type(label) is int for _, _, label in parsed)


@pytest.mark.parametrize(
    ("items", "text", "field"),
    [
        ([{"request_id": "a", "row": 0, "label": "yes"}], "label 0: field 'label' must be one of the model's classes (0, 1), got 'yes'", "label"),
        ([{"request_id": "a", "row": 0, "label": 2}], "must be one of the model's classes", "label"),
        ([{"request_id": "a", "row": 0, "label": None}], "must be one of the model's classes", "label"),
        ([{"request_id": "", "row": 0, "label": 1}], "label 0: field 'request_id' must be a non-empty string", "request_id"),
        ([{"request_id": "a", "row": -1, "label": 1}], "field 'row' must be a non-negative integer, got -1", "row"),
        ([{"request_id": "a", "row": True, "label": 1}], "field 'row' must be a non-negative integer", "row"),
        # Beyond int64 the log cannot store it: this one killed the label writer thread.
        ([{"request_id": "a", "row": 2**64 - 1, "label": 1}], "field 'row' must be at most 9223372036854775807", "row"),
        ([{"request_id": "a", "row": 2**63, "label": 1}], "field 'row' must be at most 9223372036854775807", "row"),
        ([{"request_id": "a" * 129, "row": 0, "label": 1}], "field 'request_id' must be at most 128 characters", "request_id"),
        ([{"request_id": "a", "label": 1}], "label 0: missing field 'row'", "row"),
        ([{"request_id": "a", "row": 0, "label": 1, "x": 2}], "label 0: unknown field 'x'", "x"),
    ],
)
def test_bad_labels_name_the_field(contract, items, text, field):
    err = refusal(parse_labels, body({"labels": items}), 10, contract)
    assert err.status == 422 and text in err.detail and err.field == field


@pytest.mark.parametrize("doc", [{"labels": []}, {"label": []}, {"labels": {}}, []])
def test_label_bodies_need_a_non_empty_list(contract, doc):
    assert refusal(parse_labels, body(doc), 10, contract).status == 422


def test_regression_labels_are_numbers():
    frame = simulate_churn(100, seed=2).drop(columns=["churned"])
    contract = infer_contract(frame, "total_charges", "event_time", "regression")
    assert parse_labels(body({"labels": [{"request_id": "a", "row": 0, "label": 12}]}), 10, contract) == [("a", 0, 12.0)]
    err = refusal(parse_labels, body({"labels": [{"request_id": "a", "row": 0, "label": "12"}]}), 10, contract)
    assert "must be a finite number" in err.detail
    err = refusal(parse_labels, body({"labels": [{"request_id": "a", "row": 0, "label": 1e300}]}), 10, contract)
    assert "field 'label' must be at most 1e+100 in absolute value" in err.detail
