"""The card as Markdown, as one self-contained HTML page, and as a short summary for other reports.

Both documents are rendered from one list of sections, so they cannot disagree: Markdown leaves the
plots out (it names them), the HTML page embeds them as base64 PNG and needs nothing else to open.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops.cards.card import ModelCard
from mlops.evaluation import SliceReport
from mlops.metrics import higher_is_better
from mlops.text import printable

# Section titles, in card order: tests and the CI report look them up by these names.
SECTIONS = (
    "Purpose and intended use",
    "Training data",
    "Holdout metrics",
    "Slice metrics",
    "Calibration",
    "Residuals",
    "Explanations",
    "Behavioural tests",
    "Limitations",
    "Lineage",
    "Audit trail",
)


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    name: str
    caption: str


Block = str | Table | Image | list[str]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(entry: dict[str, float]) -> str:
    if "low" not in entry:
        return "-"
    return f"[{_num(entry['low'])}, {_num(entry['high'])}]"


def _about(card: ModelCard) -> Section:
    return Section(SECTIONS[0], [Table(("", "value"), [
        ("Purpose", card.about.get("purpose", "not stated")),
        ("Owner", card.about.get("owner", "not stated")),
        ("Intended use", card.about.get("intended_use", "not stated")),
        ("Task", card.task),
    ])])


def _data(card: ModelCard) -> Section:
    data = card.data
    rows = data["rows"]
    facts: list[tuple[str, Any]] = [
        ("Source", data["source"]),
        ("Fingerprint", data["fingerprint"]),
        ("Rows", f"{rows['total']} ({rows['train']} train, {rows['holdout']} holdout)"),
    ]
    window = data.get("time_range")
    if window:
        facts.append(("Time range", f"{window['start']} to {window['end']} ({window['column']}; "
                                    f"holdout from {window['holdout_start']})"))
    distribution = data["target_distribution"]
    if distribution["kind"] == "classes":
        shown = ", ".join(f"{k}: {v:.1%}" for k, v in distribution["shares"].items())
        facts.append((f"Class balance ({data['target']})", shown))
    else:
        shown = ", ".join(f"{k} {_num(v, 2)}" for k, v in distribution.items() if k != "kind")
        facts.append((f"Target distribution ({data['target']})", shown))
    contract = data["contract"]
    facts.append(("Contract: numeric features", ", ".join(contract["numeric_features"]) or "none"))
    facts.append(("Contract: categorical features", ", ".join(contract["categorical_features"]) or "none"))
    return Section(SECTIONS[1], [Table(("", "value"), facts)])


def _metrics(card: ModelCard, confidence: str) -> Section:
    rows = [
        (f"**{name}**" if name == card.primary_metric else name, _num(entry["value"]), _interval(entry))
        for name, entry in card.metrics.items()
    ]
    return Section(SECTIONS[2], [
        f"Bootstrap {confidence} confidence intervals on the holdout; the primary metric is in bold.",
        Table(("metric", "value", f"{confidence} interval"), rows),
    ])


def _slices(card: ModelCard) -> Section:
    report = card.slice_report
    if report is None:
        return Section(SECTIONS[3], ["No segments declared (`evaluation.segments`)."])
    metric = card.primary_metric
    blocks: list[Block] = [
        f"Slices of the holdout by {', '.join(report.segments)}; slices under {report.min_rows} rows are "
        f"reported, not judged. Metric: {metric}.",
    ]
    rows = []
    for s in report.slices:
        entry = {"value": s.metrics.get(metric)}
        if metric in s.intervals:
            entry.update(low=s.intervals[metric][0], high=s.intervals[metric][1])
        rows.append((s.segment, s.value, s.rows, "yes" if s.judged else "no (too few rows)",
                     _num(entry["value"]), _interval(entry)))
    blocks.append(Table(("segment", "slice", "rows", "judged", metric, "interval"), rows))
    worst = report.worst(metric)
    if worst is not None:
        blocks.append(f"Worst judged slice on {metric}: {worst.label} ({_num(worst.metrics[metric])}).")
    return Section(SECTIONS[3], blocks)


def _calibration(card: ModelCard) -> Section:
    if card.task != "classification":
        return Section(SECTIONS[4], ["Not applicable to a regressor (see Residuals)."])
    cal = card.calibration
    if cal is None:
        return Section(SECTIONS[4], ["Not available: the model gives no probabilities."])
    rows = [(f"{b['low']:.1f}-{b['high']:.1f}", b["count"], _num(b["predicted"]), _num(b["observed"]))
            for b in cal["bins"] if b["count"]]
    return Section(SECTIONS[4], [
        f"Brier score {_num(cal['brier'])}; expected calibration error {_num(cal['ece'])} ({cal['target']}).",
        Image("reliability.png", "Reliability curve"),
        Table(("bin", "rows", "mean predicted", "observed"), rows),
    ])


def _residuals(card: ModelCard) -> Section:
    if card.task != "regression" or card.residuals is None:
        return Section(SECTIONS[5], ["Not applicable to a classifier (see Calibration)."])
    r = card.residuals
    return Section(SECTIONS[5], [
        f"Residuals (truth minus prediction): mean {_num(r['mean'])}, std {_num(r['std'])}, "
        f"5% {_num(r['p05'])}, median {_num(r['median'])}, 95% {_num(r['p95'])}.",
        Image("residuals.png", "Residuals"),
        Image("predicted_vs_actual.png", "Predicted vs actual"),
    ])


def _explanations(card: ModelCard) -> Section:
    importance = card.explanations.get("importance", [])
    blocks: list[Block] = [
        "Permutation importance: mean drop of the score when one feature is shuffled (± its standard "
        "deviation over the repeats).",
        Table(("feature", "mean drop", "± std"), [(i["feature"], _num(i["mean"]), _num(i["std"])) for i in importance]),
        Image("feature_importance.png", "Permutation importance"),
    ]
    for curve in card.explanations.get("partial_dependence", []):
        blocks.append(Image(f"pdp_{curve['feature']}.png", f"Partial dependence: {curve['feature']}"))
    if not card.explanations.get("partial_dependence"):
        blocks.append("No partial dependence could be computed for the top features.")
    else:
        names = ", ".join(c["feature"] for c in card.explanations["partial_dependence"])
        blocks.append(f"Partial dependence of the top features: {names}.")
    return Section(SECTIONS[6], blocks)


def _behaviour(card: ModelCard) -> Section:
    report = card.behaviour
    if not report or not report.get("tests"):
        return Section(SECTIONS[7], ["None declared."])
    verdict = "all passed" if report.get("passed") else "FAILED"
    rows = [(t.get("name", "?"), t.get("kind", "?"), "pass" if t.get("passed") else "FAIL", t.get("detail", ""),
             len(t.get("failing_cases") or [])) for t in report["tests"]]
    blocks: list[Block] = [f"Behavioural tests on the holdout: {verdict}.",
                           Table(("test", "kind", "result", "detail", "failing cases"), rows)]
    for test in report["tests"]:
        cases = test.get("failing_cases") or []
        if cases:
            blocks.append(f"First failing cases of {test.get('name', '?')}:")
            blocks.append([", ".join(f"{k}={v}" for k, v in case.items()) for case in cases[:5]])
    return Section(SECTIONS[7], blocks)


def _limitations(card: ModelCard) -> Section:
    return Section(SECTIONS[8], [list(card.limitations) if card.limitations else "None stated."])


def _lineage(card: ModelCard) -> Section:
    rows = [("run_id", card.run_id), *card.lineage.items()]
    return Section(SECTIONS[9], [Table(("tag", "value"), rows)])


def _audit(card: ModelCard) -> Section:
    if not card.audit:
        return Section(SECTIONS[10], ["No audit records for this version yet (it has not been deployed or refused)."])
    rows = [(r["recorded_at"].replace("T", " ")[:19], r["action"], f"v{r['from_version']}" if r["from_version"] else "-",
             f"v{r['to_version']}" if r["to_version"] else "-", r["actor"], r["reason"]) for r in card.audit]
    return Section(SECTIONS[10], [Table(("time (UTC)", "action", "from", "to", "actor", "reason"), rows)])


def card_sections(card: ModelCard) -> list[Section]:
    """The card's sections in order: both renderers walk this list."""
    return [
        _about(card), _data(card), _metrics(card, f"{card.confidence:.0%}"), _slices(card), _calibration(card),
        _residuals(card), _explanations(card), _behaviour(card), _limitations(card), _lineage(card), _audit(card),
    ]


