"""The outcome of each flow run (train, deploy, rollback, retrain), as printed by the CLI and published
as a Prefect artifact."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.text import printable

if TYPE_CHECKING:
    from mlops.registry import ModelRef


# A deploy's (and so a retrain's) status; a retrain inside its cooldown is `skipped`.
STATUS_PROMOTED = "promoted"
STATUS_REFUSED = "refused"
STATUS_ROLLED_BACK = "rolled-back"
STATUS_UNCHANGED = "unchanged"
STATUS_SKIPPED = "skipped"


def artifact_key(kind: str, model_name: str) -> str:
    """The Prefect artifact key of a run summary, e.g. `deploy-churn-classifier`.

    Prefect accepts only lower-case letters, digits and dashes in a key; any other run of characters
    of the model name becomes one dash.
    """
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{model_name}".lower())


@dataclass(frozen=True)
class GateSummary:
    """One quality-gate check, flattened for JSON and markdown."""

    metric: str
    bound: str
    threshold: float
    value: float | None
    passed: bool


@dataclass(frozen=True)
class BehaviourSummary:
    """One behavioural test's verdict, flattened for JSON and markdown (failing rows: the run's artifact)."""

    name: str
    kind: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class TrainResult:
    """What `mlops train --json` prints and the `train` flow returns."""

    status: str
    model_name: str
    model_version: str | None
    run_id: str | None
    metrics: dict[str, float]
    data_fingerprint: str | None
    data_uri: str
    contract_source: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    gates: list[GateSummary] = field(default_factory=list)
    behaviour: list[BehaviourSummary] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    run_url: str | None = None
    model_url: str | None = None
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """Run summary for the Prefect UI: metrics, gates and where the model lives."""
        lines = [f"# Training run: {self.model_name}", ""]
        version = f"v{self.model_version}" if self.model_version else "not registered"
        lines += [
            f"- **Status**: {self.status}",
            f"- **Model version**: {version} (aliases: {', '.join(self.aliases) or 'none'})",
            f"- **Data**: `{self.data_uri}` (fingerprint `{(self.data_fingerprint or '')[:16]}`)",
            f"- **Contract**: {self.contract_source or 'n/a'}",
        ]
        if self.run_url:
            lines.append(f"- **MLflow run**: [{self.run_id}]({self.run_url})")
        elif self.run_id:
            lines.append(f"- **MLflow run**: `{self.run_id}`")
        if self.model_url:
            lines.append(f"- **Model version page**: [{self.model_name} {version}]({self.model_url})")
        if self.metrics:
            lines += ["", "## Holdout metrics", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in sorted(self.metrics.items())]
        if self.gates:
            lines += ["", "## Quality gates", "", "| metric | bound | threshold | value | result |", "|---|---|---|---|---|"]
            for g in self.gates:
                value = "n/a" if g.value is None else f"{g.value:.4f}"
                lines.append(f"| {g.metric} | {g.bound} | {g.threshold} | {value} | {'pass' if g.passed else 'FAIL'} |")
        if self.behaviour:
            lines += ["", "## Behavioural tests", "", "| test | kind | result | detail |", "|---|---|---|---|"]
            lines += [f"| {t.name} | {t.kind} | {'pass' if t.passed else 'FAIL'} | {t.detail} |" for t in self.behaviour]
        return _lines(lines) + "\n"

    def to_text(self) -> str:
        """The short human summary the CLI prints at the end of a run."""
        version = f"version {self.model_version}" if self.model_version else "not registered"
        lines = [f"{self.status}: model {self.model_name} {version}"]
        if self.aliases:
            lines[0] += f" (alias: {', '.join(self.aliases)})"
        if self.metrics:
            lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.metrics.items())))
        if self.gates:
            lines.append(
                "  gates:   " + ", ".join(
                    f"{g.metric} {'>=' if g.bound == 'min' else '<='} {g.threshold} {'pass' if g.passed else 'FAIL'}" for g in self.gates
                )
            )
        if self.behaviour:
            lines.append("  behaviour: " + ", ".join(f"{t.name} {'pass' if t.passed else 'FAIL'}" for t in self.behaviour))
        if self.validation:
            lines.append(f"  data:    {self.data_uri} ({self.validation.get('evaluated', '?')} expectations passed)")
        if self.run_url:
            lines.append(f"  run:     {self.run_url}")
        if self.model_url:
            lines.append(f"  model:   {self.model_url}")
        return _lines(lines)


@dataclass(frozen=True)
class DeployResult:
    """What `mlops deploy --json` prints and the `deploy` flow returns.

    status: `promoted`, `refused` (comparison, gate or smoke test said no), `rolled-back` (promoted, then
    the post-deployment watch saw a breach) or `unchanged` (the candidate already is the champion).
    """

    status: str
    model_name: str
    candidate_version: str | None
    champion_version: str | None  # after the run
    previous_champion_version: str | None  # before the run
    reason: str
    decision: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # challenger / champion
    holdout: dict[str, Any] = field(default_factory=dict)
    paired_evidence: dict[str, Any] | None = None
    smoke: dict[str, Any] | None = None
    watch: dict[str, Any] | None = None
    audit_records: list[str] = field(default_factory=list)
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """Deploy summary for the Prefect UI: verdict, both models' metrics, each check."""
        lines = [f"# Deploy: {self.model_name}", ""]
        lines += [
            f"- **Status**: {self.status}",
            f"- **Candidate**: v{self.candidate_version}",
            f"- **Champion**: {_v(self.previous_champion_version)} -> {_v(self.champion_version)}",
            f"- **Reason**: {self.reason}",
        ]
        if self.holdout:
            lines.append(
                f"- **Holdout**: `{self.holdout.get('uri')}`, {self.holdout.get('rows')} rows "
                f"(fingerprint `{str(self.holdout.get('fingerprint', ''))[:16]}`)"
            )
        names = sorted(set().union(*(m.keys() for m in self.metrics.values()))) if self.metrics else []
        if names:
            roles = list(self.metrics)
            lines += ["", "## Metrics on the shared holdout", "", "| metric | " + " | ".join(roles) + " |"]
            lines.append("|---" * (len(roles) + 1) + "|")
            for name in names:
                cells = [_num(self.metrics[role].get(name)) for role in roles]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        checks = list(self.decision.get("checks", []))
        if self.smoke:
            checks += [{**c, "name": f"smoke:{c['name']}"} for c in self.smoke.get("checks", [])]
        if checks:
            lines += ["", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
            lines += [f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |" for c in checks]
        if self.watch:
            lines += ["", f"**Post-deployment watch**: {self.watch.get('verdict')}: {self.watch.get('reason')}"]
        return _lines(lines) + "\n"

    def to_text(self) -> str:
        """The short human summary the CLI prints."""
        head = {
            "promoted": f"promoted: model {self.model_name} version {self.candidate_version} is champion",
            "refused": f"refused: model {self.model_name} version {self.candidate_version} not promoted",
            "rolled-back": f"rolled back: model {self.model_name} version {self.candidate_version} was promoted, then rolled back",
            "unchanged": f"unchanged: model {self.model_name} version {self.candidate_version} already is champion",
        }.get(self.status, f"{self.status}: model {self.model_name}")
        rows = [("reason", self.reason), ("champion", f"{_v(self.previous_champion_version)} -> {_v(self.champion_version)}")]
        rows += [(role, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))) for role, values in self.metrics.items()]
        if self.holdout:
            rows.append(("holdout", f"{self.holdout.get('uri')} ({self.holdout.get('rows')} rows)"))
        if self.watch:
            rows.append(("watch", f"{self.watch.get('verdict')}: {self.watch.get('reason')}"))
        return _lines([head, *(f"  {label + ':':12s}{text}" for label, text in rows)])

    def error_line(self) -> str:
        """The one `error:` line of a refused or rolled-back deploy (without the prefix), escaped."""
        what = "promotion refused" if self.status == "refused" else "promotion rolled back"
        return printable(f"{what}: {self.model_name} v{self.candidate_version}: {self.reason}")


