"""Serving throughput and latency: our app against `mlflow models serve`, same model, same load.

Baseline: `mlflow models serve -m models:/<name>@champion --env-manager local` (MLflow's own
scoring server, one uvicorn worker, body `{"dataframe_records": [row]}` on /invocations).
Ours: `python -m mlops.serving` (one worker, prediction logging on, body `{"records": [row]}`
on /predict). The model is the `configs/churn.yaml` estimator trained on 20,000 simulated rows
and registered in a fresh SQLite MLflow store. Only one server runs at a time.

Load: single-row requests, 1 and 32 concurrent keep-alive connections, each for a fixed
duration after a short unmeasured warm-up. The load generator is a separate process: a tight
asyncio client on raw sockets (uvloop when installed) that pre-encodes every request and parses
only the status line and Content-Length, so it needs a small share of one core and is not the
bottleneck on a 2-core machine (its own CPU time is printed alongside).

    .venv/bin/python benchmarks/serving.py [--duration 12] [--warmup 3] [--concurrency 1 32]

Prints requests/s and p50/p99 latency for both servers and the ratio ours / mlflow
(target: >= 5x mlflow's throughput at 32 clients, with our p99 <= 50 ms).

    .venv/bin/python benchmarks/serving.py --compare-wal [--rounds 2] [--duration 8] [--concurrency 32]

measures only ours, with the prediction log's write-ahead segments off (the behaviour before
they existed: rows buffered in memory only) and on, alternating, a fresh server and log each
run, and prints the throughput ratio on / off (target: >= 0.80 at 32 clients).

    .venv/bin/python benchmarks/serving.py --models 10 [--rounds 2] [--duration 8] [--concurrency 32]

measures only ours: one model alone (`--catalogue` of one config) and 10 models of the demo's size
in one app (the same fitted pipeline registered under 10 names, each loaded separately), the 32
clients spread over them by /models/{name}/predict, alternating rounds with a fresh server each.
Prints the throughput ratio 10 models / 1 model (target: >= 0.80, p99 <= 50 ms) and the app's
resident memory per loaded model (RSS after loading all 10 minus RSS with the default model only,
divided by 9).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-churn"
BIN = Path(sys.executable).parent


# -- load generator (runs in its own process) ---------------------------------------------------


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by every live process in a process group (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after "(comm)": [0] state, [1] ppid, [2] pgrp, ..., [11] utime, [12] stime.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending requests back to back and timing each response."""

    def __init__(self, requests: list[bytes], offset: int, latencies: array, stats: dict[str, int]) -> None:
        self.requests = requests
        self.index = offset
        self.latencies = latencies
        self.stats = stats
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.stopped = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.index % len(self.requests)])  # type: ignore[union-attr]
        self.index += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        if start < 0:
            raise RuntimeError("response without Content-Length")
        length = int(head[start + 15 : head.find(b"\r\n", start) if head.find(b"\r\n", start) > 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        self.latencies.append(time.perf_counter() - self.sent_at)
        self.stats["ok" if status == 200 else "failed"] += 1
        del self.buffer[: end + 4 + length]
        if self.stopped:
            self.transport.close()  # type: ignore[union-attr]
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(
    host: str, port: int, requests: list[list[bytes]], clients: int, warmup: float, duration: float, server_pgid: int
) -> dict:
    loop = asyncio.get_running_loop()
    warm_lat, lat = array("d"), array("d")
    warm_stats, stats = {"ok": 0, "failed": 0}, {"ok": 0, "failed": 0}
    conns = []
    for i in range(clients):
        _, proto = await loop.create_connection(
            lambda i=i: _Conn(requests[i % len(requests)], i * 7919, warm_lat, warm_stats), host, port
        )
        conns.append(proto)
    await asyncio.sleep(warmup)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = _group_cpu_seconds(server_pgid)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    for conn in conns:
        conn.latencies, conn.stats = lat, stats
    await asyncio.sleep(duration)
    for conn in conns:
        conn.latencies = array("d")  # responses after the window are not counted
        conn.stats = {"ok": 0, "failed": 0}
        conn.stopped = True
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = _group_cpu_seconds(server_pgid) - server0
    await asyncio.wait([c.done for c in conns], timeout=10)
    ordered = sorted(lat)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "clients": clients, "seconds": elapsed, "ok": stats["ok"], "failed": stats["failed"],
        "rps": stats["ok"] / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "client_cpu_share": cpu / elapsed,
        "server_cpu_ms": 1000 * server_cpu / max(1, stats["ok"] + stats["failed"]),
        "server_cpu_share": server_cpu / elapsed,
        "loadavg": load,
    }


def client_main(args: argparse.Namespace) -> int:
    payloads = json.loads(Path(args.payloads).read_text())
    # Several paths (comma-separated): client i sends to path i modulo their number.
    requests = [
        [
            (
                f"POST {path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"
            ).encode()
            for body in payloads
        ]
        for path in args.path.split(",")
    ]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        _load(args.host, args.port, requests, args.clients, args.warmup, args.duration, args.server_pgid)
    )
    print(json.dumps(result))
    return 0


