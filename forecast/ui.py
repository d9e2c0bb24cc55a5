"""The MLflow UI: the address of a sweep's runs, and starting the UI on the local store.

MLflow 3's UI opens an experiment on its GenAI view (traces), where a sweep's runs do not show;
the addresses here lead straight to the runs, and to the compare view of a sweep's trials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from mlflow import MlflowClient

from forecast.results import recent_sweeps, sweep_trials
from forecast.tracking import TrackingError, is_local_store

DEFAULT_PORT = 5000


def ui_address(uri: str, port: int = DEFAULT_PORT) -> str:
    """Where the UI of the store at ``uri`` is served: a tracking server's own address, else
    the local one that ``forecast ui`` (or ``mlflow ui``) starts."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://127.0.0.1:{port}"


def sweep_address(uri: str, parent_run_id: str, port: int = DEFAULT_PORT) -> str:
    """The UI page comparing a sweep's trials side by side (MLflow's compare-runs view)."""
    experiment_id = MlflowClient(uri).get_run(parent_run_id).info.experiment_id
    trials = sweep_trials(uri, parent_run_id)
    run_ids = list(trials["run_id"]) if len(trials) else [parent_run_id]
    query = urllib.parse.urlencode(
        {
            "runs": json.dumps(run_ids, separators=(",", ":")),
            "experiments": json.dumps([experiment_id], separators=(",", ":")),
            "workflowType": "machine_learning",  # the UI's model-training side, not GenAI
        }
    )
    return f"{ui_address(uri, port)}/#/compare-runs?{query}"


def how_to_start(uri: str) -> str:
    """What serves the UI of the store at ``uri``: nothing to do for a tracking server."""
    if uri.startswith(("http://", "https://")):
        return ""
    if is_local_store(uri):
        return "start it with `make ui`"
    return f"start it with `mlflow ui --backend-store-uri {uri}`"


def experiment_address(uri: str, experiment_id: str, port: int = DEFAULT_PORT) -> str:
    """The runs table of an experiment (not the UI's default GenAI view)."""
    return (
        f"{ui_address(uri, port)}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )


def serve(uri: str, experiment: str | None = None, port: int = DEFAULT_PORT) -> int:
    """Run ``mlflow ui`` on the local store until Ctrl-C, after printing where to look: the
    runs of ``experiment`` (its latest sweep's comparison), or of the latest sweep of any.

    Raises:
        TrackingError: the store is a server (open its address instead) or has no such
            experiment.
    """
    if not is_local_store(uri):
        raise TrackingError(f"{uri} is not a local store; open its own UI instead")
    sweeps = recent_sweeps(uri, experiment, limit=1)
    if len(sweeps):
        run_id = sweeps["run_id"].iloc[0]
        experiment_id = MlflowClient(uri).get_run(run_id).info.experiment_id
        name = sweeps["experiment"].iloc[0]
        print(f"runs of {name}: {experiment_address(uri, experiment_id, port)}")
        print(f"its latest sweep, compared: {sweep_address(uri, run_id, port)}")
    else:
        print(f"no sweeps yet; the UI: {ui_address(uri, port)}")
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # One local user: MLflow's default of 4 workers each import the server, several
        # seconds of CPU apiece on a small machine, for no gain.
        "--workers",
        "1",
    ]
    # MLflow's job executor runs GenAI jobs (LLM judges), which a sweep's runs never use; off,
    # the UI answers in about 7 s instead of 17 s on 2 cores. Set the variable to keep it.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    server = subprocess.Popen(command, env=env)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
        return 0
