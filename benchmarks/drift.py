"""Drift check time and memory: Evidently's DataDriftPreset against our full-data engine.

Baseline: `Report([DataDriftPreset(...)])` run on the full reference and current frames, read
with pandas from Parquet (what `mlops.drift.evidently_report` does, with Evidently's defaults).
Ours: `mlops.drift.check_drift` with the reference profile stored at training time (built here
beforehand, its time printed apart) and the current window streamed from the same Parquet file
column by column in row-group batches (`ParquetWindow`).

Data: generated in the same run with a fixed seed, N reference + N current rows of 20 numeric
columns (normal, lognormal, integer, three-valued; some shifted in mean or scale, some with
missing values) and 5 categorical ones (one with a category new in the current window).

Each side runs in its own fresh subprocess, one after the other. Engine-only time is wall-clock
from reading the inputs to the per-column decisions (imports excluded on both sides). Peak memory
is that process's peak resident set size (getrusage ru_maxrss of the child itself), printed with
its resident size just after the imports, so the part the check itself added can be read off. The
current window's size is the Arrow in-memory size of the current table (Table.nbytes).

Whole-process time is what a user waits for, from spawning the process to its exit, start-up
and imports included: ours is a cold `mlops drift-check --reference reference.parquet --current
current.parquet --json` (the reference profiled from the dataset in that run, as a user without
a stored profile gets it); Evidently's is the subprocess that runs its preset above, timed from
outside. The two alternate, `--rounds` pairs of them, each pair with the load average before it
(the machine may be shared); the ratio printed is the median of the pairs' ratios.

    .venv/bin/python benchmarks/drift.py [--rows 100000 1000000] [--rounds 1] [--keep DIR]

Targets: at 1M rows >= 50x faster than the preset (engine only), every decision the same, our
peak RSS under twice the current window's size; at 300k rows >= 30x as whole processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_NUMERIC, N_CATEGORICAL = 20, 5
ROW_GROUP = 131_072


def _rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def columns() -> tuple[list[str], list[str]]:
    return [f"num_{i:02d}" for i in range(N_NUMERIC)], [f"cat_{i}" for i in range(N_CATEGORICAL)]


def generate(rows: int, seed: int, drifted: bool):
    """One side of the data as an Arrow table; `drifted` shifts some columns of the current side."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    numeric, categorical = columns()
    data = {}
    for i, name in enumerate(numeric):
        shift = 0.3 if drifted and i % 4 == 0 else 0.0
        scale = 1.5 if drifted and i % 5 == 1 else 1.0
        kind = i % 4
        if kind == 0:
            values = rng.normal(10 + shift * 2, 2 * scale, rows)
        elif kind == 1:
            values = rng.lognormal(shift, 0.6 * scale, rows)
        elif kind == 2:
            values = rng.integers(0, 1000 + int(200 * shift), rows).astype(np.float64)
        else:
            values = rng.choice([1.0, 2.0, 3.0], rows, p=[0.5, 0.3, 0.2] if not shift else [0.4, 0.3, 0.3])
        if i % 7 == 3:
            values[rng.random(rows) < 0.05] = np.nan
        data[name] = values
    for j, name in enumerate(categorical):
        levels = [f"{name}_v{k}" for k in range(3 + 4 * j)]
        if drifted and j == 2:
            levels.append(f"{name}_new")
        weights = np.linspace(1, 2, len(levels))
        data[name] = rng.choice(levels, rows, p=weights / weights.sum())
    return pa.table(data)


def cmd_generate(folder: Path, rows: int) -> dict:
    import pyarrow.parquet as pq

    for side, seed, drifted in (("reference", 1, False), ("current", 2, True)):
        pq.write_table(generate(rows, seed, drifted), folder / f"{side}.parquet", row_group_size=ROW_GROUP)
    return {"window_bytes": pq.read_table(folder / "current.parquet").nbytes}


def cmd_profile(folder: Path) -> dict:
    from mlops.drift import ParquetWindow, build_profile

    numeric, categorical = columns()
    start = time.perf_counter()
    profile = build_profile(ParquetWindow(folder / "reference.parquet"), numeric, categorical)
    (folder / "profile.npz").write_bytes(profile.to_bytes())
    return {"seconds": time.perf_counter() - start}