# -- orchestration ------------------------------------------------------------------------------


def _register(store: str, workdir: Path, names: tuple[str, ...] = (MODEL,)) -> None:
    from mlops import contract as contracts
    from mlops import training
    from mlops.config import load_config
    from mlops.local.simulate import simulate_churn
    from mlops.registry import ALIAS_CHAMPION, Registry

    config = load_config(REPO / "configs" / "churn.yaml")
    model = config.model.model_copy(update={"name": MODEL})
    frame = simulate_churn(20_000, seed=0)
    contract = contracts.infer_contract(frame, "churned", "event_time", "classification")
    pipeline = training.fit_pipeline(frame, contract, model)
    registry = Registry(store, artifact_root=workdir / "mlartifacts")
    # One fit, registered under every name: each name is its own registered model, loaded (and
    # held in memory) separately by the serving app, and of the demo's size.
    for name in names:
        run_id = registry.start_run(name, "bench-serving", {})
        registry.register_model(
            run_id, name, pipeline, contract, training.feature_frame(frame.head(5), contract),
            training.skops_trusted_types(pipeline), tags={}, alias=ALIAS_CHAMPION,
        )
        registry.end_run(run_id, True)


def _payloads(workdir: Path) -> tuple[Path, Path]:
    from mlops.local.simulate import simulate_churn

    rows = simulate_churn(1000, seed=7).drop(columns=["churned", "event_time"])
    records = json.loads(rows.to_json(orient="records"))
    ours, theirs = workdir / "ours.json", workdir / "mlflow.json"
    ours.write_text(json.dumps([json.dumps({"records": [r]}) for r in records]))
    theirs.write_text(json.dumps([json.dumps({"dataframe_records": [r]}) for r in records]))
    return ours, theirs


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s; see {log}")


def _serve(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # cwd: the log dir, so nothing a server writes beside itself lands in the repository.
        proc = subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _wait_healthy(ready_url, proc, 180, log)
    return proc


def _run_load(port: int, path: str, payloads: Path, clients: int, args: argparse.Namespace, pgid: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load-client", "--port", str(port), "--path", path,
         "--payloads", str(payloads), "--clients", str(clients),
         "--warmup", str(args.warmup), "--duration", str(args.duration), "--server-pgid", str(pgid)],
        capture_output=True, text=True, check=True, timeout=args.warmup + args.duration + 60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _serve_ours(workdir: Path, env: dict[str, str], tag: str) -> tuple[subprocess.Popen, int, Path]:
    """`python -m mlops.serving` with prediction logging on, its own log directory and home."""
    from mlops.local import stack

    log_uri = workdir / f"predictions-{tag}"
    config = workdir / f"serving-{tag}.yaml"
    config.write_text(_model_config(MODEL, log_uri, True))
    port = stack.free_port()
    proc = _serve(
        [sys.executable, "-m", "mlops.serving", "--config", str(config), "--port", str(port)],
        {**env, "MLOPS_HOME": str(workdir / f"home-{tag}")}, f"http://127.0.0.1:{port}/ready",
        workdir / f"ours-{tag}.log",
    )
    return proc, port, log_uri


def compare_wal(args: argparse.Namespace, workdir: Path, env: dict[str, str], payloads: Path) -> None:
    """Ours with the write-ahead segments off and on, alternating; prints each run and the ratios."""
    from statistics import median

    from mlops.local import stack
    from mlops.serving.prediction_log import model_log_uri, read_prediction_log

    runs: dict[tuple[str, int], list[dict]] = {}
    for round_ in range(args.rounds):
        for mode in ("off", "on"):
            tag = f"{mode}-{round_}"
            proc, port, log_uri = _serve_ours(workdir, {**env, "MLOPS_SERVING_WAL": "true" if mode == "on" else "false"}, tag)
            try:
                for clients in args.concurrency:
                    r = _run_load(port, "/predict", payloads, clients, args, proc.pid)
                    runs.setdefault((mode, clients), []).append(r)
                    print(f"  round {round_ + 1} wal {mode:<3} c={clients:<3d} {r['rps']:8.1f} req/s  "
                          f"p99 {r['p99_ms']:6.1f} ms  load {r['loadavg']:.2f}", file=sys.stderr)
            finally:
                stack.stop_pid(proc.pid)
            r["log_rows"] = len(read_prediction_log(model_log_uri(str(log_uri), MODEL)))
    print(f"single-row requests to ours, {args.duration:g} s per run after {args.warmup:g} s warm-up, "
          f"{args.rounds} alternating rounds of write-ahead segments off / on")
    print(f"{'wal':<4} {'clients':>7} {'req/s per run':>24} {'median':>8} {'p99 ms':>8} {'loadavg':>8}")
    for (mode, clients), results in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "off")):
        rates = " ".join(f"{r['rps']:.1f}" for r in results)
        print(f"{mode:<4} {clients:>7d} {rates:>24} {median(r['rps'] for r in results):>8.1f} "
              f"{median(r['p99_ms'] for r in results):>8.2f} {median(r['loadavg'] for r in results):>8.2f}")
    for clients in args.concurrency:
        pairs = [on["rps"] / off["rps"] for off, on in zip(runs[("off", clients)], runs[("on", clients)], strict=True)]
        ratio = median(pairs)
        print(f"throughput wal on / off at {clients} client(s): {ratio:.3f} (per round: "
              f"{', '.join(f'{p:.3f}' for p in pairs)}); target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'}")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _model_config(name: str, log_uri: Path, default: bool) -> str:
    import yaml

    raw = yaml.safe_load((REPO / "configs" / "churn.yaml").read_text())
    raw["model"]["name"] = name
    raw["serving"] = {"prediction_log_uri": str(log_uri), "default": default}
    return yaml.safe_dump(raw)


