"""Everything works against an MLflow tracking server over HTTP, not only the local store; and
when the server is not there, or goes away during a sweep, the user reads one line."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from forecast.cli import main
from tests.test_experiment import TINY
from tests.test_sweep import set_args

MLFLOW = str(Path(sys.executable).parent / "mlflow")
FORECAST = str(Path(sys.executable).parent / "forecast")
# Seconds a server may take to answer after it starts: ~15 s on 2 idle cores, far more loaded.
SERVER_START = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float = SERVER_START) -> bool:
    """Whether the MLflow server at ``url`` answers its health check before it exits or
    ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


@contextlib.contextmanager
def mlflow_server_process(
    folder: Path, port: int, *options: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """`mlflow server` on 127.0.0.1:``port`` with ``options``, its store ``folder``/server.db,
    its artifacts proxied into ``folder``/artifacts; yields the process once it answers, and
    stops it (if still running) at the end."""
    log_path = folder / f"server-{port}.log"
    with open(log_path, "a") as log:
        server = subprocess.Popen(
            [
                MLFLOW,
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'server.db'}",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Without the GenAI job executor, which tracking never uses: it starts 10 s sooner.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
            start_new_session=True,  # its worker processes go with it at the end
        )
        try:
            if not wait_until_healthy(f"http://127.0.0.1:{port}", server):
                pytest.fail(f"mlflow server did not start: {log_path.read_text()[-2000:]}")
            yield server
        finally:
            stop(server)


def stop(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End ``server`` and the processes of its session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture
def mlflow_server(tmp_path, empty_store):
    """`mlflow server` on 127.0.0.1: sqlite backend, artifacts proxied into tmp_path."""
    shutil.copyfile(empty_store, tmp_path / "server.db")
    port = free_port()
    with mlflow_server_process(tmp_path, port):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.processes
def test_a_sweep_logs_to_a_tracking_server_and_reads_back(mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    overrides = [*TINY, "task.gaps=[2]"]  # a parent and two trials
    assert main(["run", "sine_long_gap", *[arg for o in overrides for arg in ("--set", o)]]) == 0

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "summary.csv", "ratio_vs_gap.png"} <= artifacts
    # The artifacts went through the server into its destination, not into the working dir.
    assert any((tmp_path / "artifacts").rglob("ratio_vs_gap.png"))
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "sine_long_gap", *set_args(TINY)],
        ["runs"],
        ["compare"],
        ["compare", "--run", "0a1b2c"],
    ],
    ids=["run", "runs", "compare", "compare-run"],
)
def test_a_closed_port_is_one_line_at_once(argv, monkeypatch, tmp_path, capsys):
    port = free_port()  # nothing listens there once the probe is closed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - start < 30  # not MLflow's minutes of retries
    captured = capsys.readouterr()
    assert captured.err == (
        f"forecast: error: MLflow tracking server http://127.0.0.1:{port} is not reachable: "
        "[Errno 111] Connection refused\n"
    )
    assert not any(tmp_path.iterdir())  # nothing written


def sweep_command(*overrides: str) -> list[str]:
    """`forecast run` of a tiny sweep of 8 trials (2 gaps, 2 seeds, 2 models), a few seconds
    each."""
    return [FORECAST, "run", "sine_long_gap", *set_args([*TINY, "seeds=[0, 1]", *overrides])]


