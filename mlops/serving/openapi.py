"""The OpenAPI document of the serving app, with each model's request schema taken from its data contract.

/predict and /models/{name}/predict are plain ASGI endpoints (FastAPI's validation would cost as
much as the prediction), so FastAPI cannot describe them: this module adds them to the document
FastAPI generates for the other routes. A contract is only known once a champion has been loaded,
so the document is built on request from the contracts loaded so far (a model not loaded yet is
described with a generic record) and rebuilt after any swap.

What the document shows is what a client needs to form a request: model names, feature names,
their types, the categories and value ranges seen in training. It holds no version history,
run ids, storage locations or keys. Ranges and categories are information, not limits: the
service accepts any finite number up to the contract's bound, and categories not seen in
training (the encoder ignores them; drift monitoring reports them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.contract import MAX_ABS_VALUE, ColumnContract, DataContract
from mlops.serving.auth import API_KEY_HEADER
from mlops.serving.payload import ENTITIES_KEY, RECORD_KEYS

if TYPE_CHECKING:
    from mlops.features import ServiceSchema

_JSON = "application/json"


def feature_schema(col: ColumnContract) -> dict[str, Any]:
    """JSON Schema of one feature's value (null always allowed: the pipeline imputes)."""
    if col.kind == "numeric":
        schema: dict[str, Any] = {"type": ["number", "null"], "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE}
        if col.min is not None and col.max is not None:
            schema["description"] = f"seen in training: {col.min:g} to {col.max:g}"
            schema["x-training-range"] = [col.min, col.max]
            schema["examples"] = [col.min, col.max]
        return schema
    if col.kind == "boolean":
        return {"type": ["boolean", "null"]}
    if col.kind == "categorical":
        schema = {"type": ["string", "null"]}
        if col.categories:
            known = [c for c in col.categories if c is not None]
            schema["description"] = "categories seen in training: " + ", ".join(str(c) for c in known[:50])
            schema["x-training-categories"] = known
            schema["examples"] = known[:5]
        return schema
    return {"type": ["string", "null"], "format": "date-time"}


def record_schema(contract: DataContract | None) -> dict[str, Any]:
    """One record: exactly the contract's features (any object when the contract is not known yet)."""
    if contract is None:
        return {"type": "object", "description": "the model's features (its contract is described once it has been loaded)"}
    return {
        "type": "object",
        "properties": {col.name: feature_schema(col) for col in contract.feature_columns},
        "required": list(contract.feature_names),
        "additionalProperties": False,
    }


def entity_schema(contract: DataContract | None, service: ServiceSchema) -> dict[str, Any]:
    """One entity record of a store-fed model: its join keys, and request-time fields (features of the model).

    A feature the service does not serve must come with the request; one it serves may (it wins).
    """
    json_types = {(int,): "integer", (str,): "string"}
    properties: dict[str, Any] = {
        key: {"type": json_types.get(types, ["integer", "string"]),
              "description": f"join key of feature service '{service.name}'"}
        for key, types in service.join_keys.items()
    }
    required = list(service.join_keys)
    for col in contract.feature_columns if contract is not None else ():
        properties[col.name] = feature_schema(col)
        if col.name not in service.views:
            required.append(col.name)
    return {
        "type": "object", "properties": properties, "required": required,
        "additionalProperties": contract is None,
        "description": f"an entity whose features are looked up in feature service '{service.name}'; "
        "a feature given here is used instead of the looked-up value",
    }


def request_schema(record_ref: str, max_rows: int, entity_ref: str | None = None) -> dict[str, Any]:
    """The body of a predict request: records in one of the accepted shapes (or entity keys, for a store-fed model)."""
    records = {"type": "array", "items": {"$ref": record_ref}, "minItems": 1, "maxItems": max_rows}
    keys = (*RECORD_KEYS, ENTITIES_KEY) if entity_ref is not None else RECORD_KEYS
    by_entity = [] if entity_ref is None else [{
        "type": "object", "required": [ENTITIES_KEY], "additionalProperties": False, "properties": {
            ENTITIES_KEY: {"type": "array", "items": {"$ref": entity_ref}, "minItems": 1, "maxItems": max_rows}},
    }]
    return {
        "oneOf": [
            {"type": "object", "properties": {"records": records}, "required": ["records"], "additionalProperties": False},
            {"type": "object", "properties": {"dataframe_records": records}, "required": ["dataframe_records"],
             "additionalProperties": False},
            {"type": "object", "required": ["dataframe_split"], "additionalProperties": False, "properties": {
                "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}}, "index": {"type": "array"}}}}},
            *by_entity,
        ],
        "description": f"exactly one of {', '.join(keys)}; at most {max_rows} records",
    }


def response_schema(contract: DataContract | None, by_entity: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {
        "predictions": {"type": "array"},
        "model_version": {"type": "string"}, "model_alias": {"type": "string"},
        "route": {"type": "string", "enum": ["champion", "canary"]}, "request_id": {"type": "string"},
    }
    if contract is None or contract.task == "classification":
        props["probabilities"] = {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                                  "description": "classifiers only: per class, in the order of classes"}
        props["classes"] = {"type": "array", "description": "classifiers only"}
    if by_entity:
        props["statuses"] = {"type": "array", "items": {"type": "string", "enum": [
            "ok", "unknown_entity", "stale", "missing_feature", "invalid_feature"]},
            "description": "entity requests only: per record; a record not ok has a null prediction"}
        props["errors"] = {"type": "array", "items": {"$ref": "#/components/schemas/RecordError"},
                           "description": "entity requests only: the records not scored, and why"}
    return {"type": "object", "properties": props, "required": ["predictions", "model_version", "request_id"]}


def _key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


_ERROR = {"description": "refused; `detail` says why",
          "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def add_models(document: dict[str, Any], models: list[tuple[str, DataContract | None, int, str | None]],
               default: str | None, api_key: bool, services: dict[str, ServiceSchema] | None = None) -> dict[str, Any]:
    """`document` with the predict routes of `models` (name, contract or None, max_rows, champion version).

    `services` holds the feature service of each store-fed model whose store is open: its request
    body also offers entity keys.
    """
    services = services or {}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {"type": "object", "properties": {"detail": {"type": "string"}, "record": {"type": "integer"},
                                                          "field": {"type": "string"}}, "required": ["detail"]}
    if services:
        schemas["RecordError"] = {"type": "object", "required": ["record", "status", "detail"], "properties": {
            "record": {"type": "integer"}, "status": {"type": "string"}, "detail": {"type": "string"},
            "field": {"type": "string"}, "view": {"type": "string"}}}
    paths = document.setdefault("paths", {})
    for name, contract, max_rows, version in models:
        key = _key(name)
        service = services.get(name)
        schemas[f"Record_{key}"] = record_schema(contract)
        entity_ref = None
        if service is not None:
            schemas[f"Entity_{key}"] = entity_schema(contract, service)
            entity_ref = f"#/components/schemas/Entity_{key}"
        schemas[f"PredictRequest_{key}"] = request_schema(f"#/components/schemas/Record_{key}", max_rows, entity_ref)
        schemas[f"PredictResponse_{key}"] = response_schema(contract, service is not None)
        loaded = f"champion v{version}" if version else "not loaded yet"
        operation = {
            "summary": f"Predict with {name}",
            "description": f"Score records with model '{name}' ({loaded}); the schema is its data contract.",
            "tags": [name],
            "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/PredictRequest_{key}"}}}},
            "responses": {
                "200": {"description": "predictions", "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/PredictResponse_{key}"}}}},
                **{code: _ERROR for code in ("400", "401", "404", "413", "415", "422", "500", "503")},
            },
        }
        if api_key:
            operation["security"] = [{"APIKey": []}]
        paths[f"/models/{name}/predict"] = {"post": {**operation, "operationId": f"predict_{key}"}}
        if name == default:
            paths["/predict"] = {"post": {**operation, "operationId": "predict_default",
                                          "summary": f"Predict with the default model ({name})"}}
    if api_key:
        document["components"]["securitySchemes"] = {"APIKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}}
    return document
