"""Read-only `mlops` commands against a running MLflow server: what a user waits for.

Baseline: the same command in a process where MLflow's request-header registry was imported the
way MLflow does it, loading every `mlflow.request_header_provider` entry point; Feast registers
one, so the first MLflow request imports all of Feast (what every command paid before).
Ours: the `mlops` command as installed, whose MLflow handle leaves Feast's provider out
(`mlops.registry.client`).

Both run as fresh subprocesses against one `mlflow server` started here on a free loopback port
(job execution off, as the stack starts it), alternating baseline and ours for `--rounds` rounds,
each command timed from spawn to exit; the load average is printed before each round because
the machine may be shared. It also prints the import cost of one MLflow call on its own: the
header registry imported unfiltered against filtered, each in a fresh process.

    .venv/bin/python benchmarks/cli_latency.py [--rounds 3]

Target (issue 24): each read-only command at most 2 s on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

COMMANDS = [
    ["models", "--model", "churn-classifier"],
    ["history", "--model", "churn-classifier"],
    ["rollout", "status", "--model", "churn-classifier"],
    ["catalogue"],
]
# The baseline process: MLflow's registry loaded the way MLflow loads it, then the same CLI.
BASELINE = (
    "import sys, mlflow.tracking.request_header.registry; "
    "from mlops.cli import main; sys.exit(main(sys.argv[1:]))"
)
OURS = "import sys; from mlops.cli import main; sys.exit(main(sys.argv[1:]))"
IMPORT_BEFORE = "import mlflow.tracking.request_header.registry"
IMPORT_AFTER = "from mlops.registry.client import _load_header_providers_without_feast as f; f()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[-4:])} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return took


def _start_mlflow(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("mlflow server exited during start") from None
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mlflow server did not answer /health within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as tmp:
        root = Path(tmp)
        port = _free_port()
        server = _start_mlflow(root, port)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "MLOPS_HOME": str(root / "home"),
               "PYTHONWARNINGS": "ignore"}
        try:
            times: dict[tuple[str, str], list[float]] = {}
            for n in range(rounds):
                print(f"round {n + 1}: load average {os.getloadavg()[0]:.2f}")
                for command in COMMANDS:
                    for side, code in (("baseline", BASELINE), ("ours", OURS)):
                        took = _timed([sys.executable, "-c", code, *command], env)
                        times.setdefault((" ".join(command), side), []).append(took)
            imports = {"before": [], "after": []}
            for _ in range(rounds):
                for side, code in (("before", IMPORT_BEFORE), ("after", IMPORT_AFTER)):
                    imports[side].append(_timed([sys.executable, "-X", "importtime", "-c", code], env))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{'command':46} {'baseline s':>10} {'ours s':>8} {'ratio':>6}")
    for command in COMMANDS:
        name = " ".join(command)
        base = statistics.median(times[(name, "baseline")])
        ours = statistics.median(times[(name, "ours")])
        print(f"mlops {name:40} {base:10.2f} {ours:8.2f} {base / ours:6.1f}x")
    before, after = statistics.median(imports["before"]), statistics.median(imports["after"])
    print(f"\nimport cost of MLflow's header registry (a fresh process, median of {rounds}):")
    print(f"  with Feast's provider (MLflow's way) {before:.2f} s, without (ours) {after:.2f} s: {before / after:.1f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
