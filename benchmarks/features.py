"""The feature store's two paths: serving by entity key, and point-in-time training frames.

Serving. One store-fed model (the `configs/churn.yaml` estimator, trained on the `churn_model`
service's ten features of the project's own repository, `features/`) served by `python -m
mlops.serving` three ways, one server at a time, alternating in rounds, a fresh server each run:

* `records`: the baseline, every feature in the request (`{"records": [row]}`), no store involved;
* `sqlite`:  `{"entities": [{"customer_id": n}]}`, features from the SQLite online store;
* `redis`:   the same from the machine's Redis (MLOPS_BENCH_REDIS, default 127.0.0.1:6379), under
  a project name of its own whose keys are deleted at the end.

The sources are the bundled ones (`make data`) with every timestamp moved so the latest activity
is an hour old: nothing is stale, so every request is answered in full. The load is single-entity
requests from 32 keep-alive clients (benchmarks/serving.py's load generator, a separate process);
it prints requests/s and p50/p99 per run and the ratios against the records baseline measured in
the same round (target: p99 <= 50 ms with Redis).

Training frames. `mlops.features.historical_frame` (Feast's `get_historical_features`, file
offline store) for N entity rows of the same 1,000 customers at random times, against a plain
pandas `merge_asof` per view with the view's TTL as tolerance; alternating, the results compared
value by value. It prints both times and the ratio.

    .venv/bin/python benchmarks/features.py [--duration 8] [--warmup 2] [--rounds 2] [--clients 32]
                                            [--entity-rows 1000000] [--history-rounds 1]
                                            [--skip-serving] [--skip-history]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-store-fed"
SERVICE = "churn_model"
VIEWS = ("customer_profile", "customer_activity")
CONTENDERS = ("records", "sqlite", "redis")


# -- set-up --------------------------------------------------------------------------------------


def _repo(root: Path, shift: pd.Timedelta, project: str, online_store: str) -> Path:
    """A copy of features/ under `root`, its sources moved by `shift`, its online store `online_store`."""
    (root / "data" / "features").mkdir(parents=True)
    for view in VIEWS:
        frame = pd.read_parquet(REPO / "data" / "features" / f"{view}.parquet")
        frame["event_timestamp"] = frame["event_timestamp"] + shift
        frame.to_parquet(root / "data" / "features" / f"{view}.parquet", index=False)
    repo = root / "features"
    repo.mkdir()
    shutil.copy(REPO / "features" / "customers.py", repo / "customers.py")
    text = (REPO / "features" / "feature_store.yaml").read_text().replace("project: mlops", f"project: {project}")
    start = text.index("online_store:")
    end = text.index("offline_store:")
    (repo / "feature_store.yaml").write_text(text[:start] + online_store + text[end:])
    return repo


def _materialized(repo: Path, home: Path, now: datetime):
    from mlops import features

    store = features.open_store(repo, home)
    features.apply_repo(store, repo)
    features.materialize(store, end=now)
    return store


def _train_and_register(store, tracking_uri: str, workdir: Path, now: datetime) -> list[dict]:
    """Fit the churn estimator on the service's features of every customer at `now`; return those rows."""
    from mlops import features, training
    from mlops.config import load_config
    from mlops.contract import infer_contract
    from mlops.registry import ALIAS_CHAMPION, Registry

    entity = pd.DataFrame({"customer_id": np.arange(1, 1001), "event_timestamp": pd.Timestamp(now)})
    frame = features.historical_frame(store, entity, SERVICE).drop(columns=["event_timestamp"])
    rng = np.random.default_rng(0)
    # A label the features explain, with noise: what the model learns does not matter here, its cost does.
    risk = (frame["contract"] == "monthly") * 1.0 + frame["support_calls"] * 0.3 - frame["tenure_months"] * 0.05
    frame["churned"] = (risk + rng.normal(0, 0.5, len(frame)) > risk.median()).astype(int)
    data = frame.drop(columns=["customer_id"])
    contract = infer_contract(data, "churned", None, "classification")
    model = load_config(REPO / "configs" / "churn.yaml").model.model_copy(update={"name": MODEL})
    pipeline = training.fit_pipeline(data, contract, model)
    cwd = os.getcwd()
    os.chdir(workdir)  # MLflow's Default experiment lands under ./mlruns of the working directory
    try:
        registry = Registry(tracking_uri, artifact_root=workdir / "mlartifacts")
        run_id = registry.start_run(MODEL, "bench-features", {})
        registry.register_model(run_id, MODEL, pipeline, contract, training.feature_frame(data.head(5), contract),
                                training.skops_trusted_types(pipeline), tags={}, alias=ALIAS_CHAMPION)
        registry.end_run(run_id, True)
    finally:
        os.chdir(cwd)
    rows = frame.drop(columns=["churned"])
    return json.loads(rows.to_json(orient="records"))


# -- serving -------------------------------------------------------------------------------------