def cmd_ours(folder: Path) -> dict:
    from mlops.config import MonitoringConfig
    from mlops.drift import ParquetWindow, ReferenceProfile, check_drift

    numeric, categorical = columns()
    rss_imports = _rss_mb()
    start = time.perf_counter()
    report = check_drift(
        ReferenceProfile.load(folder / "profile.npz"), ParquetWindow(folder / "current.parquet"),
        numeric, categorical, MonitoringConfig(),
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_imports_mb": rss_imports, "decisions": _decisions(report)}


def cmd_evidently(folder: Path) -> dict:
    import evidently.presets  # noqa: F401  (imported before the clock starts, like ours)
    import pandas as pd

    from mlops.config import MonitoringConfig
    from mlops.drift import evidently_report

    numeric, categorical = columns()
    rss_imports = _rss_mb()
    start = time.perf_counter()
    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    report = evidently_report(reference, current, numeric, categorical, MonitoringConfig())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_imports_mb": rss_imports, "decisions": _decisions(report)}


def _decisions(report) -> dict:
    return {c.column: [c.method, c.statistic, c.drifted] for c in report.columns}


STEPS = {"generate": cmd_generate, "profile": cmd_profile, "ours": cmd_ours, "evidently": cmd_evidently}


def child(step: str, folder: Path, rows: int) -> None:
    result = STEPS[step](folder, rows) if step == "generate" else STEPS[step](folder)
    result["peak_rss_mb"] = _rss_mb()
    print(json.dumps(result))


def run_step(step: str, folder: Path, rows: int) -> dict:
    """One step in a fresh interpreter; `wall_seconds` is that whole process, timed from outside."""
    command = [sys.executable, __file__, "--child", step, "--dir", str(folder), "--rows", str(rows)]
    return _run_json(command, step)


def run_cli(folder: Path) -> dict:
    """A cold `mlops drift-check` on the two files: the whole process, as a user runs it."""
    mlops = Path(sys.executable).with_name("mlops")
    command = [
        str(mlops), "drift-check", "--reference", str(folder / "reference.parquet"),
        "--current", str(folder / "current.parquet"), "--json",
    ]
    out = _run_json(command, "mlops drift-check")
    out["decisions"] = {c["column"]: [c["method"], c["statistic"], c["drifted"]] for c in out["columns"]}
    return out


def _run_json(command: list[str], what: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def _compare(ours: dict, theirs: dict) -> tuple[list[str], list[str], float]:
    """(columns, columns whose decision differs, largest relative difference of a statistic)."""
    names = list(theirs)
    mismatched = [n for n in names if ours[n][2] != theirs[n][2]]
    worst = max(abs(ours[n][1] - theirs[n][1]) / max(abs(theirs[n][1]), 1e-300) for n in names)
    return names, mismatched, worst


def bench(rows: int, folder: Path, rounds: int) -> None:
    print(f"\n== {rows:,} reference + {rows:,} current rows, {N_NUMERIC} numeric + {N_CATEGORICAL} categorical columns")
    window_mb = run_step("generate", folder, rows)["window_bytes"] / 2**20
    profile = run_step("profile", folder, rows)
    ours = run_step("ours", folder, rows)
    # Whole processes, alternating: a cold drift-check, then Evidently's preset (whose engine-only
    # time is read from the same run).
    pairs = []
    for _ in range(rounds):
        load = os.getloadavg()[0]
        cli = run_cli(folder)
        theirs = run_step("evidently", folder, rows)
        pairs.append((load, cli, theirs))
    theirs = pairs[0][2]
    names, mismatched, worst = _compare(ours["decisions"], theirs["decisions"])
    drifted = sum(v[2] for v in ours["decisions"].values())
    print(f"current window (Arrow in memory): {window_mb:.1f} MB; reference profile built once in {profile['seconds']:.2f} s")
    for label, side in (("Evidently DataDriftPreset", theirs), ("mlops check_drift (ours)", ours)):
        print(
            f"{label:27s} {side['seconds']:8.2f} s   peak RSS {side['peak_rss_mb']:7.0f} MB "
            f"(after imports {side['rss_imports_mb']:.0f} MB; peak / window {side['peak_rss_mb'] / window_mb:.2f})"
        )
    engine = statistics.median(t["seconds"] for _, _, t in pairs) / ours["seconds"]
    print(f"speed-up, engine only: {engine:.1f}x")
    print(
        f"decisions: {len(names) - len(mismatched)} of {len(names)} columns match "
        f"({drifted} drifted){'; MISMATCH: ' + ', '.join(mismatched) if mismatched else ''}; "
        f"largest relative difference of a statistic {worst:.1e}"
    )
    ratios = []
    for i, (load, cli, theirs) in enumerate(pairs, 1):
        _, cli_mismatched, _ = _compare(cli["decisions"], theirs["decisions"])
        ratios.append(theirs["wall_seconds"] / cli["wall_seconds"])
        print(
            f"whole process, pair {i} (load {load:.2f}): mlops drift-check {cli['wall_seconds']:.2f} s, "
            f"Evidently {theirs['wall_seconds']:.2f} s, {ratios[-1]:.1f}x; decisions "
            f"{'all equal' if not cli_mismatched else 'MISMATCH: ' + ', '.join(cli_mismatched)}"
        )
    print(f"speed-up, whole process (median of {len(ratios)}): {statistics.median(ratios):.1f}x  (engine only: {engine:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=1, help="whole-process pairs (ours, Evidently) per size")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (default: a temp dir)")
    parser.add_argument("--child", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dir, args.rows[0])
        return
    for rows in args.rows:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            bench(rows, args.keep, args.rounds)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
                bench(rows, Path(tmp), args.rounds)


if __name__ == "__main__":
    main()