@pytest.mark.processes
def test_a_server_that_dies_mid_sweep_stops_it_in_one_line_and_it_resumes(tmp_path, empty_store):
    shutil.copyfile(empty_store, tmp_path / "server.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # One try per request: MLflow's default retries a dead server for about 4 minutes first.
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with mlflow_server_process(tmp_path, port) as server:
        sweep = subprocess.Popen(
            sweep_command(),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Once a trial has finished, the sweep has more to log: the server dies.
            client = MlflowClient(url)
            deadline = time.monotonic() + 300
            while not _finished_trials(client) and sweep.poll() is None:
                assert time.monotonic() < deadline, "no trial finished in 300 s"
                time.sleep(0.2)
            assert sweep.poll() is None, "the sweep ended before the server could die"
            stop(server, signal.SIGKILL)
            _, stderr = sweep.communicate(timeout=300)
        finally:
            if sweep.poll() is None:
                sweep.kill()
    assert sweep.returncode == 2
    assert "Traceback" not in stderr
    # The server dies between two requests (refused) or during one (closed or reset: one reason).
    reasons = ("[Errno 111] Connection refused", "it closed the connection without answering")
    assert stderr.splitlines()[-1] in [
        f"forecast: error: MLflow tracking server {url} is not reachable: {reason}; the sweep "
        "stopped, and the same command resumes it"
        for reason in reasons
    ]
    assert sum(line.startswith("forecast:") for line in stderr.splitlines()) == 1

    # Back on the same store and address, the same command resumes the sweep and ends every
    # run the dead server left RUNNING.
    with mlflow_server_process(tmp_path, port):
        rerun = subprocess.run(
            sweep_command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "resuming run" in rerun.stdout
        runs = MlflowClient(url).search_runs(
            [MlflowClient(url).get_experiment_by_name("sine_long_gap").experiment_id]
        )
    assert "RUNNING" not in {run.info.status for run in runs}
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert [run.info.status for run in parents] == ["FINISHED"]  # the same run, reopened
    trials = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    finished = {r.data.tags["forecast.trial_hash"] for r in trials if r.info.status == "FINISHED"}
    assert len(finished) == 8


def _finished_trials(client: MlflowClient) -> bool:
    """Whether the store behind ``client`` holds a finished trial of sine_long_gap."""
    experiment = client.get_experiment_by_name("sine_long_gap")
    if experiment is None:
        return False
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.mlflow.parentRunId != '' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return bool(runs)


URI = "http://mlflow-host:5000"


def mlflow_refusal(status: int, body: str) -> Exception:
    """What MLflow's client raises for a refused request, with a body that is not JSON."""
    from mlflow.exceptions import MlflowException, get_error_code

    return MlflowException(
        f"API request to endpoint /api/2.0/mlflow/runs/create failed with error code {status} "
        f"!= 200. Response body: '{body}'",
        error_code=get_error_code(status),
    )


def connection_refused(url: str, refused: OSError | None = None) -> Exception:
    """What MLflow's client raises when nothing listens at ``url`` (or, with ``refused``, when
    the connection fails so): a chain of exceptions."""
    import requests
    from mlflow.exceptions import MlflowException

    refused = refused or ConnectionRefusedError(111, "Connection refused")
    connection = requests.ConnectionError(refused, request=requests.Request("POST", url).prepare())
    connection.__context__ = refused
    error = MlflowException(f"API request to {url} failed with exception {connection}")
    error.__context__ = connection  # as MLflow raises it, within `except`
    return error


@pytest.mark.parametrize(
    "error, user, line",
    [
        (
            mlflow_refusal(401, "You are not authenticated."),
            None,
            "needs a login (401 Unauthorized): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to your account on it",
        ),
        (
            mlflow_refusal(401, "You are not authenticated."),
            ("alice", "wrong"),
            "refused the login of user 'alice' (401 Unauthorized): check "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ),
        (
            mlflow_refusal(403, "Invalid Host header - possible DNS rebinding attack detected"),
            None,
            "refused this host name (403 Invalid Host header); start it with --allowed-hosts "
            "mlflow-host:5000",
        ),
        (
            mlflow_refusal(403, "Permission denied"),
            ("bob", "secret-password"),
            "denied user 'bob' this request (403 Permission denied): the experiment's owner or "
            "the server's admin can grant EDIT on it",
        ),
        (
            mlflow_refusal(403, "<html><h1>403  Forbidden</h1></html>"),
            None,
            "refused this client (403 Forbidden): <html><h1>403 Forbidden</h1></html>",
        ),
        (
            connection_refused(f"{URI}/api/2.0/mlflow/runs/create"),
            None,
            "is not reachable: [Errno 111] Connection refused",
        ),
        (  # a server killed while it answers
            connection_refused(
                f"{URI}/api/2.0/mlflow/runs/log-batch",
                ConnectionResetError(104, "Connection reset by peer"),
            ),
            None,
            "is not reachable: it closed the connection without answering",
        ),
    ],
    ids=["no-login", "wrong-login", "host", "permission", "proxy", "refused", "reset"],
)
def test_a_server_failure_reads_as_one_line(error, user, line, monkeypatch, tmp_path):
    from forecast.tracking import server_failure

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of this machine
    for name, value in zip(
        ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), user or (None, None), strict=True
    ):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert str(server_failure(error, URI)) == f"MLflow tracking server {URI} {line}"
    # Wrapped as a worker's re-raise or Ray's task error leaves it.
    try:
        raise RuntimeError("while recording") from error
    except RuntimeError as wrapped:
        assert str(server_failure(wrapped, URI)) == f"MLflow tracking server {URI} {line}"


def test_other_errors_are_not_the_servers():
    from forecast.tracking import server_failure

    assert server_failure(ValueError("bad window"), URI) is None
    # A data file fetched from another host fails for its own reasons.
    assert server_failure(connection_refused("http://data.example.com/x.csv"), URI) is None
    # A local store has no server.
    assert server_failure(mlflow_refusal(403, "Permission denied"), "sqlite:///m.db") is None


def test_a_ray_task_error_reads_as_its_cause():
    ray_exceptions = pytest.importorskip("ray.exceptions")
    from forecast.tracking import ServerError, server_failure

    cause = ServerError(f"MLflow tracking server {URI} is not reachable: [Errno 111] x")
    error = ray_exceptions.RayTaskError("execute_trial", "Traceback\n...", cause)
    assert server_failure(error.as_instanceof_cause(), URI) is cause
