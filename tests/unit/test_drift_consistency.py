"""The full-data engine against Evidently itself: same method, same statistic, same decision.

Each case builds a reference and a current frame, runs Evidently's DataDriftPreset (through our
adapter) and our engine on the same rows, and compares column by column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations import stattests

from mlops.config import MonitoringConfig
from mlops.drift import (
    FrameWindow,
    ParquetWindow,
    ReferenceProfile,
    build_profile,
    check_drift,
    evidently_report,
    profile_frame,
)

NUMERIC = ["normal", "skewed", "integers", "few", "const"]
CATEGORICAL = ["colour", "binary", "const_cat"]
# Evidently names an auto-selected test by its display name and a configured one by its name.
EVIDENTLY_NAMES = {
    t.display_name: t.name
    for t in (
        stattests.wasserstein_stat_test, stattests.ks_stat_test, stattests.anderson_darling_test,
        stattests.jensenshannon_stat_test, stattests.psi_stat_test, stattests.kl_div_stat_test,
        stattests.hellinger_stat_test, stattests.chi_stat_test, stattests.z_stat_test,
    )
}


def frame(rows: int, seed: int, shift: float = 0.0, scale: float = 1.0, new_cat: bool = False,
          missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue", "grey"] + (["violet"] if new_cat else [])
    weights = np.ones(len(colours)) + (np.eye(len(colours))[-1] * 2 if new_cat else 0)
    out = pd.DataFrame({
        "normal": rng.normal(10 + shift, 2 * scale, rows),
        "skewed": rng.lognormal(0.2 * shift, 0.5 * scale, rows),
        "integers": rng.integers(0, 40 + int(10 * shift), rows),
        "few": rng.choice([1.0, 2.0, 3.0], rows, p=[0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]),
        "const": np.full(rows, 7.0),
        "colour": rng.choice(colours, rows, p=weights / weights.sum()),
        "binary": rng.choice(["yes", "no"], rows, p=[0.3, 0.7] if not shift else [0.6, 0.4]),
        "const_cat": np.full(rows, "only"),
    })
    if missing:
        for name in ("normal", "skewed", "colour"):
            holes = rng.random(rows) < missing
            out[name] = out[name].mask(holes)
        out.loc[out.index[:3], "normal"] = [np.inf, -np.inf, np.nan]
    return out


CASES = {
    "no-drift": (dict(rows=3000, seed=1), dict(rows=2500, seed=2)),
    "mean-shift": (dict(rows=3000, seed=1), dict(rows=2500, seed=3, shift=1.0)),
    "scale-shift": (dict(rows=3000, seed=1), dict(rows=2500, seed=4, scale=1.6)),
    "new-categories": (dict(rows=3000, seed=1), dict(rows=2500, seed=5, new_cat=True)),
    "missing-values": (dict(rows=3000, seed=1, missing=0.1), dict(rows=2500, seed=6, missing=0.3)),
    "tiny-window": (dict(rows=400, seed=1), dict(rows=60, seed=7, shift=0.3)),
    # Past 10,000 rows scipy's KS switches from the exact p-value to the asymptotic one.
    "tiny-reference": (dict(rows=900, seed=1), dict(rows=12_000, seed=8)),
    "large": (dict(rows=30_000, seed=1), dict(rows=20_000, seed=9, shift=0.05)),
}
METHODS = {
    "defaults": MonitoringConfig(),
    "psi": MonitoringConfig(num_method="psi", cat_method="psi"),
    "kl_div": MonitoringConfig(num_method="kl_div", cat_method="kl_div", threshold=0.05),
    "hellinger": MonitoringConfig(num_method="hellinger", cat_method="hellinger"),
    "jensenshannon": MonitoringConfig(num_method="jensenshannon", cat_method="jensenshannon"),
    "tests": MonitoringConfig(
        num_method="ks", cat_method="chisquare", per_column_method={"skewed": "anderson", "binary": "z"},
        per_column_threshold={"normal": 0.2},
    ),
    "wasserstein": MonitoringConfig(num_method="wasserstein", threshold=0.05),
}


def assert_same(ours, theirs) -> None:
    by_name = {c.column: c for c in theirs.columns}
    assert [c.column for c in ours.columns] == [c.column for c in theirs.columns]
    for mine in ours.columns:
        ref = by_name[mine.column]
        assert mine.method == EVIDENTLY_NAMES.get(ref.method, ref.method), mine.column
        assert mine.threshold == pytest.approx(ref.threshold), mine.column
        # nan_ok: a chi-square over a single category is NaN in scipy, for Evidently as for us.
        assert mine.statistic == pytest.approx(ref.statistic, rel=1e-6, abs=1e-12, nan_ok=True), mine.column
        assert mine.drifted == ref.drifted, mine.column
    assert ours.drift_share == pytest.approx(theirs.drift_share)
    assert ours.dataset_drift == theirs.dataset_drift


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_methods_match_evidently(case):
    ref_spec, cur_spec = CASES[case]
    reference, current = frame(**ref_spec), frame(**cur_spec)
    config = METHODS["defaults"]
    theirs = evidently_report(reference, current, NUMERIC, CATEGORICAL, config)
    ours = check_drift(profile_frame(reference, NUMERIC, CATEGORICAL), FrameWindow(current), NUMERIC, CATEGORICAL, config)
    assert_same(ours, theirs)


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"defaults"}))
@pytest.mark.parametrize("case", ["no-drift", "mean-shift", "missing-values", "tiny-window", "new-categories"])
def test_configured_methods_match_evidently(case, method):
    ref_spec, cur_spec = CASES[case]
    reference, current = frame(**ref_spec), frame(**cur_spec)
    config = METHODS[method]
    theirs = evidently_report(reference, current, NUMERIC, CATEGORICAL, config)
    ours = check_drift(profile_frame(reference, NUMERIC, CATEGORICAL), FrameWindow(current), NUMERIC, CATEGORICAL, config)
    assert_same(ours, theirs)


def test_mean_shift_is_detected_and_no_drift_is_not():
    reference = profile_frame(frame(3000, 1), NUMERIC, CATEGORICAL)
    calm = check_drift(reference, FrameWindow(frame(2500, 2)), NUMERIC, CATEGORICAL, MonitoringConfig())
    shifted = check_drift(reference, FrameWindow(frame(2500, 3, shift=1.0)), NUMERIC, CATEGORICAL, MonitoringConfig())
    assert calm.drifted_columns == () and not calm.dataset_drift
    assert {"normal", "skewed", "few", "binary"} <= {c.column for c in shifted.drifted_columns}
    assert shifted.dataset_drift


def test_stored_profile_and_streamed_parquet_give_the_same_report(tmp_path):
    reference, current = frame(5000, 1, missing=0.05), frame(4000, 3, shift=0.5, missing=0.2)
    path = tmp_path / "profile.npz"
    path.write_bytes(profile_frame(reference, NUMERIC, CATEGORICAL).to_bytes())
    current.to_parquet(tmp_path / "current.parquet", row_group_size=700)
    in_memory = check_drift(profile_frame(reference, NUMERIC, CATEGORICAL), FrameWindow(current),
                            NUMERIC, CATEGORICAL, MonitoringConfig())
    streamed = check_drift(ReferenceProfile.load(path), ParquetWindow(tmp_path / "current.parquet", batch_rows=512),
                           NUMERIC, CATEGORICAL, MonitoringConfig())
    assert streamed.columns == in_memory.columns
    assert streamed.rows_current == 4000 and streamed.rows_reference == 5000


def test_profile_from_parquet_equals_profile_from_frame(tmp_path):
    reference = frame(3000, 1, missing=0.1)
    reference.to_parquet(tmp_path / "ref.parquet", row_group_size=1000)
    streamed = build_profile(ParquetWindow(tmp_path / "ref.parquet", batch_rows=300), NUMERIC, CATEGORICAL)
    direct = profile_frame(reference, NUMERIC, CATEGORICAL)
    for name in NUMERIC:
        assert np.array_equal(streamed.column(name).values, direct.column(name).values)
        assert streamed.column(name).integer == direct.column(name).integer
    for name in CATEGORICAL:
        assert dict(streamed.column(name).counts) == dict(direct.column(name).counts)


def test_empty_current_column_is_refused_like_evidently():
    reference, current = frame(2000, 1), frame(500, 2)
    current["normal"] = np.nan
    with pytest.raises(ValueError, match="normal"):
        check_drift(profile_frame(reference, NUMERIC, CATEGORICAL), FrameWindow(current), NUMERIC, CATEGORICAL,
                    MonitoringConfig())


def test_method_that_does_not_fit_the_column_kind_is_refused():
    reference = frame(2000, 1)
    with pytest.raises(ValueError, match="chisquare"):
        check_drift(profile_frame(reference, ["normal"], []), FrameWindow(frame(500, 2)), ["normal"], [],
                    MonitoringConfig(num_method="chisquare"))