def _title(card: ModelCard) -> str:
    return f"Model card: {card.model_name} v{card.version}"


def _md_cell(value: Any) -> str:
    # A reason or actor as typed: escaped, one table row each (CR and escape codes included).
    return printable(value).replace("|", "\\|")


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown (plots are named, not embedded: the HTML card has them)."""
    lines = [f"# {_title(card)}", "", f"Built {card.created_at} from MLflow run `{card.run_id}`.", ""]
    for section in card_sections(card):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif isinstance(block, Image):
                lines.append(f"*Plot: {block.caption} (`{block.name}`, in the HTML card).*")
            elif isinstance(block, list):
                lines += [f"- {item}" for item in block]
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5rem; }
img { max-width: 100%; }
"""


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold** spans, the only Markdown the sections use."""
    out, parts = [], str(text).split("`")
    for i, part in enumerate(parts):
        escaped = html.escape(part)
        if i % 2:
            out.append(f"<code>{escaped}</code>")
        else:
            bold = escaped.split("**")
            out.append("".join(f"<strong>{b}</strong>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page: styles inline, plots embedded as base64 PNG."""
    body = [f"<h1>{html.escape(_title(card))}</h1>",
            f"<p>Built {html.escape(card.created_at)} from MLflow run <code>{html.escape(card.run_id)}</code>.</p>"]
    for index, section in enumerate(card_sections(card)):
        anchor = f"section-{index}"
        body.append(f'<section id="{anchor}"><h2>{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Image):
                data = card.plots.get(block.name)
                if data:
                    body.append(f'<figure><img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
                                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
            elif isinstance(block, list):
                body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block) + "</ul>")
            else:
                body.append(f"<p>{_inline(block)}</p>")
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(_title(card))}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


