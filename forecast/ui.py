"""The MLflow UI: the address of a sweep's runs, and starting the UI on the local store.

MLflow 3's UI opens an experiment on its GenAI view (traces), where a sweep's runs do not show;
the addresses here lead straight to the runs, and to the compare view of a sweep's trials.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from mlflow import MlflowClient

from forecast.results import recent_sweeps, sweep_trials
from forecast.signals import stop_signals
from forecast.tracking import SHARED_VIEW_TAG, TrackingError, is_local_store

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


def how_to_start(uri: str, experiment: str) -> str:
    """How to serve the UI of the store at ``uri`` and find ``experiment``'s runs in it, as a
    command that works from any folder: nothing to do for a tracking server.

    ``forecast ui`` opens the store ``MLFLOW_TRACKING_URI`` names, else the default one; a store
    named by the variable is named in the command too, for a shell where it is not set.
    """
    if uri.startswith(("http://", "https://")):
        return ""
    if not is_local_store(uri):
        return f"start it with `mlflow ui --backend-store-uri {shlex.quote(uri)}`"
    command = f"{forecast_command()} ui {shlex.quote(experiment)}"
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:
        command = f"MLFLOW_TRACKING_URI={shlex.quote(uri)} {command}"
    return f"start it with `{command}`"


def forecast_command() -> str:
    """This installation's ``forecast`` command as a shell here runs it: its name where the
    shell finds it by name (an activated virtualenv, an installed package), else its path
    (``.venv/bin/forecast`` after ``make``), relative to this folder when it lies inside."""
    ours = Path(sys.executable).parent / "forecast"
    found = shutil.which("forecast")
    if found is not None and Path(found).resolve() == ours.resolve():
        return "forecast"
    inside = ours.resolve().is_relative_to(Path.cwd().resolve())
    return shlex.quote(os.path.relpath(ours) if inside else str(ours))


def experiment_address(uri: str, experiment_id: str, port: int = DEFAULT_PORT) -> str:
    """The runs table of an experiment (not the UI's default GenAI view)."""
    return (
        f"{ui_address(uri, port)}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )


def sweep_runs_address(uri: str, parent_run_id: str, port: int = DEFAULT_PORT) -> str:
    """The runs table showing one sweep's runs, networks and baselines, ranked by its headline
    metric with its metrics as columns: the view the sweep saved
    (:func:`forecast.tracking.log_sweep_view`); the experiment's runs for a sweep without one."""
    run = MlflowClient(uri).get_run(parent_run_id)
    experiment_id = run.info.experiment_id
    address = experiment_address(uri, experiment_id, port)
    experiment = MlflowClient(uri).get_experiment(experiment_id)
    if SHARED_VIEW_TAG + parent_run_id in experiment.tags:
        address += f"&viewStateShareKey={parent_run_id}"
    return address


def serve(uri: str, experiment: str | None = None, port: int = DEFAULT_PORT) -> int:
    """Run ``mlflow ui`` on the local store until Ctrl-C, SIGTERM or SIGHUP, after printing
    where to look: the runs of ``experiment`` (its latest sweep's comparison), or of the latest
    sweep of any. Returns ``mlflow ui``'s exit status, or 0 once stopped by one of the signals.

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
        print(f"its latest sweep, ranked: {sweep_runs_address(uri, run_id, port)}")
        print(f"its latest sweep, compared: {sweep_address(uri, run_id, port)}")
    else:
        print(f"no sweeps yet; the UI: {ui_address(uri, port)}")
    sys.stdout.flush()  # before the server's own lines, through a pipe too
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
    # the UI answers in about 7 s instead of 17 s on 2 cores. Set the variable to keep it. The
    # warning filter hides the deprecation MLflow's server triggers in Starlette at start-up,
    # which only MLflow can act on; a PYTHONWARNINGS of the user's own is kept instead.
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated",
        **os.environ,
    }
    # `mlflow ui` serves from a child process of its own (uvicorn), and forwards only SIGTERM
    # and SIGINT to it. In a session of its own, the server is one process group that a stop
    # ends whole, whichever signal stopped us; and Ctrl-C at a terminal reaches us alone, so
    # the server stops once, by us.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    with stop_signals(_Stopped, once=True) as stopping:
        try:
            return server.wait()
        except _Stopped:
            return 0
        finally:
            stopping.set()  # a second Ctrl-C while the server stops is ignored
            stop_group(server)


class _Stopped(Exception):
    """One of :data:`forecast.signals.STOP_SIGNALS` arrived."""


def stop_group(process: subprocess.Popen, grace: float = 15.0) -> None:
    """End ``process``, started in a session of its own, and every process of its group: SIGTERM
    first, so that the server closes its socket, then SIGKILL to what is left after ``grace``
    seconds."""
    group = process.pid  # a session leader's process group has its id
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            break  # nothing left in the group
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(group, process):
            time.sleep(0.1)
        if not _group_alive(group, process):
            break
    process.wait()


def _group_alive(group: int, process: subprocess.Popen) -> bool:
    """Whether a process of ``group`` still runs (``process`` itself is reaped here; its
    children, reparented, are reaped by init)."""
    process.poll()
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
