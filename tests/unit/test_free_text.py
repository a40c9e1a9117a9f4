"""Free text people typed (reasons, reviewer names, tag values) is kept as given in the records
and printed escaped: one record is one row, and nothing printed can drive the terminal.

A reject reason with ANSI escapes, CR and LF once printed raw in the deploy's error line and in
`mlops history`, where the LF made a forged row."""

from __future__ import annotations

import json

from mlops import audit, events
from mlops.promotion.status import render_status
from mlops.results import DeployResult, RollbackResult

HOSTILE = "fine\r\n2026-01-01 00:00:00  promoted  v1  v9  root  forged\x1b[2J\x1b[31m\u202e"
CONTROL = ("\n", "\r", "\x1b", "\u202e")


def _record(reason: str = HOSTILE, actor: str = "eve\x1b]0;title\x07@host") -> audit.AuditRecord:
    return audit.new_record(audit.ACTION_REFUSED, "churn", from_version="1", to_version="2", decision={},
                            reason=reason, evidence={}, flow_run_id=None, actor=actor)


def _clean(text: str) -> bool:
    """No control character anywhere but the line breaks that separate rows."""
    return not any(c in line for line in text.split("\n") for c in (*CONTROL, "\x07"))


def test_history_shows_one_row_per_record_escaped_and_keeps_the_record_as_given():
    record = _record()
    table = audit.render_table([record, _record("plain", "ann")])
    assert len(table.splitlines()) == 3  # the header and one row per record
    assert _clean(table)
    assert "fine\\r\\n2026-01-01" in table and "\\x1b[2J" in table and "eve\\x1b]0;title\\x07@host" in table
    # Stored as given: the JSON record and its round trip keep every character.
    assert audit.AuditRecord.from_json(record.to_json()).reason == HOSTILE


def test_deploy_and_rollback_summaries_keep_their_rows():
    deploy = DeployResult("refused", "churn", "2", "1", "1", HOSTILE)
    text = deploy.to_text()
    assert len(text.splitlines()) == 3 and _clean(text)  # head, reason, champion
    line = deploy.error_line()
    assert line.startswith("promotion refused: churn v2: fine\\r\\n2026") and _clean(line)
    rolled = RollbackResult("rolled-back", "churn", "2", "1", HOSTILE).to_text()
    assert len(rolled.splitlines()) == 2 and _clean(rolled)
    assert json.loads(json.dumps(deploy.to_dict()))["reason"] == HOSTILE


def test_rollout_status_prints_tag_values_and_step_reasons_escaped():
    status = {
        "model_name": "churn", "active": True, "rollout_started_at": "t0",
        "split": {"version": "2\x1b[2J", "champion_version": "1\n", "step": "canary", "challenger_share": 0.1,
                  "step_index": 0, "steps": [0.1, 1.0], "step_started_at": "t1\r",
                  "last_look": {"at": "t2", "verdict": {"action": "hold", "reasons": [HOSTILE]}, "evidence": {}}},
        "steps": [{"recorded_at": "t3", "version": "2", "reason": HOSTILE}],
    }
    text = render_status(status)
    assert len(text.splitlines()) == 3 and _clean(text)


def test_a_notification_carries_the_reason_escaped_the_audit_record_names_the_original():
    record = _record()
    _, _, payload = events.event_for(record)
    assert _clean(payload["reason"]) and payload["reason"].startswith("fine\\r\\n")
    assert payload["audit_record_id"] == record.record_id
    _, _, asked = events.approval_requested("churn", "2", "1", HOSTILE, 5)
    assert _clean(asked["reason"])


def test_the_models_table_escapes_tags_anyone_may_have_set():
    from mlops.results import render_versions

    rows = [{"version": "1", "aliases": ["champion"], "key_metrics": {}, "last_action": "refused\n  v9  champion"},
            {"version": "2", "aliases": [], "key_metrics": {}, "last_action": None}]
    text = render_versions("churn", rows, [])
    assert len(text.splitlines()) == 4 and _clean(text)
