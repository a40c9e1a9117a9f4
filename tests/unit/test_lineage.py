"""Lineage tags: traceable, and free of credentials."""

from __future__ import annotations

from mlops.lineage import git_commit, lineage_tags, redact_uri


def test_redact_uri_drops_credentials_only():
    assert redact_uri("s3://AKIAXXX:secret@bucket/key.csv") == "s3://bucket/key.csv"
    assert redact_uri("postgresql://user:pw@db:5432/x") == "postgresql://db:5432/x"
    assert redact_uri("data/train.parquet") == "data/train.parquet"


def test_lineage_tags_carry_every_fact():
    tags = lineage_tags(
        data_uri="s3://k:s@b/d.parquet", data_fingerprint="f" * 64, config_hash="c" * 16,
        contract_source="inferred", flow_run_id="abc", validation_summary={"success": True},
    )
    assert tags["data_uri"] == "s3://b/d.parquet"
    assert tags["data_fingerprint"] == "f" * 64
    assert tags["prefect_flow_run_id"] == "abc"
    assert tags["lib.scikit-learn"][0].isdigit()
    assert tags["validation"] == '{"success": true}'
    assert "s:" not in tags["data_uri"]


def test_git_commit_outside_a_repository(tmp_path):
    assert git_commit(tmp_path) == "unknown"
