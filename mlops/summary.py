"""The outcome of a training run, as printed by the CLI and published as a Prefect artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateSummary:
    """One quality-gate check, flattened for JSON and markdown."""

    metric: str
    bound: str
    threshold: float
    value: float | None
    passed: bool


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
        return "\n".join(lines) + "\n"

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
        if self.validation:
            lines.append(f"  data:    {self.data_uri} ({self.validation.get('evaluated', '?')} expectations passed)")
        if self.run_url:
            lines.append(f"  run:     {self.run_url}")
        if self.model_url:
            lines.append(f"  model:   {self.model_url}")
        return "\n".join(lines)
