"""`make demo`: the closed loop on the local stack, one printed step at a time.

Train and deploy a champion through the deployments, serve it some traffic, then drifted traffic
with its ground truth; run the drift check, and watch the automation retrain and redeploy with no
one pressing a button. Needs `make up` (it is a prerequisite of `make demo`).
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime

import httpx

from mlops.catalogue import load_catalogue
from mlops.config import PipelineConfig, Settings
from mlops.events import DRIFT_DETECTED, PERFORMANCE_DEGRADED
from mlops.local.prefect_rest import PrefectRest, wait_for
from mlops.local.simulate import DriftSpec
from mlops.local.traffic import send_labels, send_predictions, simulate_traffic
from mlops.registry import Registry
from mlops.serving.host import choose_default

T0 = time.monotonic()
# A new customer population: shorter tenure, higher charges, more month-to-month contracts and
# electronic checks. How features relate to the target (churn, or spend for configs/spend.yaml) is
# unchanged, so a model retrained on the new traffic can pass the quality gates; `--drift strong`
# (concept drift) also turns that relation round.
NEW_CUSTOMERS = DriftSpec(
    charges_shift=30.0, support_rate_factor=2.5, month_to_month_share=0.8, tenure_mean=12.0,
    electronic_check_share=0.55,
)


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def follow(prefect: PrefectRest, run_id: str, timeout: float = 900) -> dict:
    """Print each state of a run and of the subflows it starts, as they happen; return the run when it ends."""
    seen: dict[str, str] = {}
    flows: dict[str, str] = {}

    def report() -> dict | None:
        run = prefect.flow_run(run_id)
        for r in [run, *prefect.child_runs(run_id)]:
            if seen.get(r["id"]) != r["state_name"]:
                seen[r["id"]] = r["state_name"]
                flow = flows.setdefault(r["flow_id"], prefect.flow_name(r["flow_id"]))
                message = f": {r['state']['message']}" if r["state"].get("message") and r["state_type"] != "RUNNING" else ""
                say(f"    {flow + ' ' + r['name']:36s} {r['state_name']}{message}")
        return run if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") else None

    return wait_for(f"flow run {run_id}", report, timeout, every=2.0)


def keep_serving(client: httpx.Client, stop: threading.Event, config: PipelineConfig, seed: int) -> None:
    """Background traffic while the retrained model is deployed: the rollback watch judges it."""
    frame = simulate_traffic(config, 2000, NEW_CUSTOMERS, seed=seed, start="2026-06-01").features
    i = 0
    while not stop.is_set():
        send_predictions(client, frame.iloc[i:i + 10], batch_rows=10)
        i = (i + 10) % len(frame)
        stop.wait(0.2)


def second_model(prefect: PrefectRest, registry: Registry, serving: httpx.Client, config: PipelineConfig,
                 seed: int) -> None:
    """The catalogue's other model on the same stack: trained, promoted and answering at its own path."""
    name = config.model.name
    for flow in ("train", "deploy"):
        run = follow(prefect, prefect.start_run(flow, "manual", {"model": name, "watch_seconds": 0}
                                                if flow == "deploy" else {"model": name})["id"])
        if run["state_type"] != "COMPLETED":
            say(f"    {flow} of {name} ended {run['state_name']}; the first model's loop goes on")
            return
    champion = registry.version_by_alias(name, "champion")
    if champion is None:
        say(f"    {name} has no champion ({registry.read_audit(name)[-1].reason}); the first model's loop goes on")
        return
    traffic = simulate_traffic(config, 200, seed=seed, start="2026-06-01")
    sent = send_predictions(serving, traffic.features, batch_rows=20, model=name)
    answer = serving.post(f"/models/{name}/predict", json={"records": [traffic.features.iloc[0].to_dict()]}).json()
    say(f"    {name} v{champion.version} answers POST /models/{name}/predict: {len(sent.requests)} requests, "
        f"{sent.failed} failed; first row {config.dataset.target} = {answer['predictions'][0]:.2f}")


