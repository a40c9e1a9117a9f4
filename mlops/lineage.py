"""Lineage facts recorded with every model version: code commit, library versions, redacted URIs."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TRACKED_PACKAGES = ("scikit-learn", "pandas", "numpy", "mlflow", "prefect", "great-expectations", "skops")


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit the code runs from, with '+dirty' when the tree has changes; 'unknown' outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide what a model computes."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not-installed"
    return versions


def redact_uri(uri: str) -> str:
    """Drop any user:password@ part so credentials never land in tags or logs."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def lineage_tags(
    *,
    data_uri: str,
    data_fingerprint: str,
    config_hash: str,
    contract_source: str,
    flow_run_id: str | None,
    validation_summary: dict | None = None,
    config_source: dict[str, str] | None = None,
    features: dict[str, str] | None = None,
) -> dict[str, str]:
    """Tags that let anyone trace a model version back to its data, code, config and run."""
    tags = {
        "data_uri": redact_uri(data_uri),
        "data_fingerprint": data_fingerprint,
        "config_hash": config_hash,
        "git_commit": git_commit(),
        "contract_source": contract_source,
        "prefect_flow_run_id": flow_run_id or "none",
    }
    tags.update({f"lib.{name}": version for name, version in library_versions().items()})
    # Where the config came from (catalogue runs): file, its content hash, which keys were overridden.
    tags.update({f"config_{key}": value for key, value in (config_source or {}).items()})
    # A store-fed frame: the feature service, its views' versions, the entity frame's fingerprint
    # (data_fingerprint is then the joined frame's).
    tags.update(features or {})
    if validation_summary is not None:
        import json

        tags["validation"] = json.dumps(validation_summary, sort_keys=True, default=str)
    return tags
