"""Request bodies: parse the accepted JSON shapes and validate records against the model's contract.

Every failure is a PayloadError carrying the HTTP status, a message that names the record and
field, and a short reason used as a metric label. Accepted bodies:

* ``{"records": [{feature: value, ...}, ...]}``
* ``{"dataframe_records": [...]}`` (MLflow scoring-server format)
* ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (MLflow; ``index`` ignored)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from mlops.contract import DataContract

RECORD_KEYS = ("records", "dataframe_records", "dataframe_split")
_MAX_SHOWN = 40


class PayloadError(Exception):
    """A request the service refuses; `status` is the HTTP status to answer with."""

    def __init__(
        self, status: int, detail: str, reason: str, record: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason
        self.record = record
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detail": self.detail}
        if self.record is not None:
            out["record"] = self.record
        if self.field is not None:
            out["field"] = self.field
        return out


def describe(value: Any) -> str:
    """A short, safe rendering of a client value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def shown_name(name: Any) -> str:
    """A name the client chose, fit for a one-line message: control characters escaped, shortened."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def load_json(body: bytes) -> Any:
    """Decode a JSON body: empty is 422 (nothing to score), undecodable is 400 (not JSON at all)."""
    if not body.strip():
        raise PayloadError(422, "request body is empty; expected a JSON object", "empty_body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError(400, f"malformed JSON: {err}", "malformed_json") from None


def parse_records(body: bytes, max_rows: int) -> list[dict[str, Any]]:
    """The records of a /predict body in any accepted shape, at most `max_rows` of them."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(422, f"expected a JSON object with one of {_keys()}, got {describe(doc)}", "invalid_body")
    present = [k for k in RECORD_KEYS if k in doc]
    unknown = [k for k in doc if k not in RECORD_KEYS]
    if unknown:
        raise PayloadError(422, f"unknown top-level key '{shown_name(unknown[0])}'; expected one of {_keys()}", "invalid_body")
    if len(present) != 1:
        what = "none" if not present else " and ".join(f"'{k}'" for k in present)
        raise PayloadError(422, f"expected exactly one of {_keys()}, got {what}", "invalid_body")
    key = present[0]
    if key == "dataframe_split":
        records = _split_records(doc[key])
    else:
        records = doc[key]
        if not isinstance(records, list):
            raise PayloadError(422, f"'{key}' must be an array of objects, got {describe(records)}", "invalid_body")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise PayloadError(
                    422, f"record {index}: must be an object, got {describe(record)}", "invalid_body", record=index
                )
    if not records:
        raise PayloadError(422, f"'{key}' has no records", "no_records")
    if len(records) > max_rows:
        raise PayloadError(
            422, f"too many records: {len(records)} > serving.max_rows {max_rows}", "too_many_rows"
        )
    return records


def _keys() -> str:
    return ", ".join(f"'{k}'" for k in RECORD_KEYS)


