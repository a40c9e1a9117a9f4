"""The Feast adapter: the one module that imports feast (STYLE.md rule 3).

Feast's Python API moved sharply across its recent releases (this is written against 0.67); when it
moves again, this file changes and nothing else. It turns Feast's objects and failures into ours:
`ViewStatus` rows, plain DataFrames, and `ConfigError` / `DataError` / `FeatureStoreUnavailable`
with one readable line each.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sqlite3
import string
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlops.errors import ConfigError, DataError, FeatureStoreUnavailable
from mlops.features import backends
from mlops.features.freshness import Freshness, assess
from mlops.features.status import ViewStatus
from mlops.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

# Feast's own name for the entity frame's time column; a caller may name another.
ENTITY_TIMESTAMP = "event_timestamp"
# A first materialization loads the whole history, not Feast's default of (now - TTL): the bundled
# sources are stamped in the past, and an empty online store after `materialize` helps nobody.
FIRST_START = datetime(1970, 1, 1, tzinfo=UTC)
# Driver errors that mean "the server is not answering", matched by name so that this module does
# not import every online store's client (redis, psycopg) just to recognise its failures.
_UNREACHABLE_NAMES = ("ConnectionError", "OperationalError", "TimeoutError")


_PROMETHEUS_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def _import_feast() -> None:
    """Import feast without letting it switch this process and its children to Prometheus files.

    Importing Feast 0.67 (feast.metrics) points PROMETHEUS_MULTIPROC_DIR at a temporary folder that
    it deletes when the importing process exits. Left in the environment, every process started
    afterwards inherits it: `mlops stack up` applies the repository and then starts the worker, so
    every flow run's prometheus_client wrote to a deleted folder (FileNotFoundError), and the
    serving app's /metrics would have moved into files. So prometheus_client is imported first
    (it picks in-process or file-backed values once, at import) and the variables are put back.
    """
    if "feast.metrics" in sys.modules:
        return
    before = {name: os.environ.get(name) for name in _PROMETHEUS_DIR_VARIABLES}
    import prometheus_client  # noqa: F401

    try:
        import feast.metrics  # noqa: F401
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@contextmanager
def _reaching(what: str) -> Iterator[None]:
    """Turn I/O failures of the registry or the stores into `FeatureStoreUnavailable`.

    Feast prints its progress to stdout; it goes to stderr so that `--json` output stays parseable.
    """
    try:
        with redirect_stdout(sys.stderr):
            yield
    except FileNotFoundError as error:
        # A missing Parquet source is bad data, not an outage: retrying will not create it.
        # Dask wraps the original error and keeps the path in its cause or its last line.
        cause = error.__cause__ if isinstance(error.__cause__, FileNotFoundError) else error
        missing = str(cause.filename or str(cause).strip().splitlines()[-1])
        hint = " (run `make data`?)" if missing.endswith(".parquet") else ""
        raise DataError(f"{what}: file not found: {missing}{hint}") from error
    except (OSError, sqlite3.Error) as error:
        raise FeatureStoreUnavailable(f"{what}: feature store unreachable: {_one_line(error)}") from error
    except Exception as error:
        if any(cls.__name__ in _UNREACHABLE_NAMES for cls in type(error).__mro__):
            raise FeatureStoreUnavailable(f"{what}: feature store unreachable: {_one_line(error)}") from error
        raise


def load_config(repo: str | Path, home: str | Path) -> Any:
    """The repository's RepoConfig, with ${MLOPS_HOME} set to the stack's home (Settings.home).

    Other ${VARIABLES} come from the environment, as the `feast` CLI would substitute them, so a
    team points the registry and online store elsewhere without editing the file; simpler still,
    MLOPS_FEAST_REGISTRY and MLOPS_FEAST_ONLINE_STORE replace those two entries (backends.py).
    """
    _import_feast()
    from feast.repo_config import RepoConfig

    repo = Path(repo).resolve()
    path = repo / "feature_store.yaml"
    if not path.is_file():
        raise ConfigError(f"no Feast repository at {repo}: feature_store.yaml is missing")
    values = {**os.environ, "MLOPS_HOME": str(Path(home).resolve())}
    settings = Settings()
    try:
        raw = yaml.safe_load(string.Template(path.read_text()).safe_substitute(values))
        raw = backends.with_team_stores(raw, settings.feast_registry, settings.feast_online_store)
        config = RepoConfig(**raw)
    except ConfigError:  # an MLOPS_FEAST_* variable, named in its own message: not the file's fault
        raise
    except Exception as error:  # yaml and pydantic errors: both mean the file is wrong
        raise ConfigError(f"{path}: invalid feature store config: {_one_line(error)}") from error
    config.repo_path = repo
    return config


def open_store(repo: str | Path, home: str | Path) -> FeatureStore:
    """A FeatureStore over the repository at `repo`, its local state under `home`/feast."""
    _import_feast()
    from feast import FeatureStore

    config = load_config(repo, home)
    (Path(home) / "feast").mkdir(parents=True, exist_ok=True)
    with _reaching("open"):
        return FeatureStore(config=config)


def load_definitions(repo: str | Path) -> list[Any]:
    """The Feast objects defined in the repository's Python files (what `feast apply` would collect)."""
    _import_feast()
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    kinds = (DataSource, Entity, FeatureView, FeatureService)
    found: list[Any] = []
    for path in sorted(Path(repo).resolve().glob("*.py")):
        # Loaded by file, not by module name: the repository is not a package on sys.path.
        spec = importlib.util.spec_from_file_location(f"_mlops_feature_repo_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise ConfigError(f"{path}: cannot load feature definitions: {_one_line(error)}") from error
        for value in vars(module).values():
            if isinstance(value, kinds) and not any(value is seen for seen in found):
                found.append(value)
    return found


def _relocate_sources(objects: list[Any]) -> None:
    """Point relative file sources at MLOPS_FEAST_SOURCE_URI (S3) before they are registered.

    The registry keeps each source's path, so every reader (materialization, training, another
    team member) reads where apply put it; MLOPS_S3_ENDPOINT_URL goes with it for MinIO and the like.
    """
    from feast import FeatureView, FileSource

    settings = Settings()
    sources = [o for o in objects if isinstance(o, FileSource)]
    sources += [o.batch_source for o in objects if isinstance(o, FeatureView) and isinstance(o.batch_source, FileSource)]
    for source in sources:
        moved = backends.source_location(source.file_options.uri, settings.feast_source_uri)
        if moved is not None:
            source.file_options.uri = moved
            source.file_options.s3_endpoint_override = settings.s3_endpoint_url or ""


def apply_repo(store: FeatureStore, repo: str | Path) -> dict[str, list[str]]:
    """Register the repository's definitions and drop registered ones it no longer defines."""
    from feast import Entity, FeatureService, FeatureView

    objects = load_definitions(repo)
    _relocate_sources(objects)
    if not any(isinstance(o, FeatureView) for o in objects):
        raise ConfigError(f"{Path(repo).resolve()}: no feature views defined")
    defined = {(type(o).__name__, o.name) for o in objects}
    with _reaching("apply"):
        registered = [*store.list_feature_services(), *store.list_feature_views(), *store.list_entities()]
        stale = [o for o in registered if (type(o).__name__, o.name) not in defined]
        store.apply(objects, objects_to_delete=stale, partial=False)

    def names(kind: type) -> list[str]:
        return sorted(o.name for o in objects if isinstance(o, kind))

    return {
        "entities": names(Entity),
        "feature_views": names(FeatureView),
        "feature_services": names(FeatureService),
        "deleted": sorted(o.name for o in stale),
    }


def _views(store: FeatureStore) -> dict[str, Any]:
    with _reaching("registry"):
        views = {view.name: view for view in store.list_feature_views()}
    if not views:
        raise ConfigError("the feature store has no feature views: run `mlops features apply` first")
    return views


def _select(views: dict[str, Any], names: Sequence[str] | None) -> list[str]:
    chosen = list(names) if names else sorted(views)
    unknown = [name for name in chosen if name not in views]
    if unknown:
        raise ConfigError(f"unknown feature view '{unknown[0]}' (known: {', '.join(sorted(views))})")
    return chosen


def _ttl_seconds(view: Any) -> int | None:
    return int(view.ttl.total_seconds()) if view.ttl else None


def status(store: FeatureStore, views: Sequence[str] | None = None) -> list[ViewStatus]:
    """Each feature view's TTL and the time up to which it is materialized (None: never)."""
    registered = _views(store)
    return [
        ViewStatus(name, _ttl_seconds(registered[name]), registered[name].most_recent_end_time)
        for name in _select(registered, views)
    ]


def view_freshness(
    store: FeatureStore, views: Sequence[str] | None = None, now: datetime | None = None
) -> list[Freshness]:
    """Each view's age since its last materialization against its bound (tag mlops.max_staleness_minutes)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    registered = _views(store)
    return [
        assess(name, registered[name].most_recent_end_time, dict(registered[name].tags or {}), now)
        for name in _select(registered, views)
    ]


def service_views(store: FeatureStore, feature_service: str) -> list[str]:
    """The feature views a feature service reads from; an unknown service is ConfigError naming the known ones."""
    with _reaching("feature service"):
        services = {service.name: service for service in store.list_feature_services()}
    if feature_service not in services:
        raise ConfigError(f"unknown feature service '{feature_service}' (known: {', '.join(sorted(services)) or 'none'})")
    return sorted({projection.name for projection in services[feature_service].feature_view_projections})


def _rows_between(store: FeatureStore, view: Any, start: datetime, end: datetime) -> int:
    """How many rows a materialization of (start, end] writes: each entity's latest row in it.

    Feast does not report it, so the same query its engine runs is counted here.
    """
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

    source = view.batch_source
    join_keys = [store.get_entity(name).join_key for name in view.entities]
    job = get_offline_store_from_config(store.config.offline_store).pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=join_keys,
        feature_name_columns=[field.name for field in view.features],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
        start_date=start,
        end_date=end,
    )
    return job.to_arrow().num_rows


def materialize(
    store: FeatureStore, end: datetime | None = None, views: Sequence[str] | None = None
) -> list[ViewStatus]:
    """Load each view's rows newer than its last materialization (up to `end`) into the online store."""
    end = (end or datetime.now(UTC)).astimezone(UTC)
    registered = _views(store)
    statuses = []
    for name in _select(registered, views):
        view = registered[name]
        start = view.most_recent_end_time
        with _reaching(f"materialize {name}"):
            rows = _rows_between(store, view, start or FIRST_START, end)
            if start is None:
                store.materialize(start_date=FIRST_START, end_date=end, feature_views=[name])
            else:
                store.materialize_incremental(end_date=end, feature_views=[name])
        statuses.append(ViewStatus(name, _ttl_seconds(view), end, rows))
    return statuses


def _feature_service(store: FeatureStore, name: str) -> Any:
    """The registered feature service `name`; ConfigError naming the known ones when it is not."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException as error:
        known = ", ".join(sorted(s.name for s in store.list_feature_services())) or "none: run `mlops features apply`?"
        raise ConfigError(f"unknown feature service '{name}' (known: {known})") from error


def historical_frame(
    store: FeatureStore,
    entity_frame: pd.DataFrame,
    feature_service: str,
    timestamp: str = ENTITY_TIMESTAMP,
) -> pd.DataFrame:
    """The entity frame joined point-in-time to the service's features, in the entity frame's order.

    Each row gets, per view, the latest value stamped at or before its timestamp and within the
    view's TTL; a value stamped after it never appears (no leakage into training).
    """
    import pandas as pd

    if timestamp not in entity_frame.columns:
        raise DataError(
            f"entity frame has no timestamp column '{timestamp}' (columns: {', '.join(map(str, entity_frame.columns))})"
        )
    with _reaching("historical features"):
        service = _feature_service(store, feature_service)
        join_keys = sorted(
            {store.get_entity(name).join_key for p in service.feature_view_projections
             for name in store.get_feature_view(p.name).entities}
        )
    missing = [key for key in join_keys if key not in entity_frame.columns]
    if missing:
        raise DataError(f"entity frame lacks the join key '{missing[0]}' of feature service '{feature_service}'")
    served = [field.name for p in service.feature_view_projections for field in p.features]
    clashes = [name for name in served if name in entity_frame.columns]
    if clashes:
        # Two columns of one name would leave the training frame to pick one silently.
        raise DataError(f"entity frame already has column '{clashes[0]}', a feature of service '{feature_service}'")
    # Feast returns rows in its own order, keeps one of two entity rows with the same keys and time,
    # and (0.67, file offline store) drops rows stamped before any source data. So Feast is asked
    # once per distinct (keys, time) pair, each with a number, and every row of the caller's frame
    # gets its pair's features back in its own place, missing where none was known at its time:
    # no label silently disappears, and two labels of one customer at one instant both get features.
    pair = "__mlops_pair"
    frame = entity_frame.reset_index(drop=True)
    stamps = frame[[*join_keys]].assign(**{ENTITY_TIMESTAMP: pd.to_datetime(frame[timestamp], utc=True)})
    query = stamps.drop_duplicates().reset_index(drop=True)
    query[pair] = range(len(query))
    with _reaching("historical features"):
        joined = store.get_historical_features(entity_df=query, features=service).to_df()
    features = joined.drop(columns=[*join_keys, ENTITY_TIMESTAMP])
    # A left merge keeps the left rows' order; each row finds exactly one pair (they are distinct).
    numbered = frame.assign(**{pair: stamps.merge(query, on=[*join_keys, ENTITY_TIMESTAMP], how="left")[pair].to_numpy()})
    return numbered.merge(features, on=pair, how="left").drop(columns=pair)


@dataclass(frozen=True)
class ServiceLineage:
    """What a feature service is made of, for lineage: its views (name -> spec version) and join keys."""

    name: str
    views: dict[str, str]
    join_keys: tuple[str, ...]


# Long enough to tell two specs of one view apart in a tag, short enough to read.
VIEW_VERSION_CHARS = 12


def view_version(view: Any) -> str:
    """A version identifier of a feature view: a short sha256 of its spec proto.

    Feast numbers no versions; the spec (schema, source, TTL, entities, tags) is what decides the
    values a join returns; the meta (creation, update and materialization times, its sources'
    too) is left out, so the same definitions give the same version in any registry.
    """
    spec = view.to_proto().spec
    for source in ("batch_source", "stream_source"):
        # A data source carries its own creation and update times inside the view's spec.
        if spec.HasField(source):
            getattr(spec, source).ClearField("meta")
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()[:VIEW_VERSION_CHARS]


def service_lineage(store: FeatureStore, feature_service: str) -> ServiceLineage:
    """The service's views with their versions and its join keys, each checked against the registry.

    A missing service or a view the registry does not hold is a `ConfigError` naming it, before any
    data is joined; an unreachable registry is `FeatureStoreUnavailable`.
    """
    from feast.errors import FeatureViewNotFoundException

    with _reaching("feature service"):
        service = _feature_service(store, feature_service)
        views: dict[str, str] = {}
        keys: set[str] = set()
        for projection in service.feature_view_projections:
            try:
                view = store.get_feature_view(projection.name)
            except FeatureViewNotFoundException as error:
                raise ConfigError(
                    f"feature service '{feature_service}' uses feature view '{projection.name}', "
                    "which the registry does not hold (run `mlops features apply`?)"
                ) from error
            views[view.name] = view_version(view)
            keys.update(store.get_entity(name).join_key for name in view.entities)
    return ServiceLineage(feature_service, dict(sorted(views.items())), tuple(sorted(keys)))


# -- online lookups (serving by entity key) ---------------------------------------------------------

# Per-row status of an online lookup: every feature found and fresh; no feature found at all (the
# store has never seen the entity); a feature older than its view's TTL; or some views know the
# entity and another does not (e.g. a profile but no activity materialized yet).
ROW_OK = "ok"
ROW_UNKNOWN_ENTITY = "unknown_entity"
ROW_STALE = "stale"
ROW_MISSING_FEATURE = "missing_feature"
# Python types a join key's value may take, by Feast value type name (JSON has no other kinds).
_KEY_TYPES: dict[str, tuple[type, ...]] = {"INT64": (int,), "INT32": (int,), "STRING": (str,)}
# The integers a join key's Feast type holds. JSON integers have no bound, and Feast's conversion of
# one beyond them raises deep inside the lookup (a 500 that any client could cause): checked at the
# door instead. A key of another type that takes integers is stored as INT64 at most.
INT64_RANGE = (-(2**63), 2**63 - 1)
_KEY_RANGES: dict[str, tuple[int, int]] = {"INT64": INT64_RANGE, "INT32": (-(2**31), 2**31 - 1)}


@dataclass(frozen=True)
class ServiceSchema:
    """What a caller of the online store needs to know about a feature service, with no Feast in it."""

    name: str
    join_keys: dict[str, tuple[type, ...]]  # join key -> the Python types its value may take
    views: dict[str, str]  # feature -> the view that serves it (feature names are unique in a service)
    ttl_seconds: dict[str, int | None]  # view -> its TTL (None: values never go stale)
    # Feast's FeatureService, kept so that a lookup does not read the registry again (~1 ms a call).
    service: Any = field(default=None, compare=False, repr=False)
    # The direct Redis reader (_RedisReader) when the online store is a plain Redis one; None: Feast reads.
    reader: Any = field(default=None, compare=False, repr=False)
    # join key -> the integers its Feast type holds (a key missing here: INT64_RANGE).
    key_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.views)


@dataclass(frozen=True)
class FeatureProblem:
    """Why one feature of one row cannot be trusted: `not_found` in the online store, or `stale`."""

    kind: str
    feature: str
    view: str
    event_time: datetime | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class RowStatus:
    """The verdict on one entity row: `status` (ROW_*), the view and feature to blame, and why."""

    status: str
    detail: str = ""
    view: str | None = None
    feature: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == ROW_OK


@dataclass(frozen=True)
class OnlineFeatures:
    """The result of one batched online lookup: features column by column, and each row's problems."""

    schema: ServiceSchema
    entities: list[dict[str, Any]]
    columns: dict[str, list[Any]]  # feature -> one value per entity row (None where not found)
    problems: list[tuple[FeatureProblem, ...]]

    def row_status(self, row: int, supplied: Collection[str] = ()) -> RowStatus:
        """Row `row`'s status; features in `supplied` (given with the request) are not held against it."""
        problems = [p for p in self.problems[row] if p.feature not in supplied]
        if not problems:
            return RowStatus(ROW_OK)
        key = ", ".join(f"{k}={self.entities[row].get(k)!r}" for k in self.schema.join_keys)
        not_found = [p for p in problems if p.kind == "not_found"]
        if len(not_found) == len(self.schema.views):
            return RowStatus(
                ROW_UNKNOWN_ENTITY, f"unknown entity {key}: the online store has no features of "
                f"service '{self.schema.name}' for it",
            )
        stale = next((p for p in problems if p.kind == "stale"), None)
        if stale is not None:
            stamped = stale.event_time.isoformat() if stale.event_time else "unknown"
            return RowStatus(
                ROW_STALE, f"feature '{stale.feature}' of view '{stale.view}' is stale for {key}: stamped "
                f"{stamped}, older than the view's TTL of {_duration(stale.ttl_seconds)}",
                stale.view, stale.feature,
            )
        first = not_found[0]
        return RowStatus(
            ROW_MISSING_FEATURE, f"feature '{first.feature}' of view '{first.view}' has no online value for {key}",
            first.view, first.feature,
        )

    @property
    def statuses(self) -> list[RowStatus]:
        return [self.row_status(row) for row in range(len(self.entities))]

    def frame(self) -> pd.DataFrame:
        """The entity rows with their features, one row each, in the caller's order."""
        import pandas as pd

        keys = {key: [row[key] for row in self.entities] for key in self.schema.join_keys}
        return pd.DataFrame({**keys, **self.columns})


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "none"
    return f"{seconds // 86400} d" if seconds % 86400 == 0 else f"{seconds} s"


def describe_service(store: FeatureStore, feature_service: str) -> ServiceSchema:
    """The join keys, features (with their views) and TTLs of a feature service, read from the registry."""
    with _reaching("online features"):
        service = _feature_service(store, feature_service)
        join_keys: dict[str, tuple[type, ...]] = {}
        key_ranges: dict[str, tuple[int, int]] = {}
        views: dict[str, str] = {}
        ttls: dict[str, int | None] = {}
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            ttls[projection.name] = _ttl_seconds(view)
            for name in view.entities:
                entity = store.get_entity(name)
                join_keys[entity.join_key] = _KEY_TYPES.get(entity.value_type.name, (int, str))
                key_ranges[entity.join_key] = _KEY_RANGES.get(entity.value_type.name, INT64_RANGE)
            for feature in projection.features:
                views[feature.name] = projection.name
        reader = _redis_reader(store, service, views)
    return ServiceSchema(feature_service, join_keys, views, ttls, service, reader, key_ranges)


def online_features(
    store: FeatureStore,
    schema: ServiceSchema,
    entity_rows: Sequence[dict[str, Any]],
    now: datetime | None = None,
) -> OnlineFeatures:
    """The service's online features of `entity_rows` (join keys only) in one batched read.

    From a plain Redis online store the values are read by `_RedisReader` (one pipelined HMGET per
    entity); from any other store by one `get_online_features` call. Both give the same values and
    statuses. Each row gets a status, from what Feast 0.67 returns per feature and row (a status and
    an event timestamp; read in its installed source):
    * not found: the SQLite store marks it NOT_FOUND, but the Redis store marks a missing key
      PRESENT with an empty value and an unset (zero) timestamp (`RedisOnlineStore.
      _get_features_for_entity`), so an unset timestamp means not found as well;
    * stale: Feast marks OUTSIDE_MAX_AGE only on its pre-computed-vector path
      (feast/infra/online_stores/online_store.py), not on the plain reads these stores do, so it is
      decided here by the rule that path uses: older than the view's TTL at `now` (default: the
      current time). A value Feast itself marks OUTSIDE_MAX_AGE is stale too.
    """
    now_seconds = (now or datetime.now(UTC)).timestamp()
    with _reaching("online features"):
        if schema.reader is not None:
            read = schema.reader.read(entity_rows)
        else:
            read = _read_through_feast(store, schema, entity_rows)
    problems: list[list[FeatureProblem]] = [[] for _ in entity_rows]
    columns: dict[str, list[Any]] = {}
    for feature, view in schema.views.items():
        column, stamps, outside_max_age = read[feature]
        ttl = schema.ttl_seconds[view]
        for row, stamp in enumerate(stamps):
            if stamp is None:
                problems[row].append(FeatureProblem("not_found", feature, view))
                column[row] = None
            elif row in outside_max_age or (ttl is not None and now_seconds - stamp > ttl):
                problems[row].append(FeatureProblem("stale", feature, view, datetime.fromtimestamp(stamp, UTC), ttl))
        columns[feature] = column
    return OnlineFeatures(schema, [dict(row) for row in entity_rows], columns, [tuple(p) for p in problems])


# What one batched read gives per feature: the values, each row's event time in seconds (None: not
# found) and the rows Feast itself marked OUTSIDE_MAX_AGE.
_FeatureRead = tuple[list[Any], list[float | None], frozenset[int]]


def _read_through_feast(store: FeatureStore, schema: ServiceSchema, entity_rows: Sequence[dict[str, Any]]) -> dict[str, _FeatureRead]:
    """One `get_online_features` call (any online store), per feature."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    service = schema.service if schema.service is not None else store.get_feature_service(schema.name)
    response = store.get_online_features(features=service, entity_rows=list(entity_rows))
    values = response.to_dict()
    not_found, outside_max_age = FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE  # enum lookups cost, hoisted
    results = dict(zip(response.proto.metadata.feature_names.val, response.proto.results, strict=True))
    read: dict[str, _FeatureRead] = {}
    for feature in schema.views:
        vector = results[feature]
        stamps: list[float | None] = []
        outside: set[int] = set()
        for row, (status, stamp) in enumerate(zip(vector.statuses, vector.event_timestamps, strict=True)):
            if status == not_found or not (stamp.seconds or stamp.nanos):
                stamps.append(None)
                continue
            stamps.append(stamp.seconds + stamp.nanos / 1e9)
            if status == outside_max_age:
                outside.add(row)
        read[feature] = (values[feature], stamps, frozenset(outside))
    return read


@dataclass(frozen=True)
class _HashLayout:
    """The views of a service keyed by the same join keys: Feast keeps them in one Redis hash per entity.

    `fields` is what one HMGET asks for: each view's features (mmh3 of `view:feature`) and then
    its `_ts:view` timestamp field; `slices` says where each view's part starts and ends.
    """

    join_keys: tuple[str, ...]
    key_types: tuple[Any, ...]  # Feast ValueType per join key
    fields: tuple[bytes | str, ...]
    slices: tuple[tuple[tuple[tuple[str, Any], ...], int], ...]  # per view: ((feature, value type), ...), start


class _RedisReader:
    """Reads a feature service's values from Feast's Redis online store directly: one pipeline per lookup.

    Feast's own read (`get_online_features`) costs ~6.7 ms for 32 entities, mostly its Python around
    the round trip (entity dedup, a response proto, its conversion to a dict). This reads the same
    keys Feast wrote (serialized entity key + project; hash fields mmh3(`view:feature`) and
    `_ts:view`; values ValueProto) with Feast's own helpers, in one HMGET per entity for all views
    sharing its join keys, and converts each value with the function `to_dict` uses, so the result
    equals Feast's (tests/integration/test_features_redis.py compares the two).
    """

    def __init__(self, client: Any, project: str, key_version: int, layouts: tuple[_HashLayout, ...]) -> None:
        self.client = client
        self.project = project.encode("utf-8")
        self.key_version = key_version
        self.layouts = layouts

    def read(self, entity_rows: Sequence[dict[str, Any]]) -> dict[str, _FeatureRead]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from google.protobuf.timestamp_pb2 import Timestamp

        keys_per_layout = []
        for layout in self.layouts:
            columns = [python_values_to_proto_values([row[key] for row in entity_rows], value_type)
                       for key, value_type in zip(layout.join_keys, layout.key_types, strict=True)]
            keys_per_layout.append([
                serialize_entity_key(EntityKeyProto(join_keys=layout.join_keys, entity_values=values),
                                     entity_key_serialization_version=self.key_version) + self.project
                for values in zip(*columns, strict=True)
            ])
        with self.client.pipeline(transaction=False) as pipe:
            for layout, redis_keys in zip(self.layouts, keys_per_layout, strict=True):
                for redis_key in redis_keys:
                    pipe.hmget(redis_key, layout.fields)
            replies = iter(pipe.execute())
        read: dict[str, _FeatureRead] = {}
        no_rows: frozenset[int] = frozenset()
        for layout in self.layouts:
            hashes = [next(replies) for _ in entity_rows]
            for features, start in layout.slices:
                stamps = [_event_seconds(hash_[start + len(features)], Timestamp) for hash_ in hashes]
                for offset, (feature, value_type) in enumerate(features):
                    column = []
                    for hash_ in hashes:
                        value = ValueProto()
                        raw = hash_[start + offset]
                        if raw:
                            value.ParseFromString(raw)
                        column.append(feast_value_type_to_python_type(value, value_type))
                    read[feature] = (column, list(stamps), no_rows)
        return read


def _event_seconds(raw: bytes | None, timestamp_type: Any) -> float | None:
    """A `_ts:view` field in seconds as Feast reports it; None where unset (the view has no row for the entity).

    Feast turns the stored Timestamp into a datetime and back (`_get_features_for_entity`, then
    `_populate_response_from_feature_data`), which keeps microseconds: done the same way here so
    that a TTL boundary falls exactly where it does through Feast.
    """
    stored = timestamp_type()
    if raw:
        stored.ParseFromString(raw)
    if not (stored.seconds or stored.nanos):
        return None
    reported = timestamp_type()
    reported.FromDatetime(datetime.fromtimestamp(stored.seconds + stored.nanos / 1_000_000_000.0, tz=UTC))
    return reported.seconds + reported.nanos / 1e9


def _redis_reader(store: FeatureStore, service: Any, views: dict[str, str]) -> _RedisReader | None:
    """A `_RedisReader` for `service` when the online store is Redis read by redis-py; None otherwise.

    Feast's other read paths are left to Feast: GLIDE as client, feature view versioning (a
    suffixed view name) and pre-computed service vectors.
    """
    config = store.config
    online = config.online_store
    if type(online).__name__ != "RedisOnlineStoreConfig":  # checked by name: no redis import for other stores
        return None
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import RedisClient, RedisOnlineStore

    if online.client != RedisClient.redis:
        return None
    if getattr(config.registry, "enable_online_feature_view_versioning", False) or getattr(service, "precompute_online", False):
        return None
    redis_store = store._get_provider().online_store
    if not isinstance(redis_store, RedisOnlineStore):
        return None
    grouped: dict[tuple[str, ...], list[tuple[str, tuple[tuple[str, Any], ...]]]] = {}
    key_types: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        entities = {store.get_entity(name).join_key: store.get_entity(name).value_type for name in view.entities}
        join_keys = tuple(sorted(entities))
        key_types[join_keys] = tuple(entities[key] for key in join_keys)
        dtypes = {f.name: f.dtype.to_value_type() for f in view.features}
        served = tuple((f.name, dtypes[f.name]) for f in projection.features if views.get(f.name) == projection.name)
        grouped.setdefault(join_keys, []).append((projection.name, served))
    layouts = []
    for join_keys, members in grouped.items():
        fields: list[bytes | str] = []
        slices = []
        for view_name, served in members:
            slices.append((served, len(fields)))
            fields += [_mmh3(f"{view_name}:{feature}") for feature, _ in served]
            fields.append(f"_ts:{view_name}")
        layouts.append(_HashLayout(join_keys, key_types[join_keys], tuple(fields), tuple(slices)))
    # Feast's own client (redis, cluster or sentinel, as configured), so both paths share one pool.
    client = redis_store._get_client(online)
    return _RedisReader(client, config.project, config.entity_key_serialization_version, tuple(layouts))
