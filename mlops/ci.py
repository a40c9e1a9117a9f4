"""Model CI: which catalogue models a change touches, and the one report a pull request gets.

`mlops ci` (mlops/cli.py) trains each selected model in a throwaway home (its own MLflow store and
Prefect database), so CI never writes to a real registry; this module holds the pure parts: the
selection from a git diff, the champion comparison, and the report (Markdown and JSON).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.catalogue import CONFIG_SUFFIXES, Catalogue
from mlops.errors import ConfigError
from mlops.text import printable

STATUS_PASSED = "passed"
STATUS_NOTHING = "nothing-to-check"  # no model's config or features changed (exit 0), never "passed"
STATUS_REFUSED = "refused"  # data validation, a gate or a behavioural test said no (exit 3 or 4)
STATUS_INVALID = "invalid"  # the config file is refused (exit 2)
STATUS_FAILED = "failed"  # anything else that ended the run (exit 1 or 2)

NO_CHAMPION = "no champion to compare"


def changed_files(ref: str, paths: Sequence[str | Path], cwd: str | Path = ".") -> list[Path]:
    """Files under `paths` that differ from git `ref` (committed, staged or not) or are new and untracked.

    Paths come back absolute. An unknown ref or a directory outside a git work tree is a ConfigError.
    """
    where = Path(cwd).resolve()
    spec = [str(p) for p in paths]
    commit = resolve_commit(ref, where)
    diff = _git(["diff", "--name-only", "--relative", "--end-of-options", commit, "--", *spec], where, "git diff failed")
    untracked = _git(["ls-files", "--others", "--exclude-standard", "--", *spec], where, "git ls-files failed")
    names = dict.fromkeys(line for line in (diff + untracked).splitlines() if line.strip())
    return [(where / name).resolve() for name in names]


def resolve_commit(ref: str, cwd: Path) -> str:
    """The commit `ref` names, as a full sha: the only form of a user's ref handed on to git.

    `--end-of-options` makes git read the value as a revision even when it looks like an option
    (`--output=FILE` emptied FILE through `git diff`); anything that is not a commit is refused.
    """
    refused = f"--changed-since: unknown git ref '{printable(ref)}'"
    sha = _git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], cwd, refused).strip()
    if len(sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in sha):
        raise ConfigError(f"{refused} (git answered '{printable(sha[:80])}')")
    return sha


def _git(args: list[str], cwd: Path, refused: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigError("--changed-since needs git, which is not on PATH") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[0]
        raise ConfigError(f"{refused} ({printable(reason)})")
    return done.stdout


@dataclass(frozen=True)
class Selection:
    """The models to check, the changed config files the catalogue refused (with the reason), and
    the changed files no checked model accounts for."""

    models: list[str]
    refused: list[tuple[Path, str]]
    unchanged: list[str]
    # Changed files that should trigger a check but select no model: a removed or hidden config
    # file, a feature definition no store-fed model reads. A run that checks nothing because of
    # them must not say it passed.
    unchecked: list[Path] = field(default_factory=list)


def select_models(catalogue: Catalogue, changed: Iterable[Path] | None, feature_repo: str | Path) -> Selection:
    """Every model (`changed` None), or those whose config file changed, and store-fed ones when
    anything under `feature_repo` changed (their features are defined there)."""
    refused_all = [(p.path.resolve(), p.message) for p in catalogue.problems if p.refused]
    if changed is None:
        return Selection(list(catalogue.entries), refused_all, [])
    changed = {Path(p).resolve() for p in changed}
    repo = Path(feature_repo).resolve()
    feature_files = {p for p in changed if p == repo or repo in p.parents}
    picked = [
        name for name, entry in catalogue.entries.items()
        if entry.path.resolve() in changed or (feature_files and entry.config.dataset.feature_service)
    ]
    refused = [(path, message) for path, message in refused_all if path in changed]
    accounted = {catalogue.entries[name].path.resolve() for name in picked} | {path for path, _ in refused}
    if picked and any(catalogue.entries[name].config.dataset.feature_service for name in picked):
        accounted |= feature_files
    directory = catalogue.directory.resolve()
    configs = {p for p in changed if p.parent == directory and p.suffix in CONFIG_SUFFIXES}
    unchecked = sorted((configs | feature_files) - accounted)
    return Selection(picked, refused, [n for n in catalogue.entries if n not in picked], unchecked)


@dataclass(frozen=True)
class Comparison:
    """The challenger's primary metric beside the champion's: both scored on this run's holdout,
    or, when the champion could not be scored here, the metric recorded when it was trained."""

    metric: str
    higher_is_better: bool
    challenger: float | None
    champion: float | None
    champion_version: str | None
    note: str

    @property
    def verdict(self) -> str:
        if self.challenger is None or self.champion is None:
            return self.note
        delta = self.challenger - self.champion
        better = delta > 0 if self.higher_is_better else delta < 0
        word = "better" if better else "worse" if delta else "equal"
        return f"{self.metric} {self.challenger:.4f} vs champion v{self.champion_version} {self.champion:.4f}: {word} by {abs(delta):.4f}"


@dataclass(frozen=True)
class Champion:
    """What a reachable registry says of a model's champion: its version and training metrics.

    `model` is whatever the caller needs to score the champion on this run's holdout (loaded from
    the team's registry before the run is isolated); `unloadable` says why it could not be loaded.
    """

    version: str
    metrics: dict[str, float]
    model: Any = None
    unloadable: str | None = None


@dataclass(frozen=True)
class SharedHoldout:
    """Both versions' metrics on the same rows: the promotion holdout of this run's data."""

    rows: int
    challenger: Mapping[str, float]
    champion: Mapping[str, float]


def compare(metric: str, higher_is_better: bool, challenger_metrics: Mapping[str, float], champion: Champion | None,
            unreachable: str | None = None, shared: SharedHoldout | None = None) -> Comparison:
    """The comparison, or why there is none (no registry reachable, no champion, metric not recorded).

    With `shared`, both values come from the same holdout, as deploy compares them; without it the
    champion's value is the one recorded at its training, on another holdout, and the note says so.
    """
    value = challenger_metrics.get(metric)
    if champion is None:
        return Comparison(metric, higher_is_better, value, None, None, unreachable or NO_CHAMPION)
    if shared is not None and _finite(shared.challenger.get(metric)) and _finite(shared.champion.get(metric)):
        note = f"both scored on this run's holdout ({shared.rows} rows)"
        return Comparison(metric, higher_is_better, float(shared.challenger[metric]), float(shared.champion[metric]),
                          champion.version, note)
    recorded = champion.metrics.get(metric)
    if not _finite(recorded):
        return Comparison(metric, higher_is_better, value, None, champion.version,
                          f"champion v{champion.version} has no recorded {metric}")
    note = "the champion's metric is from its own training holdout, not this one"
    if champion.unloadable:
        note += f" (it could not be scored here: {champion.unloadable})"
    return Comparison(metric, higher_is_better, value, float(recorded), champion.version, note)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass
class ModelCheck:
    """One model's CI outcome: what `mlops ci --json` prints per model."""

    name: str
    config_file: str
    status: str
    exit_code: int
    error: str | None = None
    rows: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    behaviour: dict[str, Any] | None = None
    comparison: Comparison | None = None
    # The trained version's model card in brief (mlops.cards.card_summary); None when nothing was registered.
    card_summary: str | None = None

    def summary(self) -> list[str]:
        """The short bullet list a reviewer reads first: outcome, gates, behaviour, champion."""
        lines = [f"**{self.status}**" + (f" (exit {self.exit_code}): {self.error}" if self.error else "")]
        if self.gates:
            passed = sum(g["passed"] for g in self.gates)
            lines.append(f"quality gates: {passed} of {len(self.gates)} passed")
        if self.behaviour is not None:
            tests = self.behaviour.get("tests", [])
            passed = sum(t["passed"] for t in tests)
            lines.append(f"behavioural tests: {passed} of {len(tests)} passed")
        if self.comparison is not None:
            lines.append(f"champion: {self.comparison.verdict}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparison"] = None if self.comparison is None else {**asdict(self.comparison), "verdict": self.comparison.verdict}
        out["summary"] = self.summary()
        return out


