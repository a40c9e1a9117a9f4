"""The Open Inference Protocol (KServe V2 / MLServer / Triton REST): request parsing and response shapes.

Pure translation between V2 tensors and the service's records, so `/v2/models/{name}/infer` goes
through the same validation, micro-batcher, prediction log and metrics as /predict.

Inputs are one tensor per contract feature, named after it, ``shape`` ``[N]`` (or ``[N, 1]``),
``data`` row-major (flat; a nested list is flattened), ``datatype`` BYTES for text (categories,
date-times), FP64/FP32 or any INT/UINT type for numbers, BOOL for booleans; a JSON null is a
missing value, as in /predict. Outputs: ``predictions`` ``[N]`` and, for classifiers,
``probabilities`` ``[N, C]`` (row-major, per class in the order of ``classes``) and ``classes`` ``[C]``.
Errors are ``{"error": "..."}``: 400 for a request the model cannot take, 404 for an unknown model.
"""

from __future__ import annotations

from typing import Any

from mlops.contract import DataContract
from mlops.serving.payload import PayloadError, describe, load_json, shown_name

PROTOCOL_VERSION = "2"
PLATFORM = "sklearn"
NUMERIC_TYPES = frozenset({
    "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
})
DATATYPES = NUMERIC_TYPES | {"BOOL", "BYTES"}
OUTPUT_PREDICTIONS = "predictions"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_CLASSES = "classes"
_KIND_DATATYPE = {"numeric": "FP64", "boolean": "BOOL", "categorical": "BYTES", "datetime": "BYTES"}


def input_datatype(kind: str) -> str:
    """The V2 datatype a contract column kind is sent as."""
    return _KIND_DATATYPE.get(kind, "BYTES")


