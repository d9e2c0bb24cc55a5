"""MLflow tracking: the thin edge where runs, params, metrics and artifacts are recorded.

One MLflow experiment per named experiment, one parent run per invocation, one nested child run
per trial. The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` at the
project root with artifacts beside it in ``mlartifacts/``.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import pandas as pd

from forecast.config import project_root


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the project's sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def use_experiment(name: str) -> str:
    """Point MLflow at the store and experiment ``name`` (created if new); returns its id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    database = (
        Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None
    )
    with _exclusive(database):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            # Keep a local store's artifacts beside its database file; MLflow's default is
            # ./mlruns in whatever the working directory happens to be.
            location = (database.parent / "mlartifacts" / name).as_uri() if database else None
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextlib.contextmanager
def _exclusive(database: Path | None) -> Iterator[None]:
    """Hold a lock beside a sqlite store while it may be created or migrated and while an
    experiment may be created: two processes starting at once would otherwise both run
    MLflow's schema migration (``table _alembic_tmp_experiments already exists``) or both
    create the experiment."""
    if database is None:
        yield
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def is_local_store(uri: str) -> bool:
    """Whether the store is a file on this machine (sqlite or a folder), out of other machines'
    reach, unlike a tracking server or a database server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


class TrackingError(RuntimeError):
    """The tracking store cannot be used; its message is one line."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when an HTTP tracking server does not answer.

    (MLflow's own client retries for minutes before it gives up.)
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server (or proxy) is there
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {uri} is not reachable: {reason}") from None


def run_tags(name: str) -> dict[str, str]:
    """Tags that say what produced a run: experiment, code version, library versions."""
    import importlib.metadata
    import subprocess

    tags = {"forecast.experiment": name}
    for package in ("forecast", "tensorflow", "keras", "mlflow", "numpy", "pandas"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"version.{package}"] = importlib.metadata.version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


@contextlib.contextmanager
def parent_run(
    name: str,
    config: dict[str, Any],
    params: dict[str, Any],
    sweep_hash: str,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """The run of one invocation; never left RUNNING: it ends KILLED on Ctrl-C and FAILED if
    the sweep raises. ``resume_run_id`` reopens an interrupted sweep's run instead of starting
    a new one."""
    if resume_run_id is not None:
        run = mlflow.start_run(run_id=resume_run_id)
    else:
        tags = {
            **run_tags(name),
            "forecast.sweep_hash": sweep_hash,
            "mlflow.note.content": config.get("description", ""),
        }
        run = mlflow.start_run(run_name=f"{name}-sweep", tags=tags)
    try:
        if resume_run_id is None:
            mlflow.log_dict(config, "config.yaml")
            mlflow.log_params(params)
        yield run
    except KeyboardInterrupt:
        _end_all_runs("KILLED")
        raise
    except BaseException:
        _end_all_runs("FAILED")
        raise
    mlflow.end_run()


def unfinished_sweep(experiment_id: str, sweep_hash: str) -> str | None:
    """The newest parent run with this sweep hash, if it did not finish (killed, failed or
    still marked running), to resume; None if there is none."""
    client = mlflow.MlflowClient(tracking_uri())
    runs = client.search_runs(
        [experiment_id],
        f"tags.`forecast.sweep_hash` = '{sweep_hash}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs and runs[0].info.status != "FINISHED":
        return runs[0].info.run_id
    return None


def finished_trials(parent_run_id: str) -> dict[str, dict[str, Any]]:
    """Trial hash -> its row in the trials table, for the FINISHED child runs of a sweep.

    Child runs left RUNNING by a killed process are marked KILLED on the way.
    """
    client = mlflow.MlflowClient(tracking_uri())
    table = sweep_trials(parent_run_id, latest_only=False)
    if not len(table):
        return {}
    for run_id in table.loc[table["status"] == "RUNNING", "run_id"]:
        client.set_terminated(run_id, status="KILLED")
    finished = table[(table["status"] == "FINISHED") & (table["trial_hash"] != "")]
    columns = [c for c in finished.columns if c not in ("status", "run_id", "trial_hash")]
    return {
        row["trial_hash"]: {key: row[key] for key in columns if pd.notna(row[key])}
        for _, row in finished.iterrows()
    }


def _end_all_runs(status: str) -> None:
    """End the active child run, if any, and the parent with ``status``."""
    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


@contextlib.contextmanager
def child_run(
    run_name: str,
    params: dict[str, Any],
    config: dict[str, Any],
    parent_run_id: str,
    trial_hash: str,
) -> Iterator[mlflow.ActiveRun]:
    """The run of one trial under its sweep's parent run, which may live in another process
    (a worker of a process pool or a Ray task).

    If the trial raises, the run ends FAILED with the reason in its ``failure_reason`` tag;
    on Ctrl-C it ends KILLED.
    """
    run = mlflow.start_run(
        run_name=run_name,
        nested=mlflow.active_run() is not None,
        parent_run_id=parent_run_id,
        tags={"forecast.trial_hash": trial_hash},
    )
    mlflow.log_params(params)
    mlflow.log_dict(config, "config.yaml")
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except Exception as error:
        mlflow.set_tag("failure_reason", str(error)[:1000])
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()


def log_dataset(inputs: Any, targets: Any, source: str, name: str) -> None:
    """Record the training data of the active run as an MLflow dataset input."""
    import numpy as np

    with warnings.catch_warnings():
        # A task name such as "adding" also reads as a local path; MLflow warns, harmlessly.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = mlflow.data.from_numpy(
            np.asarray(inputs), targets=np.asarray(targets), source=source, name=name
        )
    # Trials in parallel log the same dataset (the models of one gap and seed share it), and
    # MLflow's store checks for it and then inserts it, so the slower of two concurrent
    # writers fails on the unique key. On a retry it finds the dataset and links to it.
    for attempt in range(DATASET_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context="training")
            return
        except mlflow.exceptions.MlflowException as error:
            if "UNIQUE" not in str(error).upper() or attempt == DATASET_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


DATASET_ATTEMPTS = 5


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


def log_figure(figure: Any, path: str) -> None:
    """Log a matplotlib figure as an image artifact of the active run, then close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def log_results_table(trials: pd.DataFrame, summary: pd.DataFrame) -> None:
    """The per-trial and per-(model, gap) tables, as CSV artifacts of the active run."""
    mlflow.log_text(trials.to_csv(index=False), "trials.csv")
    mlflow.log_text(summary.to_csv(index=False), "summary.csv")


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs Keras' per-epoch losses to the active run as ``train_loss`` / ``val_loss``."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        metrics = {
            ("train_" + key if not key.startswith("val_") else key): float(value)
            for key, value in logs.items()
            if key == "loss" or key == "val_loss"
        }
        mlflow.log_metrics(metrics, step=epoch)


def recent_sweeps(experiment: str | None = None, limit: int = 10) -> pd.DataFrame:
    """The latest parent runs (one per ``forecast run``), newest first, from any store."""
    client = mlflow.MlflowClient(tracking_uri())
    experiments = (
        [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    )
    if experiment and experiments[0] is None:
        raise TrackingError(f"no experiment {experiment!r} in {tracking_uri()}")
    runs = client.search_runs(
        [e.experiment_id for e in experiments],
        "tags.`forecast.experiment` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=limit * 50,  # children match too; parents are picked below
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][:limit]
    return pd.DataFrame(
        [
            {
                "experiment": r.data.tags["forecast.experiment"],
                "run_id": r.info.run_id,
                "started": pd.Timestamp(r.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M"),
                "status": r.info.status,
                "source": r.data.params.get("source", ""),
            }
            for r in parents
        ],
        columns=["experiment", "run_id", "started", "status", "source"],
    )


def sweep_trials(parent_run_id: str, latest_only: bool = True) -> pd.DataFrame:
    """The per-trial table of one sweep, rebuilt from its child runs' params and metrics.

    With ``latest_only``, a trial run again on resume counts once (its latest attempt) and
    trials killed by an interruption are left out.
    """
    client = mlflow.MlflowClient(tracking_uri())
    try:
        parent = client.get_run(parent_run_id)
    except mlflow.exceptions.MlflowException:
        raise TrackingError(f"no run {parent_run_id!r} in {tracking_uri()}") from None
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
    rows = []
    for child in children:
        params, metrics = child.data.params, child.data.metrics
        nan = float("nan")
        point = params.get("sweep_point")
        rows.append(
            {
                "model": f"{params['model']} [{point}]" if point else params["model"],
                "gap": int(params["gap"]),
                "seed": int(params["seed"]),
                "params": int(params["parameters"]),
                **{key: metrics.get(key, nan) for key in TRIAL_METRICS},
                **{key: metrics[key] for key in SERIES_METRICS if key in metrics},
                "status": child.info.status,
                "run_id": child.info.run_id,
                "trial_hash": child.data.tags.get("forecast.trial_hash", ""),
            }
        )
    table = pd.DataFrame(rows)
    if latest_only and len(table):
        table = table[table["status"] != "KILLED"]
        hashed = table["trial_hash"] != ""
        table = pd.concat(
            [table[~hashed], table[hashed].drop_duplicates("trial_hash", keep="last")]
        ).sort_index()
    return table


TRIAL_METRICS = ("test_mse", "test_mae", "mse_ratio", "solved", "train_seconds")
SERIES_METRICS = (
    "baseline_mse",
    "baseline_mae",
    "persistence_mse",
    "persistence_mae",
    "persistence_ratio",
    "seasonal_mse",
    "seasonal_mae",
)


def log_model(model: keras.Model, inputs: Any) -> None:
    """Log ``model`` to the active run as an MLflow pyfunc model named ``model``.

    It carries the ``.keras`` file, this package's code (so it loads where ``forecast`` is not
    installed), pinned requirements, a signature and an input example. It predicts in the
    model's own units (scaled, and relative when the experiment says so).
    """
    import importlib.metadata
    import tempfile

    import numpy as np
    from mlflow.models import infer_signature

    example = np.asarray(inputs[:2], dtype="float32")
    requirements = [
        f"{package}=={importlib.metadata.version(package)}"
        for package in ("tensorflow", "keras", "mlflow", "numpy", "pandas", "pyyaml")
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"keras_model": str(path)},
            code_paths=[str(Path(__file__).parent)],
            signature=infer_signature(example, model.predict(example, verbose=0)),
            input_example=example,
            pip_requirements=requirements,
        )