def _serve_catalogue(workdir: Path, env: dict[str, str], names: list[str], tag: str) -> tuple[subprocess.Popen, int]:
    """`python -m mlops.serving --catalogue` over one config per name (the first is the default model)."""
    from mlops.local import stack

    catalogue = workdir / f"catalogue-{tag}"
    catalogue.mkdir()
    for index, name in enumerate(names):
        (catalogue / f"{index:03d}-{name}.yaml").write_text(_model_config(name, workdir / f"predictions-{tag}", index == 0))
    port = stack.free_port()
    proc = _serve(
        [sys.executable, "-m", "mlops.serving", "--catalogue", str(catalogue), "--port", str(port)],
        {**env, "MLOPS_HOME": str(workdir / f"home-{tag}")}, f"http://127.0.0.1:{port}/ready",
        workdir / f"ours-{tag}.log",
    )
    return proc, port


def _post(port: int, path: str, body: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def compare_models(args: argparse.Namespace, workdir: Path, env: dict[str, str], payloads: Path) -> int:
    """One model alone vs `args.models` models in one app (clients spread over them), alternating rounds."""
    from statistics import median

    from mlops.local import stack

    names = [f"{MODEL}-{i}" for i in range(args.models)]
    clients = max(args.concurrency)
    body = json.loads(payloads.read_text())[0]
    runs: dict[str, list[dict]] = {"one": [], "many": []}
    rss: list[tuple[float, float]] = []
    for round_ in range(args.rounds):
        for mode in ("one", "many"):
            served = names[:1] if mode == "one" else names
            proc, port = _serve_catalogue(workdir, env, served, f"{mode}-{round_}")
            try:
                if mode == "many":
                    before = _rss_mb(proc.pid)  # the default model loaded (and warmed up), the others not yet
                    for name in names:
                        _post(port, f"/models/{name}/predict", body)
                    rss.append((before, _rss_mb(proc.pid)))
                paths = ",".join(f"/models/{name}/predict" for name in served)
                r = _run_load(port, paths, payloads, clients, args, proc.pid)
                runs[mode].append(r)
                print(f"  round {round_ + 1} {mode:<4} models={len(served):<3d} c={clients} {r['rps']:8.1f} req/s  "
                      f"p99 {r['p99_ms']:6.1f} ms  failed {r['failed']}  load {r['loadavg']:.2f}", file=sys.stderr)
            finally:
                stack.stop_pid(proc.pid)
    print(f"single-row requests, {clients} clients, {args.duration:g} s per run after {args.warmup:g} s warm-up, "
          f"{args.rounds} alternating rounds: one model alone vs {args.models} models in one app (clients spread over them)")
    print(f"{'served':<10} {'req/s per run':>24} {'median':>8} {'p99 ms':>8} {'failed':>7} {'loadavg':>8}")
    for mode, results in runs.items():
        rates = " ".join(f"{r['rps']:.1f}" for r in results)
        label = "1 model" if mode == "one" else f"{args.models} models"
        print(f"{label:<10} {rates:>24} {median(r['rps'] for r in results):>8.1f} "
              f"{median(r['p99_ms'] for r in results):>8.2f} {sum(r['failed'] for r in results):>7d} "
              f"{median(r['loadavg'] for r in results):>8.2f}")
    pairs = [many["rps"] / one["rps"] for one, many in zip(runs["one"], runs["many"], strict=True)]
    ratio, p99 = median(pairs), median(r["p99_ms"] for r in runs["many"])
    met = ratio >= 0.8 and p99 <= 50.0
    print(f"throughput {args.models} models / 1 model: {ratio:.3f} (per round: {', '.join(f'{p:.3f}' for p in pairs)}); "
          f"p99 with {args.models} models {p99:.1f} ms; target (>= 0.80, p99 <= 50 ms): {'met' if met else 'NOT met'}")
    per_model = [(after - before) / (args.models - 1) for before, after in rss]
    print(f"resident memory: {', '.join(f'{b:.0f} MB with 1 loaded -> {a:.0f} MB with {args.models}' for b, a in rss)}; "
          f"per loaded model {median(per_model):.1f} MB")
    return 0


def main(args: argparse.Namespace) -> int:
    from mlops.local import stack

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    results: dict[str, dict[int, dict]] = {"mlflow": {}, "ours": {}}
    log_rows = None
    try:
        print("registering the model ...", file=sys.stderr)
        # MLflow writes logged-model artifacts under ./mlruns of the directory the store is
        # created in; keep them in the scratch folder.
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            names = (MODEL,) if not args.models else tuple(f"{MODEL}-{i}" for i in range(args.models))
            _register(store, workdir, names)
        finally:
            os.chdir(cwd)
        ours_payloads, mlflow_payloads = _payloads(workdir)
        if args.models:
            return compare_models(args, workdir, env, ours_payloads)
        if args.compare_wal:
            compare_wal(args, workdir, env, ours_payloads)
            return 0

        port = stack.free_port()
        proc = _serve(
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            # It runs `uvicorn` by name, so the venv's bin must be on PATH.
            {**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true", "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"},
            f"http://127.0.0.1:{port}/ping", workdir / "mlflow-serve.log",
        )
        try:
            for clients in args.concurrency:
                results["mlflow"][clients] = r = _run_load(port, "/invocations", mlflow_payloads, clients, args, proc.pid)
                print(f"  mlflow  c={clients:<3d} {r['rps']:8.1f} req/s", file=sys.stderr)
        finally:
            stack.stop_pid(proc.pid)

        proc, port, log_uri = _serve_ours(workdir, env, "ours")
        try:
            for clients in args.concurrency:
                results["ours"][clients] = r = _run_load(port, "/predict", ours_payloads, clients, args, proc.pid)
                print(f"  ours    c={clients:<3d} {r['rps']:8.1f} req/s", file=sys.stderr)
        finally:
            stack.stop_pid(proc.pid)
        from mlops.serving.prediction_log import model_log_uri, read_prediction_log

        log_rows = len(read_prediction_log(model_log_uri(str(log_uri), MODEL)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"single-row requests, {args.duration:g} s per run after {args.warmup:g} s warm-up, one worker each")
    print(
        f"{'server':<8} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} "
        f"{'srv cpu ms/req':>14} {'client cpu':>10} {'loadavg':>8}"
    )
    for name in ("mlflow", "ours"):
        for clients, r in results[name].items():
            print(
                f"{name:<8} {clients:>7d} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                f"{r['failed']:>7d} {r['server_cpu_ms']:>14.2f} {100 * r['client_cpu_share']:>9.0f}% "
                f"{r['loadavg']:>8.2f}"
            )
    for clients in args.concurrency:
        ratio = results["ours"][clients]["rps"] / results["mlflow"][clients]["rps"]
        print(f"throughput ratio ours / mlflow at {clients} client(s): {ratio:.2f}x")
    top = max(args.concurrency)
    ratio = results["ours"][top]["rps"] / results["mlflow"][top]["rps"]
    p99 = results["ours"][top]["p99_ms"]
    met = ratio >= 5.0 and p99 <= 50.0
    print(f"target (>= 5x at {top} clients, our p99 <= 50 ms): {'met' if met else 'NOT met'} ({ratio:.2f}x, p99 {p99:.1f} ms)")
    print(f"prediction log rows written by ours (warm-up included): {log_rows}")
    return 0


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--compare-wal", action="store_true",
        help="only ours: write-ahead segments off vs on, alternating, and their throughput ratio",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs with --compare-wal or --models")
    parser.add_argument(
        "--models", type=int, default=0,
        help="only ours: this many models in one app (clients spread over them) vs one model alone, alternating",
    )
    # Internal: the load-generator child process.
    parser.add_argument("--load-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--payloads", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pgid", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _parse()
    sys.exit(client_main(arguments) if arguments.load_client else main(arguments))
