"""Everything works against an MLflow tracking server over HTTP, not only the local store."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from forecast.cli import main
from tests.test_experiment import TINY


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> bool:
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


@pytest.fixture
def mlflow_server(tmp_path, empty_store):
    """`mlflow server` on 127.0.0.1: sqlite backend, artifacts proxied into tmp_path."""
    shutil.copyfile(empty_store, tmp_path / "server.db")
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Without the GenAI job executor, which tracking never uses: it starts 10 s sooner.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its worker processes go with it at the end
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(url, server):
            output = (tmp_path / "server.log").read_text()[-2000:]
            pytest.fail(f"mlflow server did not start: {output}")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


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
