"""Labelled rows a rollout needs to abort a worse challenger: the sequential test against a fixed horizon.

Contenders, at the same alpha (two-sided) and the same power:
- baseline: a fixed-horizon two-proportion z-test, planned for the effect (`fixed_horizon_rows`),
  which may be looked at exactly once, after all its rows;
- ours: the always-valid mixture SPRT (`mlops.promotion.sequential`), looked at every `--every`
  labelled rows per version, which may stop as soon as it is sure.

Simulation: per-row correctness of both versions is drawn as Bernoulli(p) with the champion at
`--champion` accuracy and the challenger `--effect` below it (3 points by default). Printed:
- the fixed horizon's rows per version for `--power`;
- the sequential test's rows to abort: median, and the mean when it is truncated where its power
  equals `--power` (its `--power` quantile), so both have the same power; the ratio of that mean to
  the fixed horizon is the headline, then the same ratio for a challenger twice as bad, against
  the same (3-point) plan;
- the A/A false-abort rate of the sequential test over every look, and, for contrast, that of the
  fixed-horizon z-test peeked at the same looks.

Pure numpy, single process; the load average is printed before the run since the machine may be
shared, though only the wall time (not a result) depends on it.

    .venv/bin/python benchmarks/rollout.py [--runs 2000] [--effect 0.03] [--every 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops.promotion.sequential import fixed_horizon_rows, stopping_rows  # noqa: E402


def _draws(rng: np.random.Generator, p: float, runs: int, rows: int) -> np.ndarray:
    return (rng.random((runs, rows)) < p).astype(np.float32)


def _abort_rows(champion: np.ndarray, challenger: np.ndarray, looks: list[int], args: argparse.Namespace) -> np.ndarray:
    """Rows per version at which each run aborted; infinity where it never did."""
    stopped, sign = stopping_rows(champion, challenger, looks, args.alpha, args.tau, args.min_rows)
    return np.where((stopped > 0) & (sign < 0), stopped, np.inf)


def _peeking_false_abort(a: np.ndarray, b: np.ndarray, looks: list[int], alpha: float) -> float:
    from statistics import NormalDist

    n = np.asarray(looks)
    mean_a, mean_b = np.cumsum(a, 1)[:, n - 1] / n, np.cumsum(b, 1)[:, n - 1] / n
    pooled = (mean_a + mean_b) / 2
    z = (mean_b - mean_a) / np.sqrt(np.maximum(2 * pooled * (1 - pooled) / n, 1e-12))
    return float(np.mean((z < -NormalDist().inv_cdf(1 - alpha / 2)).any(axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--champion", type=float, default=0.80, help="champion accuracy")
    parser.add_argument("--effect", type=float, default=0.03, help="how much worse the challenger is")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.80)
    parser.add_argument("--tau", type=float, default=0.05, help="the mixture's scale (rollout.sequential_tau)")
    parser.add_argument("--min-rows", type=int, default=100)
    parser.add_argument("--every", type=int, default=50, help="labelled rows per version between looks")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    p_a, p_b = args.champion, args.champion - args.effect
    horizon = fixed_horizon_rows(p_a, p_b, args.alpha, args.power)
    rows = 4 * horizon
    looks = list(range(args.every, rows + 1, args.every))
    print(f"champion {p_a:.2f}, challenger {p_b:.2f}, alpha {args.alpha:g}, power {args.power:g}, "
          f"{args.runs} runs, a look every {args.every} rows per version")
    print(f"baseline  fixed-horizon z-test: {horizon} rows per version, one look")

    champion = _draws(rng, p_a, args.runs, rows)
    for label, p in ((f"{args.effect * 100:g} points worse", p_b), (f"{2 * args.effect * 100:g} points worse", p_a - 2 * args.effect)):
        aborted = _abort_rows(champion, _draws(rng, p, args.runs, rows), looks, args)
        at_power = float(np.quantile(aborted, args.power))
        truncated = float(np.mean(np.minimum(aborted, at_power)))
        median = float(np.median(aborted))
        print(f"ours      mSPRT, {label}: median {median:.0f} rows, {args.power:.0%} aborted by {at_power:.0f}, "
              f"mean {truncated:.0f} rows at that power; ratio to the fixed horizon {truncated / horizon:.2f} "
              f"(median {median / horizon:.2f}); aborted within {rows} rows: {np.isfinite(aborted).mean():.1%}")

    same = _draws(rng, p_a, args.runs, rows)
    stopped, sign = stopping_rows(champion, same, looks, args.alpha, args.tau, args.min_rows)
    print(f"A/A       mSPRT false-abort rate over {len(looks)} looks: {np.mean((stopped > 0) & (sign < 0)):.3f} "
          f"(any rejection {np.mean(stopped > 0):.3f}; alpha {args.alpha:g})")
    print(f"A/A       fixed z-test peeked at the same looks: false-abort rate {_peeking_false_abort(champion, same, looks, args.alpha):.3f}")
    print(f"wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
