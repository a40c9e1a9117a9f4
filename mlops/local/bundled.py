"""The bundled datasets in data/ and the command that rewrites them from their simulators.

`make data` (python -m mlops.local.bundled) regenerates data/churn.parquet and data/spend.parquet;
the same library versions give the same bytes, and a unit test checks the files equal the
simulators' output. Kept apart from `simulate` so that `python -m` runs it without the package
having imported it first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.local.simulate import DATASETS

# The bundled files: big enough for a time split and a drift reference, small enough for git.
BUNDLED_ROWS = 20_000
BUNDLED_SEED = 0


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
