"""What a materialization did, per feature view, and its markdown rendering: plain data, no Feast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ViewStatus:
    """One feature view's state: its TTL, how far it is materialized and the last run's row count.

    `rows_written` is None when the status was read rather than produced by a materialization.
    """

    name: str
    ttl_seconds: int | None
    last_materialized: datetime | None
    rows_written: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_materialized"] = self.last_materialized.isoformat() if self.last_materialized else None
        return data


def render_markdown(statuses: list[ViewStatus]) -> str:
    """A markdown table of the views' status (the materialize flow's Prefect artifact)."""
    lines = [
        "| feature view | last materialized (UTC) | rows written | TTL |",
        "|---|---|---|---|",
    ]
    for status in statuses:
        when = status.last_materialized.isoformat(timespec="seconds") if status.last_materialized else "never"
        rows = "-" if status.rows_written is None else str(status.rows_written)
        ttl = "none" if not status.ttl_seconds else f"{status.ttl_seconds / 86400:g} d"
        lines.append(f"| {status.name} | {when} | {rows} | {ttl} |")
    return "\n".join(lines) + "\n"