def value_datatype(values: list[Any]) -> str:
    """The V2 datatype of output values (the first non-null one decides; text when unsure)."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return "BOOL"
    if isinstance(sample, int):
        return "INT64"
    if isinstance(sample, float):
        return "FP64"
    return "BYTES"


def _accepts(kind: str, datatype: str) -> bool:
    if kind == "numeric":
        return datatype in NUMERIC_TYPES
    if kind == "boolean":
        return datatype in ("BOOL", "INT8", "UINT8", "INT32", "INT64")
    return datatype == "BYTES"


def model_metadata(name: str, versions: list[str], contract: DataContract, classes: list[Any] | None) -> dict[str, Any]:
    """GET /v2/models/{name}: inputs from the data contract, outputs from the task."""
    inputs = [
        {"name": col.name, "datatype": input_datatype(col.kind), "shape": [-1]} for col in contract.feature_columns
    ]
    if contract.task == "classification":
        label_type = value_datatype(list(classes or contract.classes or []))
        outputs = [
            {"name": OUTPUT_PREDICTIONS, "datatype": label_type, "shape": [-1]},
            {"name": OUTPUT_PROBABILITIES, "datatype": "FP64", "shape": [-1, len(classes or contract.classes or [])]},
            {"name": OUTPUT_CLASSES, "datatype": label_type, "shape": [len(classes or contract.classes or [])]},
        ]
    else:
        outputs = [{"name": OUTPUT_PREDICTIONS, "datatype": "FP64", "shape": [-1]}]
    return {"name": name, "versions": versions, "platform": PLATFORM, "inputs": inputs, "outputs": outputs}


def _error(detail: str, reason: str = "invalid_body") -> PayloadError:
    # The V2 protocol answers every request it cannot take with 400.
    return PayloadError(400, detail, reason)


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise _error(f"input '{name}': 'data' must be an array, got {describe(data)}")
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            for inner in item:
                if isinstance(inner, list | dict):
                    raise _error(f"input '{name}': 'data' nests deeper than the shape allows")
                flat.append(inner)
        elif isinstance(item, dict):
            raise _error(f"input '{name}': 'data' holds an object; expected values")
        else:
            flat.append(item)
    return flat


def _rows_of(shape: Any, name: str) -> int:
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _error(f"input '{name}': 'shape' must be a non-empty array of non-negative integers")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise _error(f"input '{name}': shape {shape} is not [N] or [N, 1] (one value per row)")
    return shape[0]


def output_names(classifier: bool) -> tuple[str, ...]:
    return (OUTPUT_PREDICTIONS, OUTPUT_PROBABILITIES, OUTPUT_CLASSES) if classifier else (OUTPUT_PREDICTIONS,)


def parse_infer_request(
    body: bytes, contract: DataContract, max_rows: int, classifier: bool
) -> tuple[list[dict[str, Any]], str | None, list[str] | None]:
    """(records, the request's id, the outputs asked for or None for all) of a V2 infer body.

    Raises PayloadError (400) naming the input that is missing, unknown, mistyped or mis-shaped,
    or an output the model does not have, before anything is scored.
    """
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise _error(f"expected a JSON object with 'inputs', got {describe(doc)}")
    unknown = sorted(set(doc) - {"id", "inputs", "outputs", "parameters"})
    if unknown:
        raise _error(f"unknown top-level key '{shown_name(unknown[0])}'; expected id, inputs, outputs, parameters")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _error(f"'id' must be a string, got {describe(request_id)}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _error("'inputs' must be a non-empty array of tensors", "no_records")
    kinds = {col.name: col.kind for col in contract.feature_columns}
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise _error(f"each input must be an object, got {describe(tensor)}")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise _error(f"an input's 'name' must be a string, got {describe(name)}")
        if name not in kinds:
            raise PayloadError(400, f"unknown input '{shown_name(name)}' (not a feature of this model)", "unknown_field", field=name)
        if name in columns:
            raise _error(f"input '{shown_name(name)}' is given twice")
        datatype = tensor.get("datatype")
        # A client's JSON can put a list or an object anywhere: test the type before set membership
        # (an unhashable value there was a 500).
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise _error(f"input '{name}': datatype {describe(datatype)} is not a V2 datatype")
        if not _accepts(kinds[name], datatype):
            raise PayloadError(
                400, f"input '{name}': datatype {datatype} does not fit a {kinds[name]} feature "
                f"(send {input_datatype(kinds[name])})", "invalid_type", field=name,
            )
        n = _rows_of(tensor.get("shape"), name)
        values = _flatten(tensor.get("data"), name)
        if len(values) != n:
            raise _error(f"input '{name}': shape says {n} value(s), 'data' has {len(values)}")
        if rows is not None and n != rows:
            raise _error(f"input '{name}' has {n} row(s), other inputs have {rows}")
        rows = n
        columns[name] = values
    missing = [name for name in kinds if name not in columns]
    if missing:
        raise PayloadError(400, f"missing input '{missing[0]}'", "missing_field", field=missing[0])
    if not rows:
        raise _error("the inputs hold no rows", "no_records")
    if rows > max_rows:
        raise _error(f"too many rows: {rows} > serving.max_rows {max_rows}", "too_many_rows")
    names = list(columns)
    records = [{name: columns[name][i] for name in names} for i in range(rows)]
    return records, request_id, _requested_outputs(doc.get("outputs"), output_names(classifier))


def _requested_outputs(outputs: Any, available: tuple[str, ...]) -> list[str] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise _error("'outputs' must be an array of objects with a 'name'")
    wanted = [o["name"] for o in outputs]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise _error(f"unknown output '{shown_name(unknown[0])}'; this model has {', '.join(available)}")
    return list(dict.fromkeys(wanted))


def infer_response(
    model_name: str, model_version: str, response_id: str, predictions: list[Any],
    probabilities: list[list[float]] | None, classes: list[Any] | None, wanted: list[str] | None,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """The V2 inference response with the outputs `wanted` (checked by parse_infer_request), or all."""
    n = len(predictions)
    available: dict[str, dict[str, Any]] = {
        OUTPUT_PREDICTIONS: {"name": OUTPUT_PREDICTIONS, "shape": [n], "datatype": value_datatype(predictions), "data": predictions},
    }
    if probabilities is not None and classes is not None:
        available[OUTPUT_PROBABILITIES] = {
            "name": OUTPUT_PROBABILITIES, "shape": [n, len(classes)], "datatype": "FP64",
            "data": [p for row in probabilities for p in row],
        }
        available[OUTPUT_CLASSES] = {
            "name": OUTPUT_CLASSES, "shape": [len(classes)], "datatype": value_datatype(classes), "data": classes,
        }
    chosen = list(available.values()) if wanted is None else [available[name] for name in wanted if name in available]
    return {
        "model_name": model_name, "model_version": model_version, "id": response_id,
        "parameters": parameters, "outputs": chosen,
    }
