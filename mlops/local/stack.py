"""The local stack: Prefect server, MLflow server, a worker and the serving app as background processes.

`make up` / `make down` and the test fixtures share this module, so the tests exercise exactly
what users run. Each service runs in its own process group (so stopping it stops its children
too), logs to <home>/logs/<name>.log and records its pid in <home>/run/<name>.pid.

The servers always start. The closed loop needs the project around them: with a feature
repository (MLOPS_FEATURE_REPO) its definitions are applied; with a prefect.yaml
(MLOPS_PREFECT_FILE) the deployments are registered and a worker polls the process pool; with a
model catalogue directory (MLOPS_CATALOGUE) the serving app serves every model's champion. Outside
a project checkout those are reported as skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlops.config import Settings
from mlops.errors import ConfigError
from mlops.progress import LIBRARY_WARNINGS_ENV


@dataclass
class Service:
    """A server process we start, wait for and stop."""

    name: str
    command: list[str]
    health_url: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for test fixtures)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    """True when `url` answers 2xx: the cheap probe the CLI uses to find a running stack."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _bin(name: str) -> str:
    # The console scripts live beside the interpreter running us (the project venv).
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _option(name: str, value: object) -> str:
    """`--name=value`: one token, so a setting that starts with '-' (a host, a path, a URI from the
    environment) is read as the option's value, never as another option; argparse refuses
    `--host -x` and Click takes the next token whatever it is."""
    return f"{name}={value}"


