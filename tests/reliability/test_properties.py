"""Property tests: whatever a client sends or a config file says, the answer is a named refusal.

Serving: any body gives 200 or a 4xx with a one-line `detail`, never a 5xx. Config: any mutation
of a valid config either parses or raises ConfigError naming a key, never another exception.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops.config import PipelineConfig, parse_config
from mlops.errors import ConfigError
from mlops.serving.payload import PayloadError, RecordValidator, parse_records
from tests.integration.test_cli import base_config
from tests.unit.test_serving_app import ROW, serve
from tests.unit.test_serving_models import FakeRegistry, fitted

FEATURES = list(ROW)
MAX_ROWS = 50

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
# Records that look almost right: feature names (and a few strangers) with values of any type.
field_names = st.sampled_from(FEATURES) | st.text(min_size=1, max_size=12)
records = st.lists(st.dictionaries(field_names, json_values, max_size=len(FEATURES) + 2), max_size=MAX_ROWS + 3)
near_miss = st.builds(
    lambda key, rows: {key: rows},
    st.sampled_from(["records", "dataframe_records", "colour"]),
    records,
) | st.builds(
    lambda rows: {"records": rows},
    st.lists(st.builds(lambda drop, value: {**{k: v for k, v in ROW.items() if k != drop}, drop: value},
                       st.sampled_from(FEATURES), json_values), min_size=1, max_size=3),
)
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_miss.map(lambda v: json.dumps(v).encode())
)


def _is_refusal(err: PayloadError) -> None:
    assert err.status in (400, 413, 422)
    assert err.detail and "\n" not in err.detail


@settings(max_examples=400, deadline=None)
@given(body=bodies)
@example(body=b'{"\\n": null}')  # found by this test: a key with a newline broke the one-line detail
@example(body=b'{"records": [{"a\\nb": 1}]}')
def test_any_body_parses_or_is_refused_with_a_named_reason(body: bytes) -> None:
    validator = RecordValidator(fitted(0)[1])
    try:
        clean = validator.validate(parse_records(body, MAX_ROWS))
    except PayloadError as err:
        _is_refusal(err)
        return
    assert 1 <= len(clean) <= MAX_ROWS
    assert all(list(row) == FEATURES for row in clean)


def test_the_app_answers_any_body_with_200_or_a_named_4xx(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_API_KEY", "k-123")
    key = {"X-API-Key": "k-123"}
    limit, max_rows = 4096, 10  # 11 rows of ROW fit in the limit, so max_rows is what refuses them
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"}), headers=key,
               max_rows=max_rows, max_body_bytes=limit) as client:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=bodies | st.binary(min_size=limit + 1, max_size=limit + 64))
        def check(body: bytes) -> None:
            response = client.post("/predict", content=body, headers={**key, "Content-Type": "application/json"})
            assert response.status_code in (200, 400, 413, 422), response.text
            answer = response.json()
            if response.status_code == 200:
                assert answer["model_version"] == "1" and len(answer["predictions"]) >= 1
            else:
                assert answer["detail"] and "\n" not in answer["detail"]
            if len(body) > limit:
                assert response.status_code == 413

        check()
        # The key is required on every scoring call, and a wrong one is no better than none.
        for headers in ({}, {"X-API-Key": "k-12"}, {"X-API-Key": "k-1234"}):
            assert client.post("/predict", json={"records": [ROW]}, headers=headers).status_code == 401
        # An extreme batch: over max_rows is 422, and one too large to send is 413 before parsing.
        assert client.post("/predict", json={"records": [ROW] * (max_rows + 1)}, headers=key).status_code == 422
        huge = orjson.dumps({"records": [ROW] * 10_000})
        assert client.post("/predict", content=huge, headers={**key, "Content-Type": "application/json"}).status_code == 413


VALID = parse_config(base_config("data.parquet")).model_dump(mode="json")


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    return out


PATHS = _paths(VALID)


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        if not path:
            if draw(st.booleans()):
                return draw(json_values)
            continue
        parent = raw
        for key in path[:-1]:
            if not isinstance(parent, dict) or key not in parent:
                break
            parent = parent[key]
        else:
            if not isinstance(parent, dict):
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(json_values)
            elif action == "delete":
                parent.pop(path[-1], None)
            else:
                parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return raw


@settings(max_examples=500, deadline=None)
@given(raw=mutated_configs())
@example(raw={**VALID, "\n": None})  # found by this test: the key's newline split the message
def test_any_config_mutation_parses_or_names_its_key(raw: Any) -> None:
    try:
        config = parse_config(raw, "c.yaml")
    except ConfigError as err:
        message = str(err)
        assert message.startswith("config c.yaml: ") and "\n" not in message
        assert "'" in message or "expected a mapping" in message, message
        return
    assert isinstance(config, PipelineConfig)
