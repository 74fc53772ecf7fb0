"""prefect.yaml as a user runs it: a real Prefect server (its own PREFECT_HOME), the process
work pool, `prefect deploy --all` from the repository root, then a real process worker that
runs the build-dataset deployment (round 0 of a tiny campaign) and the al-round deployment
(round 1), started with `prefect deployment run`. The server and the worker are stopped
whatever happens."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from flows_fixtures import tiny_config, tiny_data

from clickpose.campaign import ledger
from storage import Datasets, ModelRegistry, open_store

ROOT = Path(__file__).resolve().parent.parent
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
POOL = SPEC["deployments"][0]["work_pool"]["name"]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Server:
    api: str           # http://127.0.0.1:PORT/api
    env: dict          # the environment every prefect command of the test runs with
    folder: Path       # PREFECT_HOME, logs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_env(folder: Path, port: int) -> dict:
    """The user's environment without any Prefect setting, then this server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",     # pick a new run up within a second
        "CLICKPOSE_WORK": str(folder / "work"),
        "OMP_NUM_THREADS": "1",
        "PWD": str(ROOT),                        # prefect.yaml's pull step: {{ $PWD }}
        "COLUMNS": "250",                        # CLI tables and ids on one line
    })
    return env


def _start(args: list[str], server_env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    """A prefect command in its own process group (so that its children stop with it)."""
    return subprocess.Popen([sys.executable, "-m", "prefect", *args], env=server_env, cwd=cwd,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


def _stop_flow_runs(api: str) -> None:
    """Flow-run processes the worker started for this server (it may start them in their own
    session, out of reach of the worker's group): found by their environment, then killed."""
    marks = (f"PREFECT_API_URL={api}".encode(), b"PREFECT__FLOW_RUN_ID=")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(any(v.startswith(m) for v in environ) for m in marks) \
                and int(proc.name) != os.getpid():
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() \
        else f"({path} not written)"


def _prefect(server: Server, *args: str, timeout: float = 240) -> str:
    """Run a prefect CLI command from the repository root; its output, or the failure."""
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args],
                          env=server.env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def _wait_healthy(api: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout:.0f} s:\n{_tail(log)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = _prefect_env(folder, port)
    log = folder / "server.log"
    process = _start(["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log,
                     folder)
    try:
        _wait_healthy(env["PREFECT_API_URL"], process, log, timeout=180)
        yield Server(env["PREFECT_API_URL"], env, folder)
    finally:
        _stop(process)


def _deployments(server: Server) -> dict[str, dict]:
    found = httpx.post(f"{server.api}/deployments/filter", json={}, timeout=30)
    found.raise_for_status()
    return {d["name"]: d for d in found.json()}


@pytest.fixture(scope="module")
def pool(server):
    _prefect(server, "work-pool", "create", POOL, "--type", "process")
    return POOL


@pytest.fixture(scope="module")
def worker(server, pool):
    """`prefect worker start --pool POOL`, one flow run at a time; stopped at the end."""
    log = server.folder / "worker.log"
    process = _start(["worker", "start", "--pool", pool, "--limit", "1"], server.env, log,
                     server.folder)
    try:
        yield process, log
    finally:
        _stop(process)
        _stop_flow_runs(server.api)


@pytest.fixture(scope="module")
def deployed(server, pool, worker):
    """`prefect deploy --all` from the repository root, as the README says (the worker is
    already starting, as it would be in a team's setup)."""
    output = _prefect(server, "deploy", "--all")
    assert output.count("successfully created") == 3, output
    return _deployments(server)


def test_deploy_all_creates_the_three_deployments(server, deployed):
    pool = httpx.get(f"{server.api}/work_pools/{POOL}", timeout=30).json()
    assert pool["type"] == "process"
    spec = {d["name"]: d for d in SPEC["deployments"]}
    assert set(deployed) == set(spec) == {"build-dataset", "al-round", "adapt-keypoints"}
    flows = {f["id"]: f["name"] for f in
             httpx.post(f"{server.api}/flows/filter", json={}, timeout=30).json()}
    assert {n: flows[d["flow_id"]] for n, d in deployed.items()} == {
        "build-dataset": "al-campaign", "al-round": "al-round",
        "adapt-keypoints": "adapt-keypoints"}
    for name, d in deployed.items():
        assert d["entrypoint"] == spec[name]["entrypoint"]
        assert d["work_pool_name"] == POOL and d["work_queue_name"] == "default"
        assert d["parameters"] == spec[name]["parameters"]
        # The worker runs the flows from the folder `prefect deploy` ran in.
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory":
                                    {"directory": str(ROOT)}}]
    schedules = deployed["build-dataset"]["schedules"]
    assert len(schedules) == 1 and schedules[0]["active"] is False
    assert schedules[0]["schedule"]["cron"] == "0 2 * * *"
    assert schedules[0]["schedule"]["timezone"] == "UTC"
    assert deployed["al-round"]["schedules"] == deployed["adapt-keypoints"]["schedules"] == []
    # An inactive schedule creates no runs.
    runs = httpx.post(f"{server.api}/flow_runs/filter", timeout=30, json={
        "deployments": {"id": {"any_": [deployed["build-dataset"]["id"]]}}}).json()
    assert runs == []


def _run_deployment(server: Server, name: str, *args: str) -> str:
    """`prefect deployment run NAME ARGS...`; returns the flow run's id."""
    output = _prefect(server, "deployment", "run", name, *args)
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def _wait_for_run(server: Server, run_id: str, worker_log: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{server.api}/flow_runs/{run_id}", timeout=30).json()
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} still {run['state_type']} after {timeout:.0f} s;"
                         f" worker log:\n{_tail(worker_log)}")


