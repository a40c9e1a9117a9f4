"""Evidently 0.7's drift methods (stat tests): each one's default threshold, the column kinds it
takes, its direction, and which one applies to a column when the config names none.

Our config names are Evidently's stattest names, so a config means the same to both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlops.config import MonitoringConfig
from mlops.drift import statistics as st
from mlops.drift.window import CATEGORICAL, NUMERIC


@dataclass(frozen=True)
class StatTest:
    """One of Evidently's stat tests: its default threshold, the kinds it takes, its direction."""

    name: str
    default_threshold: float
    kinds: frozenset[str]
    # p-value tests drift when the value is small; distances when it is large.
    p_value: bool
    # Evidently compares ks with <=, the other p-value tests with <, every distance with >=.
    inclusive: bool
    compute: Callable[..., float]

    def drifted(self, value: float, threshold: float) -> bool:
        if self.p_value:
            return value <= threshold if self.inclusive else value < threshold
        return value >= threshold


_BOTH = frozenset({NUMERIC, CATEGORICAL})
STAT_TESTS: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("wasserstein", 0.1, frozenset({NUMERIC}), False, True, st.wasserstein_norm),
        StatTest("ks", 0.05, frozenset({NUMERIC}), True, True, st.ks_pvalue),
        StatTest("anderson", 0.1, frozenset({NUMERIC}), True, False, st.anderson_pvalue),
        StatTest("jensenshannon", 0.1, _BOTH, False, True, st.jensenshannon),
        StatTest("psi", 0.1, _BOTH, False, True, st.psi),
        StatTest("kl_div", 0.1, _BOTH, False, True, st.kl_div),
        StatTest("hellinger", 0.1, _BOTH, False, True, st.hellinger),
        StatTest("chisquare", 0.05, frozenset({CATEGORICAL}), True, False, st.chisquare_pvalue),
        StatTest("z", 0.05, frozenset({CATEGORICAL}), True, False, st.z_pvalue),
    )
}


def configured_method(column: str, kind: str, config: MonitoringConfig) -> str | None:
    """Evidently's precedence: per-column method, then the method for the column's kind, else None."""
    if column in config.per_column_method:
        return config.per_column_method[column]
    return config.num_method if kind == NUMERIC else config.cat_method


def default_method(kind: str, reference: st.Column, current: st.Column, reference_rows: int) -> str:
    """Evidently's default test: by reference size, column kind and distinct values in both samples.

    `reference_rows` counts the reference after dropping NaN, as Evidently's rule does.
    """
    distinct = st.few_distinct(reference, current, limit=5)
    if reference_rows <= 1000:
        if kind == NUMERIC and distinct > 5:
            return "ks"
        # Evidently applies its categorical tests to numeric columns with at most five values.
        return "chisquare" if distinct > 2 else "z"
    if kind == NUMERIC and distinct > 5:
        return "wasserstein"
    return "jensenshannon"
