"""Version lookup and alias moves on the model registry.

Which aliases move where on a promotion or a rollback is decided by the pure plans in
`mlops.registry.aliases`; this module reads the current holders and applies a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops.errors import ModelNotFound
from mlops.promotion.split import ROLLOUT_TAG, TrafficSplit
from mlops.registry.aliases import (
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS_CHAMPION,
    AliasPlan,
    plan_promotion,
    plan_rollback,
)
from mlops.registry.client import MlflowHandle, ModelRef, tag_value


class VersionLookup(MlflowHandle):
    """Registered versions, their aliases and tags."""

    def _ref(self, version: Any) -> ModelRef:
        return ModelRef(
            name=version.name,
            version=str(version.version),
            run_id=version.run_id,
            source=version.source,
            aliases=tuple(getattr(version, "aliases", ()) or ()),
            tags=dict(version.tags or {}),
        )

    def get_version(self, name: str, version: str) -> ModelRef:
        return self._ref(self.client.get_model_version(name, version))

    def version_by_alias(self, name: str, alias: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def require_alias(self, name: str, alias: str) -> ModelRef:
        """The version holding `alias`, or ModelNotFound naming what is missing."""
        ref = self.version_by_alias(name, alias)
        if ref is None:
            raise ModelNotFound(f"model {name} has no version with alias '{alias}'")
        return ref

    def list_versions(self, name: str) -> list[ModelRef]:
        versions = self.client.search_model_versions(f"name = '{name}'")
        return sorted((self._ref(v) for v in versions), key=lambda r: int(r.version))

    def list_versions_with_aliases(self, name: str) -> list[ModelRef]:
        """Every version, oldest first, with its aliases (version search leaves them out on some stores)."""
        from dataclasses import replace

        from mlflow.exceptions import MlflowException

        try:
            by_alias = self.client.get_registered_model(name).aliases or {}
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        held: dict[str, list[str]] = {}
        for alias, version in by_alias.items():
            held.setdefault(str(version), []).append(alias)
        return [replace(ref, aliases=tuple(sorted(held.get(ref.version, ())))) for ref in self.list_versions(name)]

    def aliases_of(self, name: str, version: str) -> tuple[str, ...]:
        """The aliases `version` holds now, read from the registered model (the authority on aliases)."""
        by_alias = self.client.get_registered_model(name).aliases or {}
        return tuple(sorted(alias for alias, held in by_alias.items() if str(held) == str(version)))

    def reference_version(self, name: str) -> ModelRef | None:
        """The version whose contract new data must meet: the champion, else the latest."""
        champion = self.version_by_alias(name, ALIAS_CHAMPION)
        if champion is not None:
            return champion
        versions = self.list_versions(name)
        return versions[-1] if versions else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version`; MLflow reassigns an alias atomically."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias` if it exists (removing an absent alias is not an error)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise

    def rollout_split(self, name: str) -> TrafficSplit | None:
        """The traffic split of the rollout in progress (None: none). ValueError for a broken tag."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(name).tags or {}
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return TrafficSplit.from_tag(tags.get(ROLLOUT_TAG))

    def set_rollout_split(self, name: str, split: TrafficSplit | None) -> None:
        """Publish the split every serving replica routes by; None ends the rollout (champion only)."""
        from mlflow.exceptions import MlflowException

        if split is not None:
            self.client.set_registered_model_tag(name, ROLLOUT_TAG, split.to_tag())
            return
        try:
            self.client.delete_registered_model_tag(name, ROLLOUT_TAG)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, tag_value(value))

    def promote_champion(self, name: str, version: str, expected: str | None) -> str | None:
        """Make `version` the champion (see `plan_promotion`); returns the version it replaced.

        `expected` is the champion the caller compared against. MLflow has no compare-and-set on
        aliases: this re-read narrows the race to the milliseconds between it and the reassign, it
        does not close it.
        """
        current = self.version_by_alias(name, ALIAS_CHAMPION)
        plan = plan_promotion(name, str(version), current.version if current is not None else None, expected)
        self.apply_alias_plan(name, plan)
        return plan.demoted

    def rollback_champion(self, name: str) -> tuple[str | None, str]:
        """Move `champion` back to `previous-champion` (see `plan_rollback`).

        Returns (demoted version or None, restored version).
        """
        previous = self.version_by_alias(name, ALIAS_PREVIOUS_CHAMPION)
        current = self.version_by_alias(name, ALIAS_CHAMPION) if previous is not None else None
        plan = plan_rollback(
            name,
            current.version if current is not None else None,
            previous.version if previous is not None else None,
        )
        self.apply_alias_plan(name, plan)
        return plan.demoted, plan.champion

    def apply_alias_plan(self, name: str, plan: AliasPlan) -> None:
        """Apply the moves in their order: set each alias, or remove it."""
        for move in plan.moves:
            if move.version is None:
                self.delete_alias(name, move.alias)
            else:
                self.set_alias(name, move.alias, move.version)
