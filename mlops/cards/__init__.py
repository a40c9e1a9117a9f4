"""Model cards: every registered version's purpose, data, metrics, slices, calibration, explanations,
behavioural tests, limitations, lineage and audit trail, as Markdown and self-contained HTML."""

from mlops.cards.calibration import calibration_summary
from mlops.cards.card import CARD_SCHEMA, PENDING_VERSION, ModelCard, build_card, lineage_of
from mlops.cards.render import SECTIONS, card_summary, render_html, render_markdown

# Where the card lives among the version's run artifacts.
CARD_DIR = "card"
CARD_JSON = f"{CARD_DIR}/model_card.json"
CARD_MARKDOWN = f"{CARD_DIR}/model_card.md"
CARD_HTML = f"{CARD_DIR}/model_card.html"


def card_link(model_name: str, version: str, run_id: str | None) -> dict[str, str | None]:
    """Where a reviewer finds a version's card: what deploy and rollout evidence point to."""
    return {"run_id": run_id, "markdown": CARD_MARKDOWN, "html": CARD_HTML,
            "command": f"mlops card --model {model_name} --version {version} --out card.html"}

__all__ = [
    "card_link",
    "CARD_DIR",
    "CARD_HTML",
    "CARD_JSON",
    "CARD_MARKDOWN",
    "CARD_SCHEMA",
    "PENDING_VERSION",
    "SECTIONS",
    "ModelCard",
    "build_card",
    "calibration_summary",
    "card_summary",
    "lineage_of",
    "render_html",
    "render_markdown",
]
