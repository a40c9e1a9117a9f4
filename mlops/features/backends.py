"""Where a team's feature store lives: the registry, the online store and the sources, from Settings.

Plain dictionaries in Feast's feature_store.yaml shape, no Feast import. Unset, nothing changes and
the repository's file says it all (local registry file, SQLite online store, sources beside it).
Set, an environment variable replaces that entry, so one reviewed repository serves a laptop and
a team's servers alike:

- MLOPS_FEAST_REGISTRY: a SQLAlchemy URL (postgresql://user@db:5432/feast) -> a SQL registry.
- MLOPS_FEAST_ONLINE_STORE: redis://[:password@]host:port[/db] (rediss:// for TLS) -> Redis.
- MLOPS_FEAST_SOURCE_URI: s3://bucket/prefix -> each file source with a relative path is read from
  <prefix>/<its file name>, through MLOPS_S3_ENDPOINT_URL when that is set.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote, urlsplit

from mlops.errors import ConfigError

ONLINE_SCHEMES = ("redis", "rediss")
REGISTRY_SCHEMES = ("postgresql", "postgresql+psycopg")
# The SQL registry caches what it read; another process's apply or materialization shows after this.
REGISTRY_CACHE_SECONDS = 10


def registry_config(url: str) -> dict[str, Any]:
    """Feast's `registry` entry for a SQL registry at `url` (PostgreSQL through psycopg 3)."""
    scheme = urlsplit(url).scheme
    if scheme not in REGISTRY_SCHEMES:
        raise ConfigError(f"MLOPS_FEAST_REGISTRY must be a postgresql:// URL, not {scheme or 'a bare path'}://...")
    return {
        "registry_type": "sql",
        # Feast itself sends a bare postgresql:// to psycopg 3 (installed), not psycopg2 (not).
        "path": url,
        "cache_ttl_seconds": REGISTRY_CACHE_SECONDS,
        # A database restarted under a long-lived process (the serving app) must not fail the next read.
        "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
    }


def online_store_config(url: str) -> dict[str, Any]:
    """Feast's `online_store` entry for the Redis server at `url`."""
    parts = urlsplit(url)
    if parts.scheme not in ONLINE_SCHEMES:
        raise ConfigError(
            f"MLOPS_FEAST_ONLINE_STORE must be a redis:// or rediss:// URL, not {parts.scheme or 'a bare path'}://..."
        )
    if not parts.hostname:
        raise ConfigError("MLOPS_FEAST_ONLINE_STORE names no host (redis://host:6379)")
    # Feast's connection string: host:port, then key=value options separated by commas.
    options = [f"{parts.hostname}:{parts.port or 6379}"]
    database = parts.path.strip("/")
    if database:
        if not database.isdigit():
            raise ConfigError(f"MLOPS_FEAST_ONLINE_STORE: the database after the port is a number, not {database!r}")
        options.append(f"db={database}")
    if parts.username:
        options.append(f"username={unquote(parts.username)}")
    if parts.password:
        password = unquote(parts.password)
        if "," in password:
            # Feast splits its connection string on commas: such a password would be cut in two.
            raise ConfigError("MLOPS_FEAST_ONLINE_STORE: Feast cannot take a Redis password holding a comma")
        options.append(f"password={password}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    return {"type": "redis", "connection_string": ",".join(options)}


def with_team_stores(raw: dict[str, Any], registry_url: str | None, online_url: str | None) -> dict[str, Any]:
    """The repository's config with the registry and the online store the environment names, if any."""
    updated = copy.deepcopy(raw)
    if registry_url:
        updated["registry"] = registry_config(registry_url)
    if online_url:
        updated["online_store"] = online_store_config(online_url)
    return updated


def source_location(path: str, source_uri: str | None) -> str | None:
    """Where a file source with `path` is read from under MLOPS_FEAST_SOURCE_URI; None: where it says.

    Only relative paths move (the bundled `../data/features/x.parquet` becomes `<uri>/x.parquet`):
    a source that names its own absolute path or URL keeps it.
    """
    if not source_uri or urlsplit(path).scheme or path.startswith("/"):
        return None
    if urlsplit(source_uri).scheme != "s3":
        raise ConfigError(f"MLOPS_FEAST_SOURCE_URI must be an s3://bucket/prefix URI, not {source_uri!r}")
    return f"{source_uri.rstrip('/')}/{path.rsplit('/', 1)[-1]}"