def _run_logs(server: Server, run_id: str, wanted: str, timeout: float = 30) -> str:
    """The flow run's log messages, once `wanted` is among them (the run's process sends its
    last lines in the background, so they may arrive after its final state)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = httpx.post(f"{server.api}/logs/filter", timeout=30, json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
        text = "\n".join(entry["message"] for entry in logs)
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


def _create_run(server: Server, deployment: dict, parameters: dict) -> str:
    """What `prefect deployment run` does, through the REST API. A busy SQLite server
    answers 503 for a moment; Prefect's own client retries those, and so does this."""
    for attempt in range(5):
        created = httpx.post(f"{server.api}/deployments/{deployment['id']}/create_flow_run",
                             json={"parameters": parameters}, timeout=30)
        if created.status_code not in (429, 503):
            break
        time.sleep(2 * (attempt + 1))
    created.raise_for_status()
    return created.json()["id"]


def test_worker_runs_build_dataset_then_al_round(server, deployed, worker, tmp_path):
    process, worker_log = worker
    data = tiny_data(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, name="deployed", rounds=0)
    config = cfg.model_dump(mode="json")
    # Round 0 (seed labels, first model): the scheduled deployment, run now.
    first = _create_run(server, deployed["build-dataset"], {"config": config, "publish": False})
    run = _wait_for_run(server, first, worker_log, timeout=300)
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{_tail(worker_log)}"
    # Round 1: score, choose, annotate (simulated), import, retrain, evaluate, register.
    second = _run_deployment(server, "al-round/al-round", "--param", "round_index=1",
                             "--params", json.dumps({"config": config}))
    run = _wait_for_run(server, second, worker_log, timeout=300)
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{_tail(worker_log)}"
    assert process.poll() is None, f"the worker stopped:\n{_tail(worker_log)}"

    assert run["deployment_id"] == deployed["al-round"]["id"]
    assert run["work_pool_name"] == POOL and run["parameters"]["round_index"] == 1
    assert run["parameters"]["task_runner"] == "threads"   # the deployment's default, kept
    logs = _run_logs(server, second, "round 1: 7 labeled (+3)")
    assert "Deployment step 'set_working_directory' completed successfully" in logs
    assert "round 1: 7 labeled (+3)" in logs, logs

    store = open_store(cfg.store)
    state = ledger.read_campaign(store, "deployed")
    assert sorted(state.rounds) == [0, 1]
    assert state.rounds[1]["new_images"] == 3 and state.rounds[1]["labeled_images"] == 7
    datasets = Datasets(store)
    assert datasets.versions("deployed") == [1, 2, 3]     # pool, round 0, round 1
    latest = datasets.latest("deployed")
    picked = [e["image"] for e in datasets.selection(latest, 1)]
    assert len(picked) == 3 and all(key.startswith("pool/") for key in picked)
    assert state.rounds[1]["clicks"] == sum(r["clicks"] for r in datasets.annotations(latest, 1))
    models = ModelRegistry(store).list()
    assert [m.config["campaign"]["round"] for m in models] == [0, 1]
    assert models[1].parent == models[0].id
    report = store.get_bytes("reports/deployed/report.md").decode()
    assert f"| 1 | 7 | 3 | {state.rounds[1]['clicks']} |" in report
    assert (Path(cfg.work) / "round-001" / "train" / "DONE.json").is_file()
