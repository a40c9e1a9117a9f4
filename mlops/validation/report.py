"""What validation found, in our terms: one outcome per expectation and the report over them all.

Rendered as one line (logs, exceptions), a markdown table (Prefect artifact), a dict (MLflow
artifact) and a short dict (MLflow tag).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["schema", "contract", "rule"]

# How many failed expectations the one-line summary and the MLflow tag name.
MAX_LISTED_FAILURES = 5


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, in our terms."""

    expectation: str
    column: str | None
    success: bool
    source: Source
    kwargs: dict[str, Any] = field(hash=False)
    observed: str

    def describe(self) -> str:
        """Name the expectation, its column and what was observed, on one line."""
        where = f" on '{self.column}'" if self.column is not None else ""
        return f"{self.expectation}{where} ({self.observed})"


@dataclass(frozen=True)
class ValidationReport:
    """Every expectation the data was held to, and whether it met them all."""

    success: bool
    data_uri: str
    row_count: int
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def summary(self) -> str:
        """One line for a log or an exception message."""
        if self.success:
            return (
                f"data validation passed for {self.data_uri}: "
                f"{len(self.outcomes)} expectations on {self.row_count} rows"
            )
        failed = self.failed
        listed = "; ".join(o.describe() for o in failed[:MAX_LISTED_FAILURES])
        more = (
            f"; and {len(failed) - MAX_LISTED_FAILURES} more"
            if len(failed) > MAX_LISTED_FAILURES
            else ""
        )
        return (
            f"data validation failed for {self.data_uri}: {len(failed)} of {len(self.outcomes)} "
            f"expectations failed: {listed}{more}"
        )

    def to_markdown(self) -> str:
        """A table of every expectation, failed first, for a Prefect markdown artifact."""
        verdict = "passed" if self.success else "failed"
        lines = [
            f"## Data validation {verdict}",
            "",
            f"`{_cell(self.data_uri)}`: {self.row_count} rows, {len(self.outcomes)} expectations, "
            f"{len(self.failed)} failed",
            "",
            "| status | expectation | column | source | observed |",
            "|---|---|---|---|---|",
        ]
        for o in sorted(self.outcomes, key=lambda o: o.success):
            status = "pass" if o.success else "**FAIL**"
            column = f"`{_cell(o.column)}`" if o.column is not None else ""
            lines.append(
                f"| {status} | {o.expectation} | {column} | {o.source} | {_cell(o.observed)} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for an MLflow artifact."""
        return {
            "success": self.success,
            "data_uri": self.data_uri,
            "row_count": self.row_count,
            "evaluated": len(self.outcomes),
            "failed": len(self.failed),
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ValidationReport:
        """Rebuild a report from `to_dict` output (e.g. a downloaded artifact)."""
        return cls(
            success=bool(raw["success"]),
            data_uri=str(raw["data_uri"]),
            row_count=int(raw["row_count"]),
            outcomes=tuple(ExpectationOutcome(**o) for o in raw["outcomes"]),
        )

    def short_summary(self) -> dict[str, Any]:
        """A small dict for an MLflow tag, well under its 5000-character limit."""
        return {
            "success": self.success,
            "evaluated": len(self.outcomes),
            "failed": len(self.failed),
            "failed_expectations": [
                clip(o.describe(), 300) for o in self.failed[:MAX_LISTED_FAILURES]
            ],
        }


def one_failure_each(outcomes: list[ExpectationOutcome]) -> list[ExpectationOutcome]:
    """Keep the first failure of each expectation on a column: an infinity breaks both the
    finiteness bound and the contract range, and saying it twice reads like two problems."""
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for outcome in outcomes:
        key = (outcome.expectation, outcome.column)
        if not outcome.success:
            if key in seen:
                continue
            seen.add(key)
        kept.append(outcome)
    return kept


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(text: str) -> str:
    return one_line(text).replace("|", "\\|")
