"""The bundled datasets in data/ and the command that rewrites them from their simulators.

`make data` (python -m mlops.local.bundled) regenerates data/churn.parquet, data/spend.parquet,
the feature store's sources in data/features/ (features/, docs/features.md) and the churn model's
entity frame data/churn_labels.parquet (labels only: its features come from the store);
the same library versions give the same bytes, and a unit test checks the files equal the
simulators' output. Kept apart from `simulate` so that `python -m` runs it without the package
having imported it first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.local.simulate import DATASETS, simulate_churn_labels, simulate_customer_features

# The bundled files: big enough for a time split and a drift reference, small enough for git.
BUNDLED_ROWS = 20_000
BUNDLED_SEED = 0
# The feature store's sources: a few hundred kilobytes, enough months for point-in-time joins.
FEATURE_CUSTOMERS = 1_000
FEATURE_MONTHS = 6
FEATURES_DIR = "features"
# The churn model's entity frame (customer_id, event_time, churned), joined to the store to train:
# a few labels per customer at different months, so the join has history to get right.
CHURN_LABELS = "churn_labels.parquet"
LABELS_PER_CUSTOMER = 5


def write_bundled(directory: str | Path = "data") -> list[Path]:
    """Write every bundled dataset into `directory` (the repository's data/); return the paths."""
    from mlops.data import write_frame

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in DATASETS.values():
        path = directory / dataset.file_name
        write_frame(dataset.simulate(BUNDLED_ROWS, seed=BUNDLED_SEED), str(path))
        written.append(path)
    features = directory / FEATURES_DIR
    features.mkdir(exist_ok=True)
    tables = simulate_customer_features(FEATURE_CUSTOMERS, FEATURE_MONTHS, seed=BUNDLED_SEED)
    for name, frame in tables.items():
        path = features / f"{name}.parquet"
        write_frame(frame, str(path))
        written.append(path)
    path = directory / CHURN_LABELS
    write_frame(simulate_churn_labels(tables, LABELS_PER_CUSTOMER, seed=BUNDLED_SEED), str(path))
    written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.local.bundled",
        description=f"Rewrite the bundled datasets ({BUNDLED_ROWS} rows, seed {BUNDLED_SEED}) into a directory.",
    )
    parser.add_argument("--out-dir", default="data", help="directory to write into (default: data)")
    args = parser.parse_args(argv)
    for path in write_bundled(args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
