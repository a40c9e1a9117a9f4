"""A registered version's card as it stands now: the stored card with current tags, tests and audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.cards import CARD_JSON
from mlops.cards.card import ModelCard
from mlops.errors import ModelNotFound
from mlops.evaluation.behaviour import REPORT_ARTIFACT
from mlops.registry import ALIAS_CHAMPION

if TYPE_CHECKING:
    from mlops.registry import Registry


def current_card(registry: Registry, name: str, version: str | None = None) -> ModelCard:
    """The card of `version` (default: the champion, else the newest version), refreshed from the registry.

    Raises ModelNotFound for a model with no versions, a version that does not exist, or a version
    trained before cards were built (it has no stored card).
    """
    versions = {ref.version: ref for ref in registry.list_versions(name)}
    if not versions:
        raise ModelNotFound(f"model {name} has no registered versions")
    if version is None:
        champion = registry.version_by_alias(name, ALIAS_CHAMPION)
        version = champion.version if champion is not None else max(versions, key=int)
    ref = versions.get(str(version))
    if ref is None:
        raise ModelNotFound(f"model {name} has no version {version} (versions: {', '.join(sorted(versions, key=int))})")
    stored = registry.read_run_json(ref.run_id, CARD_JSON) if ref.run_id else None
    if stored is None:
        raise ModelNotFound(f"model {name} v{ref.version} has no model card (trained before cards were built)")
    behaviour = registry.read_run_json(ref.run_id, REPORT_ARTIFACT) if ref.run_id else None
    return ModelCard.from_dict(stored).with_registry_state(ref.tags, behaviour, registry.read_audit(name))
