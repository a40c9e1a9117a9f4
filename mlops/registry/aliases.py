"""The alias rules of promotion and rollback, as pure plans a unit test checks without MLflow.

A plan is the ordered list of alias moves; the registry applies it move by move. The order is part of
the rule: `previous-champion` (or `rolled-back`) is written before `champion` moves, and `champion`
moves in one atomic reassign, so a reader (the serving app) always finds a champion.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.errors import ChampionMoved, ModelNotFound

ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"
ALIAS_STAGING = "staging"
ALIAS_PREVIOUS_CHAMPION = "previous-champion"
ALIAS_ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class AliasMove:
    """Point `alias` at `version`, or remove it when `version` is None."""

    alias: str
    version: str | None


@dataclass(frozen=True)
class AliasPlan:
    """The moves in order, the version that is champion afterwards, and the one that lost it (if any)."""

    moves: tuple[AliasMove, ...]
    champion: str
    demoted: str | None


def plan_promotion(name: str, version: str, champion: str | None, expected: str | None) -> AliasPlan:
    """Make `version` the champion; the old one (if another) becomes `previous-champion`.

    `champion` is the version holding the alias now; `expected` the one the caller compared against
    (None: there was none). If the champion is another one now, a concurrent deploy won and this
    verdict is stale, so nothing moves (ChampionMoved). Promoting the champion again moves nothing
    but re-asserts `champion`.
    """
    version = str(version)
    if champion != expected and champion != version:
        raise ChampionMoved(
            f"champion of {name} moved from {_v(expected)} to {_v(champion)} while this deploy ran; "
            f"v{version} was compared against {_v(expected)}, so it is not promoted (deploy it again)"
        )
    demoted = champion if champion is not None and champion != version else None
    moves = [AliasMove(ALIAS_PREVIOUS_CHAMPION, demoted)] if demoted is not None else []
    return AliasPlan((*moves, AliasMove(ALIAS_CHAMPION, version)), version, demoted)


def plan_rollback(name: str, champion: str | None, previous: str | None) -> AliasPlan:
    """Move `champion` back to `previous-champion`; the demoted version gets `rolled-back`.

    `previous-champion` is then removed, so a second rollback has nothing to flip back to (no
    ping-pong between two versions).
    """
    if previous is None:
        raise ModelNotFound(f"model {name} has no '{ALIAS_PREVIOUS_CHAMPION}' version to roll back to")
    demoted = champion if champion is not None and champion != previous else None
    moves = [AliasMove(ALIAS_ROLLED_BACK, demoted)] if demoted is not None else []
    moves += [AliasMove(ALIAS_CHAMPION, previous), AliasMove(ALIAS_PREVIOUS_CHAMPION, None)]
    return AliasPlan(tuple(moves), previous, demoted)


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "no champion"