@dataclass(frozen=True)
class RollbackResult:
    """What `mlops rollback --json` prints and the `rollback` flow returns."""

    status: str
    model_name: str
    from_version: str | None
    to_version: str
    reason: str
    audit_record: str | None = None
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        return _lines([f"rolled back: model {self.model_name} champion {_v(self.from_version)} -> {_v(self.to_version)}",
                       f"  {'reason:':12s}{self.reason}"])


@dataclass(frozen=True)
class RetrainResult:
    """What the `retrain` flow returns.

    status: the deploy outcome of the retrained version (`promoted`, `refused`, `rolled-back`), or
    `skipped` when a retrain finished within the cooldown, so nothing was trained.
    """

    status: str
    model_name: str
    reason: str
    model_version: str | None = None
    champion_version: str | None = None
    data_uri: str | None = None
    trigger: dict[str, Any] | None = None
    flow_run_id: str | None = None
    # The labelled traffic: rows used, rows left out for breaking the contract (count per reason),
    # prediction-log part files that could not be parsed.
    labelled_rows: int = 0
    dropped_rows: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    unreadable_parts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        event = (self.trigger or {}).get("event", "manual")
        lines = [
            f"# Retrain: {self.model_name}", "",
            f"- **Status**: {self.status}",
            f"- **Triggered by**: {event}",
            f"- **Reason**: {self.reason}",
        ]
        if self.model_version:
            lines += [f"- **Retrained version**: v{self.model_version} (data `{self.data_uri}`)",
                      f"- **Champion after the run**: {_v(self.champion_version)}",
                      f"- **Labelled rows trained on**: {self.labelled_rows}"]
        if self.dropped_rows:
            reasons = "; ".join(f"{why}: {n}" for why, n in self.drop_reasons.items())
            lines.append(f"- **Labelled rows left out** (breaking the contract): {self.dropped_rows} ({reasons})")
        if self.unreadable_parts:
            lines.append(f"- **Unreadable log parts skipped**: {', '.join(self.unreadable_parts)}")
        return _lines(lines) + "\n"


