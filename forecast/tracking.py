"""MLflow tracking: the thin edge where runs, params, metrics and artifacts are recorded.

One MLflow experiment per named experiment, one parent run per invocation, one nested child run
per trial. The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` at the
project root with artifacts beside it in ``mlartifacts/``.
"""

from __future__ import annotations

import contextlib
import os
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
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        # Keep a local store's artifacts beside its database file; MLflow's default is
        # ./mlruns in whatever the working directory happens to be.
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        artifact_location = (database.parent / "mlartifacts" / name).as_uri()
    experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextlib.contextmanager
def parent_run(
    name: str, config: dict[str, Any], params: dict[str, Any]
) -> Iterator[mlflow.ActiveRun]:
    """The run of one invocation; ends FAILED (never RUNNING) if the sweep raises."""
    with mlflow.start_run(
        run_name=f"{name}-sweep",
        tags={"forecast.experiment": name, "mlflow.note.content": config.get("description", "")},
    ) as run:
        mlflow.log_dict(config, "config.yaml")
        mlflow.log_params(params)
        yield run


@contextlib.contextmanager
def child_run(
    run_name: str, params: dict[str, Any], config: dict[str, Any]
) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one trial, with its params and the resolved config.

    If the trial raises, the run ends FAILED with the reason in its ``failure_reason`` tag.
    """
    with mlflow.start_run(run_name=run_name, nested=True) as run:
        mlflow.log_params(params)
        mlflow.log_dict(config, "config.yaml")
        try:
            yield run
        except Exception as error:
            mlflow.set_tag("failure_reason", str(error)[:1000])
            raise


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