def prefect_service(home: Path, host: str, port: int, database_url: str | None = None) -> Service:
    """A Prefect server with its services (events, automations) in-process.

    Its database is SQLite in `home` unless `database_url` names another one, such as
    postgresql+asyncpg://user@db:5432/prefect for a team's shared server (migrated on start).
    """
    prefect_home = home / "prefect"
    service = Service(
        name="prefect",
        command=[_bin("prefect"), "server", "start", _option("--host", host), _option("--port", port)],
        health_url=f"http://{host}:{port}/api/health",
        url=f"http://{host}:{port}",
        env={
            "PREFECT_HOME": str(prefect_home.resolve()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_API_URL": f"http://{host}:{port}/api",
        },
    )
    if database_url:
        service.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return service


def mlflow_service(home: Path, host: str, port: int) -> Service:
    """An MLflow tracking server on the same SQLite store and artifact folder as embedded mode.

    Artifacts are plain local paths (no proxying), so a run logged while the stack was down and
    one logged through the server are readable either way on this machine.
    """
    home = home.resolve()
    return Service(
        name="mlflow",
        command=[
            _bin("mlflow"), "server",
            _option("--host", host), _option("--port", port),
            _option("--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"),
            _option("--default-artifact-root", (home / "mlartifacts").as_uri()),
            "--no-serve-artifacts",
            "--workers", "1",
        ],
        health_url=f"http://{host}:{port}/health",
        url=f"http://{host}:{port}",
        env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
    )


def mlflow_server_service(
    host: str, port: int, backend_uri: str, artifacts_destination: str,
    allowed_hosts: str | None = None, s3_endpoint_url: str | None = None,
) -> Service:
    """An MLflow tracking server for a team: a database backend store and proxied artifacts.

    Clients send artifacts through the server (`mlflow-artifacts:/`), so only the server needs
    credentials for `artifacts_destination` (s3://bucket/prefix on AWS, MinIO or any S3 store).
    The backend URI travels in the environment, keeping a database password out of `ps`.
    MLflow 3 refuses requests whose Host header it does not know: a server reached by a name
    other than localhost needs that name in `allowed_hosts` (comma-separated, `host:*` allowed).
    """
    command = [
        _bin("mlflow"), "server",
        _option("--host", host), _option("--port", port),
        "--serve-artifacts", _option("--artifacts-destination", artifacts_destination),
        "--workers", "1",
    ]
    if allowed_hosts:
        command += [_option("--allowed-hosts", allowed_hosts)]
    env = {"MLFLOW_BACKEND_STORE_URI": backend_uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    if s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint_url  # MLflow's own boto3 reads this, not AWS_ENDPOINT_URL
    return Service(
        name="mlflow", command=command, health_url=f"http://{host}:{port}/health", url=f"http://{host}:{port}", env=env,
    )


def _mlflow(settings: Settings) -> Service:
    """The team server when MLOPS_MLFLOW_BACKEND_URI and an artifacts destination are set, else the local one."""
    if settings.mlflow_backend_uri or settings.mlflow_artifacts_destination:
        if not (settings.mlflow_backend_uri and settings.mlflow_artifacts_destination):
            raise ConfigError(
                "MLOPS_MLFLOW_BACKEND_URI and MLOPS_MLFLOW_ARTIFACTS_DESTINATION go together: set both or neither"
            )
        return mlflow_server_service(
            settings.stack_host, settings.mlflow_port, settings.mlflow_backend_uri,
            settings.mlflow_artifacts_destination, settings.mlflow_allowed_hosts, settings.s3_endpoint_url,
        )
    return mlflow_service(settings.home, settings.stack_host, settings.mlflow_port)


def local_services(settings: Settings) -> list[Service]:
    """The two servers every local run can use."""
    return [
        prefect_service(settings.home, settings.stack_host, settings.prefect_port, settings.prefect_database_url),
        _mlflow(settings),
    ]


# The process work pool prefect.yaml deploys to.
WORK_POOL = "local-process"


def _stack_env(settings: Settings) -> dict[str, str]:
    """What a worker's flow runs and the serving app need to find the stack's servers and state."""
    return {
        "PREFECT_API_URL": settings.local_prefect_url,
        "MLFLOW_TRACKING_URI": settings.local_mlflow_url,
        "MLOPS_HOME": str(settings.home.resolve()),
        # The worker log and the serving log are read by people who cannot act on a library's
        # deprecation warning; an explicit PYTHONWARNINGS in the caller's environment wins.
        "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS") or LIBRARY_WARNINGS_ENV,
    }


def worker_service(settings: Settings, project: Path) -> Service:
    """A process worker on WORK_POOL polling every MLOPS_WORKER_POLL_SECONDS (Prefect's default is 10 s).

    The poll interval is most of the delay between a drift event and its retrain starting.
    """
    host, port = settings.stack_host, settings.worker_port
    return Service(
        name="worker",
        command=[_bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process",
                 "--name", f"mlops-local-{port}", "--with-healthcheck"],
        health_url=f"http://{host}:{port}/health",
        url=f"pool {WORK_POOL}",
        env={
            **_stack_env(settings),
            "PREFECT_WORKER_QUERY_SECONDS": f"{settings.worker_poll_seconds:g}",
            "PREFECT_WORKER_WEBSERVER_HOST": host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        },
        cwd=project,
    )


def serving_service(settings: Settings, project: Path, catalogue: Path) -> Service:
    """The serving app (`python -m mlops.serving`) for every model of the `catalogue` directory."""
    host, port = settings.stack_host, settings.serving_port
    return Service(
        name="serving",
        command=[sys.executable, "-m", "mlops.serving", _option("--catalogue", catalogue), _option("--host", host),
                 _option("--port", port)],
        health_url=f"http://{host}:{port}/health",
        url=f"http://{host}:{port}",
        env=_stack_env(settings),
        cwd=project,
    )


def _in_project(project: Path, path: Path) -> Path:
    return path if path.is_absolute() else project / path


def loop_services(settings: Settings, project: Path) -> list[tuple[Service, str | None]]:
    """Worker and serving app, each with the reason it is skipped (None when it runs)."""
    prefect_file = _in_project(project, settings.prefect_file)
    catalogue = _in_project(project, settings.catalogue_dir)
    return [
        (worker_service(settings, project), None if prefect_file.is_file() else f"skipped: no {prefect_file}"),
        (serving_service(settings, project, catalogue), None if catalogue.is_dir() else f"skipped: no {catalogue}"),
    ]


def all_services(settings: Settings, project: Path) -> list[Service]:
    return [*local_services(settings), *(service for service, _ in loop_services(settings, project))]


def _run(command: list[str], env: dict[str, str], cwd: Path, what: str, timeout: float = 600) -> None:
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {tail[0]}")


def deploy_flows(settings: Settings, project: Path) -> list[str]:
    """Create the process pool if needed, register every deployment in the prefect file and set
    on them what the catalogue decides (model choices, per-model schedules); report what was set
    and every catalogue file that was refused (the other models come up regardless)."""
    prefect_file = _in_project(project, settings.prefect_file).resolve()
    # prefect.yaml's pull step reads {{ $PWD }}; a child started with cwd= keeps the parent's PWD.
    env = {**os.environ, **_stack_env(settings), "PWD": str(project.resolve())}
    _run([_bin("prefect"), "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"], env, project,
         f"creating work pool {WORK_POOL}")
    _run([_bin("prefect"), "--no-prompt", "deploy", "--all", _option("--prefect-file", prefect_file)], env, project,
         f"prefect deploy --all ({prefect_file})")
    apply_automations(settings, project)
    from mlops.local.notifications import apply_notifications

    webhook = settings.notify_webhook_url.get_secret_value() if settings.notify_webhook_url else None
    told = apply_notifications(settings.local_prefect_url, _in_project(project, settings.notifications_file), webhook)
    return [*sync_deployments(settings, project), told]


def apply_features(settings: Settings, project: Path) -> str:
    """Register the feature repository's definitions (MLOPS_FEATURE_REPO); one line saying what happened.

    A repository that fails to apply is reported, never raised: the store-fed models cannot train
    or serve until it applies, but the other models' loop must still come up.
    """
    repo = _in_project(project, settings.feature_repo)
    if not (repo / "feature_store.yaml").is_file():
        return f"features: skipped: no {repo / 'feature_store.yaml'}"
    from mlops import features

    try:
        applied = features.apply_repo(features.open_store(repo, settings.home), repo)
    except Exception as error:  # whatever a broken repository raises (Feast, its definitions): see above
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
        return (f"features: apply FAILED ({repo}): {reason}; the rest of the stack is up: "
                "fix it and run `mlops features apply` (or `make up`) again")
    views, services = applied["feature_views"], applied["feature_services"]
    deleted = f"; removed {', '.join(applied['deleted'])}" if applied["deleted"] else ""
    return (f"features: applied {repo}: {len(views)} feature views ({', '.join(views)}), "
            f"{len(services)} feature services ({', '.join(services) or 'none'}){deleted}")


def sync_deployments(settings: Settings, project: Path) -> list[str]:
    """Apply the catalogue to the deployed flows; one line per fact or refused file."""
    from mlops.catalogue import load_catalogue
    from mlops.local.catalogue_sync import sync_catalogue
    from mlops.local.prefect_rest import PrefectRest

    directory = _in_project(project, settings.catalogue_dir)
    if not directory.is_dir():
        return [f"catalogue: skipped: no {directory}"]
    catalogue = load_catalogue(directory)
    rest = PrefectRest(settings.local_prefect_url)
    try:
        report = sync_catalogue(rest, catalogue)
    finally:
        rest.close()
    lines = [f"catalogue: {len(catalogue.entries)} models: {', '.join(catalogue.names) or 'none'}"]
    lines += [f"catalogue: {line}" for line in report.lines()]
    lines += [f"catalogue: {'refused' if problem.refused else 'warning'}: {problem.message}" for problem in catalogue.problems]
    return lines


def apply_automations(settings: Settings, project: Path) -> list[str]:
    """Create the automations of MLOPS_AUTOMATIONS_FILE (if the project has one), replacing same-named ones."""
    path = _in_project(project, settings.automations_file)
    if not path.is_file():
        return []
    import yaml

    from mlops.local.prefect_rest import PrefectRest

    automations = (yaml.safe_load(path.read_text()) or {}).get("automations") or []
    rest = PrefectRest(settings.local_prefect_url)
    try:
        return [rest.apply_automation(automation) for automation in automations]
    finally:
        rest.close()


def _pid_file(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(home: Path, name: str) -> int | None:
    path = _pid_file(home, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


# Every process a stack starts carries its home here. Two stacks on one machine differ in home,
# so a process is this stack's only when its pid file is in this home AND its environment says
# so: a port answering proves nothing (another stack's worker answered on ours and was adopted),
# and a pid in a stale pid file may have been reused by any process.
STACK_MARKER = "MLOPS_STACK_HOME"


class PortTaken(ConfigError):
    """A port this stack needs is held by a process that is not this stack's own."""


def identity(service: Service, home: Path) -> dict[str, str]:
    """What a process of this stack's `service` has in its environment: the stack's home and,
    for processes that talk to Prefect (worker, serving app, the server), the API URL they use."""
    expected = {STACK_MARKER: str(home.resolve())}
    if "PREFECT_API_URL" in service.env:
        expected["PREFECT_API_URL"] = service.env["PREFECT_API_URL"]
    return expected


def is_own_process(environ: Mapping[str, str] | None, expected: Mapping[str, str]) -> bool:
    """True when a process's environment (None: unreadable or gone) carries every expected value."""
    return environ is not None and all(environ.get(key) == value for key, value in expected.items())


def process_environ(pid: int) -> dict[str, str] | None:
    """The environment `pid` was started with, from /proc; None when it is gone or not readable."""
    try:
        raw = Path("/proc", str(pid), "environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def own_pid(service: Service, home: Path) -> int | None:
    """The pid of this stack's running `service`, or None (no pid file, dead, or someone else's)."""
    pid = running_pid(home, service.name)
    if pid is None or not is_own_process(process_environ(pid), identity(service, home)):
        return None
    return pid


def _port_of(service: Service) -> tuple[str, int] | None:
    parsed = urllib.parse.urlsplit(service.health_url)
    return (parsed.hostname, parsed.port) if parsed.hostname and parsed.port else None


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts connections on host:port (whoever it is)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(service: Service, home: Path, timeout: float = 120.0) -> subprocess.Popen | None:
    """Start `service` unless this stack's own already runs; wait until its health URL answers.

    A port held by anything else is PortTaken (exit 2): adopting it would report as ours a
    process that runs another stack's deployments, or none.
    """
    if own_pid(service, home) is not None:
        _wait_healthy(service, home, timeout, None)
        return None
    address = _port_of(service)
    if address and (port_open(*address) or is_healthy(service.health_url)):
        raise PortTaken(
            f"{service.name}: port {address[1]} on {address[0]} is in use by a process that is not this stack's "
            f"(MLOPS_HOME {home.resolve()}): stop it, or give this stack another port"
        )
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "run").mkdir(parents=True, exist_ok=True)
    log = open(home / "logs" / f"{service.name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        service.command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **service.env, STACK_MARKER: str(home.resolve())},
        cwd=service.cwd,
        start_new_session=True,
    )
    log.close()
    _pid_file(home, service.name).write_text(str(proc.pid))
    _wait_healthy(service, home, timeout, proc)
    return proc


def _wait_healthy(service: Service, home: Path, timeout: float, proc: subprocess.Popen | None) -> None:
    """Wait until the service answers; a child that exits or never answers is a one-line error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {proc.returncode}; see {home / 'logs' / (service.name + '.log')}"
            )
        if is_healthy(service.health_url):
            return
        time.sleep(0.5)
    if proc is not None:
        stop_pid(proc.pid)
    raise RuntimeError(f"{service.name} did not become healthy within {timeout:.0f}s")


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """Stop a process group politely, then by force: no worker is left behind."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children first), read from /proc; [] where there is none."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name is in parentheses and may hold spaces: the parent pid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def stop_descendants(timeout: float = 5.0) -> list[int]:
    """Stop every process this one started (and theirs): SIGTERM, then SIGKILL after `timeout`.

    A command ended by a signal must not leave its temporary Prefect server behind: it holds
    the command's stdout open, so a caller reading to the end would wait for ever. Returns the pids.
    """
    pids = descendants(os.getpid())
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        alive = [pid for pid in pids if _signal(pid, sig)]
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if not _reaped(pid)]
            if alive:
                time.sleep(0.05)
        if not alive:
            break
    return pids


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reaped(pid: int) -> bool:
    """True once `pid` is gone (our own child is reaped here; another's is gone when it vanishes)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (ProcessLookupError, OSError):
        return True


def stop(service: Service, home: Path) -> bool:
    """Stop this stack's own `service`; True when it was running. A pid file whose process is not
    this stack's (the pid reused, or another stack's) is removed and nothing is signalled."""
    pid = own_pid(service, home)
    _pid_file(home, service.name).unlink(missing_ok=True)
    if pid is None:
        return False
    stop_pid(pid)
    return True


def up(
    settings: Settings, project: Path | None = None, notes: list[str] | None = None
) -> list[tuple[Service, str]]:
    """Start every service that is not already answering and deploy the flows; report each one's state.

    The feature repository is applied first (its one line opens `notes`), so that the deployed
    flows find its views; what deploying set from the catalogue (and which config files it
    refused) follows in `notes`.
    """
    project = (project or Path.cwd()).resolve()
    report = []
    for service in local_services(settings):
        proc = start(service, settings.home)
        report.append((service, "started" if proc else "already running"))
    applied = apply_features(settings, project)
    if notes is not None:
        notes.append(applied)
    for service, skipped in loop_services(settings, project):
        if skipped:
            report.append((service, skipped))
            continue
        if service.name == "worker":
            lines = deploy_flows(settings, project)
            if notes is not None:
                notes.extend(lines)
        proc = start(service, settings.home)
        report.append((service, "started" if proc else "already running"))
    return report


def down(settings: Settings, project: Path | None = None) -> list[tuple[Service, str]]:
    """Stop the serving app and the worker first, so no run starts against servers going away."""
    services = list(reversed(all_services(settings, (project or Path.cwd()).resolve())))
    return [(service, "stopped" if stop(service, settings.home) else "not running") for service in services]


STATE_UP, STATE_DOWN, STATE_NOT_OURS = "up", "down", "taken"


def service_state(service: Service, home: Path) -> str:
    """`up` when this stack's own process runs and answers; `taken` when its port is held by
    another process (another stack's worker, say); else `down`."""
    if own_pid(service, home) is not None:
        return STATE_UP if is_healthy(service.health_url) else STATE_DOWN
    address = _port_of(service)
    return STATE_NOT_OURS if address and port_open(*address) else STATE_DOWN


def status(settings: Settings, project: Path | None = None) -> list[tuple[Service, str]]:
    """State of the servers, and of the worker and serving app where this project runs them."""
    project = (project or Path.cwd()).resolve()
    expected = [*local_services(settings), *(s for s, skipped in loop_services(settings, project) if not skipped)]
    return [(s, service_state(s, settings.home)) for s in expected]