def _split_records(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict):
        raise PayloadError(422, f"'dataframe_split' must be an object, got {describe(split)}", "invalid_body")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise PayloadError(422, "'dataframe_split.columns' must be an array of column names", "invalid_body")
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise PayloadError(422, f"'dataframe_split.columns' names '{shown_name(dup)}' twice", "invalid_body", field=dup)
    if not isinstance(data, list):
        raise PayloadError(422, "'dataframe_split.data' must be an array of rows", "invalid_body")
    records = []
    for index, row in enumerate(data):
        if not isinstance(row, list):
            raise PayloadError(
                422, f"record {index}: 'dataframe_split.data' rows must be arrays, got {describe(row)}",
                "invalid_body", record=index,
            )
        if len(row) != len(columns):
            raise PayloadError(
                422, f"record {index}: has {len(row)} values for {len(columns)} columns", "invalid_body", record=index
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


class RecordValidator:
    """Checks records against one contract; built once per loaded model, used per request."""

    def __init__(self, contract: DataContract) -> None:
        self.names: tuple[str, ...] = tuple(contract.feature_names)
        self._kinds = {c.name: c.kind for c in contract.feature_columns}
        self._categories = {
            c.name: frozenset(c.categories)
            for c in contract.feature_columns
            if c.kind == "categorical" and c.categories is not None
        }
        self._known = frozenset(self.names)

    def validate(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records with exactly the feature fields, numbers as float; raises PayloadError naming the field.

        Null is accepted for any feature (the pipeline imputes); unseen categories are accepted too
        (the encoder ignores them; drift monitoring is where they show up).
        """
        out = []
        names, kinds, known = self.names, self._kinds, self._known
        for index, record in enumerate(records):
            if len(record) != len(names) or not known.issuperset(record):
                self._shape_error(index, record)
            clean = {}
            for name in names:
                value = record[name]
                if value is not None:
                    value = self._coerce(index, name, kinds[name], value)
                clean[name] = value
            out.append(clean)
        return out

    def _shape_error(self, index: int, record: dict[str, Any]) -> None:
        for name in record:
            if name not in self._known:
                raise PayloadError(
                    422, f"record {index}: unknown field '{shown_name(name)}' (not a feature of this model)",
                    "unknown_field", record=index, field=str(name),
                )
        for name in self.names:
            if name not in record:
                raise PayloadError(
                    422, f"record {index}: missing field '{name}'", "missing_field", record=index, field=name
                )

    def _coerce(self, index: int, name: str, kind: str, value: Any) -> Any:
        if kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._type_error(index, name, "a number", value)
            number = float(value)
            if not math.isfinite(number):
                raise self._type_error(index, name, "a finite number", value)
            return number
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise self._type_error(index, name, "a boolean", value)
        if kind == "categorical":
            if isinstance(value, str):
                return value
            known = self._categories.get(name)
            # A category set may hold non-strings (an object column of numbers); accept those exactly.
            if known is not None and not isinstance(value, dict | list) and value in known:
                return value
            raise self._type_error(index, name, "a string", value)
        # datetime features are dropped by the pipeline; accept any scalar so the row still scores.
        if isinstance(value, dict | list):
            raise self._type_error(index, name, "a date-time string", value)
        return value

    @staticmethod
    def _type_error(index: int, name: str, wanted: str, value: Any) -> PayloadError:
        return PayloadError(
            422, f"record {index}: field '{name}' must be {wanted}, got {describe(value)}",
            "invalid_type", record=index, field=name,
        )


def parse_labels(body: bytes, max_rows: int, contract: DataContract) -> list[tuple[str, int, Any]]:
    """(request_id, row, label) triples from a /labels body, each label checked against the contract."""
    doc = load_json(body)
    if not isinstance(doc, dict) or set(doc) != {"labels"}:
        raise PayloadError(422, "expected a JSON object {\"labels\": [...]}", "invalid_body")
    items = doc["labels"]
    if not isinstance(items, list) or not items:
        raise PayloadError(422, "'labels' must be a non-empty array", "no_records")
    if len(items) > max_rows:
        raise PayloadError(422, f"too many labels: {len(items)} > serving.max_rows {max_rows}", "too_many_rows")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(
                422, f"label {index}: must be an object, got {describe(item)}", "invalid_body", record=index
            )
        extra = sorted(set(item) - {"request_id", "row", "label"})
        if extra:
            raise PayloadError(
                422, f"label {index}: unknown field '{shown_name(extra[0])}'", "unknown_field", record=index, field=extra[0]
            )
        for field in ("request_id", "row", "label"):
            if field not in item:
                raise PayloadError(
                    422, f"label {index}: missing field '{field}'", "missing_field", record=index, field=field
                )
        request_id, row = item["request_id"], item["row"]
        if not isinstance(request_id, str) or not request_id:
            raise _label_error(index, "request_id", "a non-empty string", request_id)
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise _label_error(index, "row", "a non-negative integer", row)
        out.append((request_id, row, _label_value(index, item["label"], contract)))
    return out


def _label_value(index: int, label: Any, contract: DataContract) -> Any:
    """The label as the contract spells it, so one store never mixes 1, 1.0 and true for a class."""
    if contract.task != "classification" or contract.classes is None:
        if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
            raise _label_error(index, "label", "a finite number", label)
        return float(label)
    if not isinstance(label, dict | list) and label is not None:
        for known in contract.classes:
            if type(known) is type(label) and known == label:
                return known
        for known in contract.classes:
            # JSON has one number type: 1 and 1.0 (and true for a boolean target) name the same class.
            if not isinstance(label, str) and not isinstance(known, str) and known == label:
                return known
    shown = ", ".join(describe(c) for c in contract.classes)
    raise PayloadError(
        422, f"label {index}: field 'label' must be one of the model's classes ({shown}), got {describe(label)}",
        "invalid_type", record=index, field="label",
    )


def _label_error(index: int, field: str, wanted: str, value: Any) -> PayloadError:
    return PayloadError(
        422, f"label {index}: field '{field}' must be {wanted}, got {describe(value)}",
        "invalid_type", record=index, field=field,
    )