def _lines(lines: list[str]) -> str:
    """Lines joined for a terminal or the Prefect UI, each escaped: a reason or a name with a line
    break or an escape code in it (typed by a person) stays on its own line and stays inert."""
    return "\n".join(printable(line) for line in lines)


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def version_rows(versions: list[ModelRef], metric_names: list[str]) -> list[dict[str, Any]]:
    """One row per registered version: aliases, training metrics, last audit action."""
    import json

    rows = []
    for ref in versions:
        tags = dict(ref.tags)
        try:
            metrics = json.loads(tags.get("metrics", "{}"))
        except ValueError:
            metrics = {}
        rows.append(
            {
                "version": ref.version,
                "aliases": sorted(ref.aliases),
                "metrics": metrics if isinstance(metrics, dict) else {},
                "key_metrics": {name: metrics.get(name) for name in metric_names} if isinstance(metrics, dict) else {},
                "last_action": tags.get("audit.last_action"),
                "last_action_at": tags.get("audit.last_at"),
                "data_fingerprint": tags.get("data_fingerprint"),
                "run_id": ref.run_id,
            }
        )
    return rows


def render_versions(model_name: str, rows: list[dict[str, Any]], metric_names: list[str]) -> str:
    """The `mlops models` table: versions, newest last, with aliases and key training metrics."""
    if not rows:
        return f"model {model_name} has no registered versions"
    header = ["version", "aliases", *metric_names, "last action"]
    table = [header]
    for row in rows:
        cells = [f"v{row['version']}", ", ".join(row["aliases"]) or "-"]
        cells += [_num(row["key_metrics"].get(name)) for name in metric_names]
        cells.append(row["last_action"] or "-")
        table.append(cells)
    table = [[printable(cell) for cell in r] for r in table]  # aliases and tags anyone may have set
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"model {model_name}"]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)