def card_summary(card: ModelCard) -> str:
    """A few Markdown lines for another report (the CI report): primary metric, worst slice, calibration, tests."""
    metric = card.primary_metric
    entry = card.metrics.get(metric)
    lines = [f"**{card.model_name} v{card.version}** ({card.task})"]
    if entry is not None:
        lines.append(f"- {metric}: {_num(entry['value'])} {_interval(entry)}")
    report: SliceReport | None = card.slice_report
    worst = report.worst(metric) if report is not None else None
    if worst is not None:
        direction = "higher" if higher_is_better(metric) else "lower"
        lines.append(f"- worst slice: {worst.label} {metric} {_num(worst.metrics[metric])} ({worst.rows} rows; {direction} is better)")
    elif report is None:
        lines.append("- slices: none declared")
    if card.calibration is not None:
        lines.append(f"- calibration: Brier {_num(card.calibration['brier'])}, ECE {_num(card.calibration['ece'])}")
    behaviour = card.behaviour
    if behaviour and behaviour.get("tests"):
        failed = [t.get("name", "?") for t in behaviour["tests"] if not t.get("passed")]
        total = len(behaviour["tests"])
        lines.append(f"- behavioural tests: {total - len(failed)}/{total} passed" + (f" (failed: {', '.join(failed)})" if failed else ""))
    else:
        lines.append("- behavioural tests: none declared")
    return "\n".join(lines) + "\n"