def main() -> int:
    settings = Settings()
    catalogue = load_catalogue(settings.catalogue_dir)
    # The loop is shown on the default model of /predict (MLOPS_DEFAULT_MODEL, else the config with
    # serving.default: true); every other model is brought up beside it. Without a default, the
    # first by name: the demo shows one model's loop and says which.
    configs = [entry.config for entry in catalogue.entries.values()]
    name = choose_default(configs, settings.default_model)[0] or next(iter(catalogue.entries))
    config = catalogue.get(name).config
    others = [entry.config for entry in catalogue.entries.values() if entry.name != name]
    prefect = PrefectRest(settings.local_prefect_url)
    registry = Registry(settings.local_mlflow_url)
    serving = httpx.Client(base_url=f"http://{settings.stack_host}:{settings.serving_port}", timeout=60)
    ui = settings.local_prefect_url.removesuffix("/api")
    seed = int(time.time()) % 10_000  # fresh traffic on every demo run

    say(f"1/6 train/manual: validate {config.dataset.uri}, train, evaluate, register a challenger")
    run = follow(prefect, prefect.start_run("train", "manual", {"model": name})["id"])
    if run["state_type"] != "COMPLETED":
        say(f"train ended {run['state_name']}: see {ui}/runs/flow-run/{run['id']}")
        return 1
    latest = registry.list_versions(name)[-1]
    say(f"    registered {name} v{latest.version}: {latest.tags.get('metrics', '')}")

    say("2/6 deploy/manual: challenger vs champion on one holdout, staging smoke test, promotion")
    run = follow(prefect, prefect.start_run("deploy", "manual", {"model": name, "watch_seconds": 0})["id"])
    champion = registry.version_by_alias(name, "champion")
    last = registry.read_audit(name)[-1]
    say(f"    {last.action} v{last.to_version}: {last.reason}")
    if champion is None:
        say(f"no champion to serve, so the loop cannot go on (`mlops history --model {name}`)")
        return 1
    say(f"    champion is v{champion.version}")

    def serving_champion() -> str | None:
        ready = serving.get("/ready").json()
        return (ready.get("models", {}).get("champion") or {}).get("version")

    wait_for("the serving app to load the champion", lambda: serving_champion() == champion.version, 120)
    say(f"3/6 serving: v{champion.version} answers; sending 500 rows of ordinary traffic")
    calm = simulate_traffic(config, 500, seed=seed, start="2026-06-01")
    sent = send_predictions(serving, calm.features, batch_rows=20)
    say(f"    {len(sent.requests)} requests answered by v{', v'.join(sorted(sent.versions))}, {sent.failed} failed")
    for other in others:
        say(f"3b  the catalogue's other model, {other.model.name} ({other.model.task}): train/manual, deploy/manual")
        second_model(prefect, registry, serving, other, seed)

    drift_start = datetime.now(UTC)
    say("4/6 the customers change: 4000 rows of drifted traffic, then their ground truth (labels)")
    drifted = simulate_traffic(config, 4000, NEW_CUSTOMERS, seed=seed + 1, start="2026-06-02")
    sent = send_predictions(serving, drifted.features, batch_rows=100)
    labelled = send_labels(serving, sent, drifted.labels)
    logged = serving.get("/ready").json()["prediction_log"]["written_rows"]
    wait_for("the prediction log", lambda: serving.get("/ready").json()["prediction_log"]["written_rows"] >= logged + 1, 30)
    say(f"    {sent.rows} rows predicted and logged, {labelled} labels posted")

    say(f"5/6 monitor/scheduled (the model's own schedule; started now) on the traffic since {drift_start:%H:%M:%S} UTC")
    # The window is anchored at the drifted traffic: "the last N minutes" measured when the run
    # starts missed it whenever the run waited for a busy worker.
    run = follow(prefect, prefect.start_run("monitor", "scheduled",
                                            {"model": name, "window_start": drift_start.isoformat()})["id"])
    if run["state_type"] != "COMPLETED":
        say(f"monitor ended {run['state_name']}: see {ui}/runs/flow-run/{run['id']}")
        return 1
    if run["state_name"] == "NoVerdict":
        say(f"    no verdict: fewer logged rows since the drifted traffic than monitoring.min_rows; "
            f"the loop did not close: see {ui}/runs/flow-run/{run['id']}")
        return 1
    try:
        # The run emits its event before it ends; the server stores it a moment later.
        event = wait_for("the monitor's event", lambda: (
            prefect.events(DRIFT_DETECTED, drift_start) + prefect.events(PERFORMANCE_DEGRADED, drift_start)
        ), 20)[0]
    except TimeoutError:
        say(f"    the monitor found no breach in {sent.rows} drifted rows, so no event and no retrain: the loop "
            f"did not close (see the drift report: {ui}/runs/flow-run/{run['id']})")
        return 1
    payload = event["payload"]
    say(f"    {event['event']} for {event['resource']['prefect.resource.id']}: drift share "
        f"{payload.get('drift_share')}, drifted {', '.join(payload.get('drifted_columns', []))}")

    say("6/6 automation: retrain/on-drift is started by that event (no one presses a button)")
    retrain = wait_for("the automation's retrain run", lambda: [
        r for r in prefect.runs_of("retrain", "on-drift")
        if (r["parameters"].get("trigger") or {}).get("event_id") == event["id"]
    ], 120)[0]
    started = datetime.fromisoformat(retrain["created"])
    say(f"    {retrain['name']} created {(started - datetime.fromisoformat(event['occurred'])).total_seconds():.1f}s "
        f"after the event, with the event as its `trigger` parameter")
    stop = threading.Event()
    background = threading.Thread(target=keep_serving, args=(serving, stop, config, seed + 2), daemon=True)
    background.start()
    try:
        run = follow(prefect, retrain["id"])
    finally:
        stop.set()
        background.join(timeout=10)
    for artifact in prefect.artifacts_of(retrain["id"]):
        if artifact["key"] and artifact["key"].startswith("retrain-"):
            say(f"    retrain result: {artifact['description']}")
    champion = registry.version_by_alias(name, "champion")
    wait_for("the serving app to swap", lambda: serving_champion() == champion.version, 60)
    say(f"    serving now answers with v{champion.version}")
    say(f"Prefect UI: {ui}   MLflow UI: {settings.local_mlflow_url}   audit: mlops history --model {name}   models: mlops catalogue")
    return 0 if run["state_type"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