@dataclass
class CiReport:
    """Every checked model, the unchanged ones skipped, the changed files no model accounts for,
    and the exit code of the whole check."""

    changed_since: str | None
    models: list[ModelCheck]
    unchanged: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The first failed model's exit code (catalogue order); 2 when files changed but no model
        was checked (nothing vouches for them); else 0."""
        if not self.models and self.unchecked:
            return ConfigError.exit_code
        return next((m.exit_code for m in self.models if m.exit_code), 0)

    @property
    def status(self) -> str:
        """`passed` only when a model was checked: a run that checked nothing says so."""
        if self.exit_code:
            return "failed"
        return STATUS_PASSED if self.models else STATUS_NOTHING

    @property
    def error(self) -> str | None:
        """The one line for a run that checked no model although files changed, else None."""
        if self.models or not self.unchecked:
            return None
        return (f"changed since {printable(self.changed_since)} but no model checked: "
                f"{', '.join(printable(p) for p in self.unchecked)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "error": self.error,
            "changed_since": self.changed_since,
            "models": [m.to_dict() for m in self.models],
            "unchanged": self.unchanged,
            "unchecked": self.unchecked,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)

    def to_markdown(self) -> str:
        """One Markdown document, fit for a pull-request comment or a job summary."""
        scope = f"changed since `{printable(self.changed_since)}`" if self.changed_since else "in the catalogue"
        verdict = {"failed": f"failed (exit {self.exit_code})", STATUS_NOTHING: "nothing to check"}.get(self.status, self.status)
        lines = [f"# Model CI: {verdict}", "", f"Models checked ({scope}): {len(self.models)}."]
        if self.unchanged:
            lines.append(f"Unchanged, not checked: {', '.join(self.unchanged)}.")
        if self.unchecked:
            lines.append(f"Changed, but no model checked for them: {', '.join(f'`{printable(p)}`' for p in self.unchecked)}.")
        if self.error:
            lines += ["", f"**{self.error}**"]
        elif not self.models:
            lines += ["", "No model's config or features changed."]
        for check in self.models:
            lines += ["", f"## {check.name} (`{check.config_file}`)", "", "### Summary", ""]
            lines += [f"- {line}" for line in check.summary()]
            lines += ["", "### Model card", ""]
            lines.append(check.card_summary or "_No model card: nothing was registered._")
            if check.metrics:
                lines += ["", "### Holdout metrics", "", "| metric | value |", "|---|---|"]
                lines += [f"| {k} | {v:.4f} |" for k, v in sorted(check.metrics.items())]
                if check.rows:
                    lines += ["", f"Trained on {check.rows} rows."]
            if check.gates:
                lines += ["", "### Quality gates", "", "| metric | bound | threshold | value | result |", "|---|---|---|---|---|"]
                for g in check.gates:
                    value = "n/a" if g["value"] is None else f"{g['value']:.4f}"
                    lines.append(f"| {g['metric']} | {g['bound']} | {g['threshold']:g} | {value} | {'pass' if g['passed'] else 'FAIL'} |")
            if check.behaviour is not None and check.behaviour.get("tests"):
                lines += ["", "### Behavioural tests", "", "| test | kind | result | detail |", "|---|---|---|---|"]
                for t in check.behaviour["tests"]:
                    lines.append(f"| {t['name']} | {t['kind']} | {'pass' if t['passed'] else 'FAIL'} | {t['detail']} |")
                for t in check.behaviour["tests"]:
                    if t["failing_cases"]:
                        lines += ["", f"<details><summary>Failing cases of {t['name']}</summary>", "", "```json"]
                        lines += [json.dumps(case, default=str) for case in t["failing_cases"]]
                        lines += ["```", "", "</details>"]
            if check.comparison is not None:
                lines += ["", "### Champion", "", check.comparison.verdict]
                if check.comparison.champion is not None:
                    lines.append(f"({check.comparison.note}.)")
        return "\n".join(lines) + "\n"
