"""Request bodies: parse the accepted JSON shapes and validate records against the model's contract.

Every failure is a PayloadError carrying the HTTP status, a message that names the record and
field, and a short reason used as a metric label. Accepted bodies:

* ``{"records": [{feature: value, ...}, ...]}``
* ``{"dataframe_records": [...]}`` (MLflow scoring-server format)
* ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (MLflow; ``index`` ignored)
* ``{"entities": [{join key: value, ...}, ...]}`` for a model fed from a feature store
  (mlops.serving.entities looks the features up)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from mlops.contract import MAX_ABS_VALUE, DataContract
from mlops.text import printable

RECORD_KEYS = ("records", "dataframe_records", "dataframe_split")
ENTITIES_KEY = "entities"
REQUEST_KEYS = (*RECORD_KEYS, ENTITIES_KEY)
_MAX_SHOWN = 40
# Request ids are the service's own (32 hex digits); a label naming a longer one joins nothing.
MAX_REQUEST_ID_LENGTH = 128
# A row index is stored as a signed 64-bit integer, like every integer column of the log.
MAX_ROW_INDEX = 2**63 - 1


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
    text = printable(name)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def check_content_type(value: str | None) -> None:
    """415 unless the body is declared JSON (UTF-8): a web page can send text/plain or a form to
    any address without the browser asking first, but never application/json."""
    media, *params = (value or "").split(";")
    charsets = {p.strip().lower().replace('"', "") for p in params if p.strip()}
    if media.strip().lower() != "application/json" or not charsets <= {"charset=utf-8", "charset=utf8"}:
        shown = f"'{shown_name(value)}'" if value else "none"
        raise PayloadError(415, f"Content-Type must be application/json, got {shown}", "unsupported_media_type")


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
    return _parse(body, max_rows, RECORD_KEYS)[1]


def parse_request(body: bytes, max_rows: int) -> tuple[str, list[dict[str, Any]]]:
    """(the body's key, its records) of a /predict body: feature records, or entity keys (`ENTITIES_KEY`)."""
    return _parse(body, max_rows, REQUEST_KEYS)


def _parse(body: bytes, max_rows: int, keys: tuple[str, ...]) -> tuple[str, list[dict[str, Any]]]:
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(422, f"expected a JSON object with one of {_keys(keys)}, got {describe(doc)}", "invalid_body")
    present = [k for k in keys if k in doc]
    unknown = [k for k in doc if k not in keys]
    if unknown:
        raise PayloadError(
            422, f"unknown top-level key '{shown_name(unknown[0])}'; expected one of {_keys(keys)}", "invalid_body"
        )
    if len(present) != 1:
        what = "none" if not present else " and ".join(f"'{k}'" for k in present)
        raise PayloadError(422, f"expected exactly one of {_keys(keys)}, got {what}", "invalid_body")
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
    return key, records


def _keys(keys: tuple[str, ...] = RECORD_KEYS) -> str:
    return ", ".join(f"'{k}'" for k in keys)


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
        # Non-text categories (an object column of numbers), to log each as the contract spells it.
        self._categories = {
            c.name: tuple(v for v in c.categories if not isinstance(v, str))
            for c in contract.feature_columns
            if c.kind == "categorical" and c.categories is not None
        }
        self._known = frozenset(self.names)

    def validate(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records with exactly the feature fields, each value of its contract type; raises PayloadError naming the field.

        Numbers become floats within training's bounds, booleans bools, categories text (or the
        contract's own non-text category), date-times ISO 8601 text: one type per column, so the
        log never holds a column it cannot store. Null is accepted for any feature (the pipeline
        imputes); unseen text categories are accepted too (the encoder ignores them; drift
        monitoring is where they show up).
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

    def validate_fields(self, index: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Some of the features (the request-time fields of an entity record), each coerced as `validate` does.

        Every name must be a feature of the contract (the caller checks that first, to name the problem in its terms).
        """
        kinds = self._kinds
        return {name: value if value is None else self._coerce(index, name, kinds[name], value)
                for name, value in fields.items()}

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
            # The bound training applies (mlops.contract): a row served is a row retraining can use.
            if not math.isfinite(number):
                raise self._type_error(index, name, "a finite number", value)
            if abs(number) > MAX_ABS_VALUE:
                raise self._type_error(index, name, f"at most {MAX_ABS_VALUE:g} in absolute value", value)
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
            known = _same_value(value, self._categories.get(name, ()))
            if known is not None:
                return known
            raise self._type_error(index, name, "a string", value)
        # datetime features are dropped by the pipeline, but logged: text in one known format.
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return value
        raise self._type_error(index, name, "an ISO 8601 date-time string", value)

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
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise _label_error(index, "request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters", request_id)
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise _label_error(index, "row", "a non-negative integer", row)
        if row > MAX_ROW_INDEX:
            raise _label_error(index, "row", f"at most {MAX_ROW_INDEX} (a 64-bit row index)", row)
        out.append((request_id, row, _label_value(index, item["label"], contract)))
    return out


def _label_value(index: int, label: Any, contract: DataContract) -> Any:
    """The label as the contract spells it, so one store never mixes 1, 1.0 and true for a class."""
    if contract.task != "classification" or contract.classes is None:
        if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
            raise _label_error(index, "label", "a finite number", label)
        if abs(label) > MAX_ABS_VALUE:
            raise _label_error(index, "label", f"at most {MAX_ABS_VALUE:g} in absolute value", label)
        return float(label)
    known = _same_value(label, contract.classes)
    if known is not None:
        return known
    shown = ", ".join(describe(c) for c in contract.classes)
    raise PayloadError(
        422, f"label {index}: field 'label' must be one of the model's classes ({shown}), got {describe(label)}",
        "invalid_type", record=index, field="label",
    )


def _same_value(value: Any, known: Sequence[Any]) -> Any | None:
    """The member of `known` that `value` names, as `known` spells it; None when none does."""
    if isinstance(value, dict | list) or value is None:
        return None
    for candidate in known:
        if type(candidate) is type(value) and candidate == value:
            return candidate
    for candidate in known:
        # JSON has one number type: 1 and 1.0 (and true for a boolean) name the same value.
        if not isinstance(value, str) and not isinstance(candidate, str) and candidate == value:
            return candidate
    return None


def _label_error(index: int, field: str, wanted: str, value: Any) -> PayloadError:
    return PayloadError(
        422, f"label {index}: field '{field}' must be {wanted}, got {describe(value)}",
        "invalid_type", record=index, field=field,
    )