def _serve(workdir: Path, env: dict[str, str], repo: Path, home: Path, tag: str) -> tuple[subprocess.Popen, int]:
    import yaml

    from mlops.local import stack

    config = {
        "dataset": {"uri": "unused.parquet", "target": "churned", "timestamp": "event_timestamp",
                    "feature_service": SERVICE, "feature_repo": str(repo)},
        "model": {"name": MODEL},
        "serving": {"prediction_log_uri": str(workdir / f"predictions-{tag}")},
    }
    path = workdir / f"serving-{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = stack.free_port()
    log = workdir / f"serve-{tag}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops.serving", "--config", str(path), "--port", str(port)],
            env={**env, "MLOPS_HOME": str(home)}, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stack.stop_pid(proc.pid)
            raise RuntimeError(f"server not ready; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                if response.status == 200:
                    return proc, port
        except OSError:
            pass
        time.sleep(0.3)


def _post(port: int, body: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _load(port: int, payloads: Path, args: argparse.Namespace, pgid: int) -> dict:
    """benchmarks/serving.py's load generator, in its own process."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "serving.py"), "--load-client", "--port", str(port),
         "--path", "/predict", "--payloads", str(payloads), "--clients", str(args.clients),
         "--warmup", str(args.warmup), "--duration", str(args.duration), "--server-pgid", str(pgid)],
        capture_output=True, text=True, check=True, timeout=args.warmup + args.duration + 60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_serving(args: argparse.Namespace, workdir: Path, now: datetime, shift: pd.Timedelta) -> None:
    from mlops.local import stack

    redis_address = os.environ.get("MLOPS_BENCH_REDIS", "127.0.0.1:6379")
    project = f"bench_{uuid.uuid4().hex[:10]}"
    homes = {kind: workdir / kind / "home" for kind in ("sqlite", "redis")}
    repos = {
        "sqlite": _repo(workdir / "sqlite", shift, "mlops", "online_store:\n  type: sqlite\n  path: ${MLOPS_HOME}/feast/online.db\n"),
        "redis": _repo(workdir / "redis", shift, project,
                       f'online_store:\n  type: redis\n  connection_string: "{redis_address}"\n'),
    }
    print("materializing (SQLite, Redis) and training ...", file=sys.stderr)
    stores = {kind: _materialized(repos[kind], homes[kind], now) for kind in repos}
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    rows = _train_and_register(stores["sqlite"], tracking_uri, workdir, now)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    payloads = {
        "records": [json.dumps({"records": [{k: v for k, v in row.items() if k != "customer_id"}]}) for row in rows],
        "entities": [json.dumps({"entities": [{"customer_id": row["customer_id"]}]}) for row in rows],
    }
    files = {}
    for kind, bodies in payloads.items():
        files[kind] = workdir / f"{kind}.json"
        files[kind].write_text(json.dumps(bodies))
    runs: dict[str, list[dict]] = {kind: [] for kind in CONTENDERS}
    try:
        for round_ in range(args.rounds):
            for kind in CONTENDERS:
                repo, home = (repos["sqlite"], homes["sqlite"]) if kind == "records" else (repos[kind], homes[kind])
                proc, port = _serve(workdir, env, repo, home, f"{kind}-{round_}")
                try:
                    # The same answer both ways (checked once per server): the store holds what the request would.
                    by_records = _post(port, payloads["records"][0])
                    by_entity = _post(port, payloads["entities"][0])
                    assert by_entity["statuses"] == ["ok"], by_entity
                    assert by_entity["probabilities"] == by_records["probabilities"], (by_entity, by_records)
                    r = _load(port, files["records" if kind == "records" else "entities"], args, proc.pid)
                finally:
                    stack.stop_pid(proc.pid)
                runs[kind].append(r)
                print(f"  round {round_ + 1} {kind:<8} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.1f} ms  "
                      f"p99 {r['p99_ms']:6.1f} ms  failed {r['failed']}  load {r['loadavg']:.2f}", file=sys.stderr)
    finally:
        stores["redis"].teardown()  # deletes the project's keys from Redis (and its tables elsewhere)

    print(f"\nserving one entity per request, {args.clients} clients, {args.duration:g} s per run after "
          f"{args.warmup:g} s warm-up, {args.rounds} alternating rounds, a fresh server per run")
    print(f"{'contender':<10} {'req/s per run':>22} {'median':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>7} {'loadavg':>8}")
    for kind, results in runs.items():
        rates = " ".join(f"{r['rps']:.0f}" for r in results)
        print(f"{kind:<10} {rates:>22} {median(r['rps'] for r in results):>8.1f} "
              f"{median(r['p50_ms'] for r in results):>7.1f} {median(r['p99_ms'] for r in results):>7.1f} "
              f"{sum(r['failed'] for r in results):>7d} {median(r['loadavg'] for r in results):>8.2f}")
    for kind in ("sqlite", "redis"):
        rps = [r["rps"] / base["rps"] for r, base in zip(runs[kind], runs["records"], strict=True)]
        p99 = [r["p99_ms"] / base["p99_ms"] for r, base in zip(runs[kind], runs["records"], strict=True)]
        print(f"{kind} / records: throughput {median(rps):.2f} (per round {', '.join(f'{x:.2f}' for x in rps)}), "
              f"p99 {median(p99):.2f}x")
    p99 = median(r["p99_ms"] for r in runs["redis"])
    print(f"target (p99 <= 50 ms with Redis at {args.clients} clients): {'met' if p99 <= 50 else 'NOT met'} ({p99:.1f} ms)")


# -- training frames -----------------------------------------------------------------------------


def _merge_asof(entity: pd.DataFrame, sources: dict[str, pd.DataFrame], ttls: dict[str, pd.Timedelta]) -> pd.DataFrame:
    """The baseline: per view, each row's latest value at or before its time within the TTL, by plain pandas."""
    out = entity.reset_index(drop=True).assign(_row=np.arange(len(entity))).sort_values("event_timestamp")
    for view, source in sources.items():
        out = pd.merge_asof(out, source.sort_values("event_timestamp"), on="event_timestamp", by="customer_id",
                            direction="backward", tolerance=ttls[view])
    return out.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def bench_history(args: argparse.Namespace, workdir: Path, now: datetime, shift: pd.Timedelta) -> None:
    from mlops import features

    root = workdir / "history"
    repo = _repo(root, shift, "mlops", "online_store:\n  type: sqlite\n  path: ${MLOPS_HOME}/feast/online.db\n")
    store = features.open_store(repo, root / "home")
    features.apply_repo(store, repo)
    sources = {view: pd.read_parquet(root / "data" / "features" / f"{view}.parquet").drop(columns=["created"], errors="ignore")
               for view in VIEWS}
    ttls = {status.name: pd.Timedelta(seconds=status.ttl_seconds) for status in features.status(store)}
    low = min(s["event_timestamp"].min() for s in sources.values())
    high = max(s["event_timestamp"].max() for s in sources.values()) + pd.Timedelta(days=10)
    rng = np.random.default_rng(1)
    n = args.entity_rows
    entity = pd.DataFrame({
        "customer_id": rng.integers(1, 1001, n),
        "event_timestamp": low + pd.to_timedelta(rng.integers(0, int((high - low).total_seconds()), n), unit="s"),
    })
    served = [c for s in sources.values() for c in s.columns if c not in ("customer_id", "event_timestamp")]
    times: dict[str, list[float]] = {"feast": [], "pandas": []}
    loads: list[float] = []
    for round_ in range(args.history_rounds):
        for kind in ("feast", "pandas"):
            loads.append(os.getloadavg()[0])
            started = time.perf_counter()
            if kind == "feast":
                feast_frame = features.historical_frame(store, entity, SERVICE)
            else:
                pandas_frame = _merge_asof(entity, sources, ttls)
            times[kind].append(time.perf_counter() - started)
            print(f"  round {round_ + 1} {kind:<6} {times[kind][-1]:8.2f} s  load {loads[-1]:.2f}", file=sys.stderr)
    differ = _differing_rows(feast_frame, pandas_frame, served)
    # Feast's join keeps one entity row per (join keys, timestamp): rows repeating such a pair are
    # where the two can part (historical_frame then leaves the repeated row without features).
    repeated = entity.duplicated(["customer_id", "event_timestamp"], keep=False).to_numpy()
    feast_s, pandas_s = median(times["feast"]), median(times["pandas"])
    print(f"\npoint-in-time training frame of {n:,} entity rows ({len(served)} features from {len(VIEWS)} views), "
          f"{args.history_rounds} alternating round(s), load average {min(loads):.2f}-{max(loads):.2f}")
    print(f"get_historical_features (historical_frame): {feast_s:.2f} s; pandas merge_asof: {pandas_s:.2f} s; "
          f"ratio feast / pandas {feast_s / pandas_s:.1f}x")
    print(f"same values: {'yes' if not differ.any() else 'NO'}: {int(differ.sum())} of {n:,} rows differ, "
          f"{int((differ & repeated).sum())} of them repeating a (customer_id, event_timestamp) pair "
          f"({int(repeated.sum())} rows repeat one)")


def _differing_rows(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows where any of `columns` differs (missing equals missing; numbers compared exactly)."""
    differ = np.zeros(len(left), dtype=bool)
    for column in columns:
        a = left[column].reset_index(drop=True)
        b = right[column].reset_index(drop=True)
        missing = a.isna().to_numpy() & b.isna().to_numpy()
        same = (a.astype(object) == b.astype(object)).to_numpy()
        differ |= ~(missing | same)
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per serving run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each serving run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating serving rounds (records, sqlite, redis)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--entity-rows", type=int, default=1_000_000, help="entity rows of the training frame")
    parser.add_argument("--history-rounds", type=int, default=1, help="alternating feast / pandas rounds")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-history", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-features-"))
    now = datetime.now(UTC).replace(microsecond=0)
    latest = pd.read_parquet(REPO / "data" / "features" / "customer_activity.parquet")["event_timestamp"].max()
    shift = pd.Timestamp(now - timedelta(hours=1)) - latest
    print(f"load average at start: {os.getloadavg()[0]:.2f}; scratch {workdir}", file=sys.stderr)
    try:
        if not args.skip_serving:
            bench_serving(args, workdir, now, shift)
        if not args.skip_history:
            bench_history(args, workdir, now, shift)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
