"""One trial, recorded, in whichever process runs it (this one, a worker process, a Ray task):
:func:`execute_trial` wraps :func:`forecast.trial.run_trial` in the trial's record of its sweep
(forecast.tracker), which a worker reaches through the picklable :class:`TrialContext`."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from forecast.config import one_line
from forecast.data import data_source
from forecast.evaluation import specification_column
from forecast.tracker import SweepRecord, TrialReport
from forecast.training import Pruner
from forecast.trial import Trial, run_trial


@dataclass(frozen=True)
class TrialContext:
    """Where a trial reports, picklable so that worker processes and Ray tasks get it: the
    sweep's record, and the folder of its per-epoch backups (None: no backups)."""

    sweep: SweepRecord
    checkpoint_dir: str | None


@dataclass(frozen=True)
class Work:
    """What a strategy hands the runner to run: the items still to run, in the order to start
    them, the function that runs one (picklable, for workers), and the trials whose set-up the
    first line describes (forecast.progress.first_trial_note)."""

    pending: list[Any]  # forecast.progress.Pending: a Trial, or a search's slot
    in_order: list[Any]
    execute: Callable[..., TrialReport]  # (item, stop=None) -> its report
    trials: list[Trial]


def execute_trial(
    trial: Trial,
    context: TrialContext,
    stop: threading.Event | None = None,
    pruner: Pruner | None = None,
    params: dict[str, Any] | None = None,
) -> TrialReport:
    """One trial, recorded as a child run of the sweep, in whichever process runs it.

    ``pruner`` (an Optuna trial's; else the config's give-up rule) may stop its training
    early: the run then ends FINISHED, evaluated as it stands, with its ``trial_state`` tag
    ``pruned`` (``complete`` otherwise). ``params`` are logged on the run besides the usual
    ones (a search's sampled values).

    A trial that raises (in its data, its model, training or recording) ends FAILED with the
    reason and is returned as such, so the sweep goes on; Ctrl-C ends it KILLED, as does
    ``stop`` once set (at the next training batch, or at once by the signal that set it). Once
    ``stop`` is set, whatever the trial raises is an interrupt: it ends KILLED and raises
    KeyboardInterrupt. A tracking server that refuses it or stops answering raises
    :class:`forecast.tracking.ServerError`, which stops the sweep.
    """
    quiet_libraries()
    row = trial_row(trial)
    # Backups named by what the trial is, and the hash of what it computes: a rerun that
    # changes any setting starts afresh.
    backup_name = f"{trial.model.name}-gap{trial.gap}-seed{trial.seed}-{trial.digest}"
    checkpoint = None
    if context.checkpoint_dir is not None:
        checkpoint = Path(context.checkpoint_dir) / backup_name
    run_id = ""  # until the record exists
    try:
        params = {**_trial_params(trial), **(params or {})}
        with context.sweep.trial(trial, params, stop) as record:
            run_id = record.id
            callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=record.log_epoch)]
            if stop is not None:
                callbacks.append(_stop_when_set(stop))
            outcome = run_trial(trial, callbacks, checkpoint, pruner)
            specifications = {
                specification_column(name): chosen
                for name, chosen in outcome.specifications.items()
            }
            record.log_outcome(outcome)
    except Exception as error:
        if stop is not None and stop.is_set():  # e.g. the interrupt came out of MLflow's client
            raise KeyboardInterrupt from error
        # The tracker failed, not the trial (a tracking server gone, say): every other trial
        # would fail the same way (each after minutes of MLflow's retries), so the sweep stops.
        lost = context.sweep.failure(error)
        if lost is not None:
            raise lost from None
        nan = float("nan")
        failed = {"state": "failed", "weights": nan, "test_mse": nan, "mse_ratio": nan}
        row = {**row, **failed, "solved": 0.0, "train_seconds": nan}
        failure = one_line(error)
        return TrialReport(row, {}, run_id, failure, run_name=trial.run_name)
    # As the run holds them, so that a resumed sweep's rows read back the same columns.
    last_epoch = {"train_loss": outcome.history["loss"][-1]}
    for key in ("val_loss", "val_ratio", "val_accuracy"):
        if outcome.history.get(key):
            last_epoch[key] = outcome.history[key][-1]
    state = "pruned" if outcome.pruned_at else "complete"
    row = {**row, "state": state, "weights": outcome.model.count_params()}
    row.update({**specifications, **last_epoch})
    row.update(outcome.metrics)
    return TrialReport(
        row,
        outcome.flow,
        run_id,
        forecasts=outcome.forecasts,
        scales=outcome.scales,
        run_name=trial.run_name,
        trial_hash=trial.digest,
        pruned_at=outcome.pruned_at,
    )


def trial_row(trial: Trial) -> dict[str, Any]:
    """The start of a trial's row in the trials table: what identifies it."""
    return {
        "trial": trial.run_name,
        "model": trial.label,
        "network": trial.model.name,
        "point": trial.point,
        "gap": trial.gap,
        "seed": trial.seed,
    }


def _trial_params(trial: Trial) -> dict[str, Any]:
    """The child run's params: what a reader filters and groups trials by in the MLflow UI."""
    config, model = trial.config, trial.model
    params = {
        "model": model.name,
        "layer": model.builder or model.layer,  # what made the model, by name or import path
        "units": model.units,
        "gap": trial.gap,
        "seed": trial.seed,
        "source": data_source(config),
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "clipnorm": config.train.clipnorm,
        # The layer options as one readable value, e.g. `chrono_init=400` or `standard`.
        "variant": ",".join(f"{k}={v}" for k, v in sorted(model.options.items())) or "standard",
    }
    if trial.point:
        params["sweep_point"] = trial.point
    return params


def timed_trial(
    trial: Trial,
    context: TrialContext,
    stop: threading.Event | None = None,
    pruner: Pruner | None = None,
    params: dict[str, Any] | None = None,
) -> TrialReport:
    """:func:`execute_trial`, its report carrying the trial's seconds and the id of the
    process that ran it (for the sweep's ETA)."""
    start = time.perf_counter()
    report = execute_trial(trial, context, stop, pruner, params)
    seconds = time.perf_counter() - start
    return dataclasses.replace(report, seconds=seconds, process=os.getpid())


def _stop_when_set(stop: threading.Event) -> keras.callbacks.Callback:
    """A Keras callback that ends training with KeyboardInterrupt once ``stop`` is set."""

    def check(batch: int, logs: dict[str, float] | None = None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt

    return keras.callbacks.LambdaCallback(on_train_batch_end=check)


def quiet_libraries() -> None:
    # Every trial builds a fresh model, which TensorFlow's retracing heuristic reports as a
    # suspected bug from the sixth trial on; the warning is wrong here.
    tf.get_logger().setLevel("ERROR")
    # MLflow's INFO lines (schema creation, input-example validation) would bury the progress.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # As would the two download bars of each logged model's input-example check; a user who
    # sets the variable keeps their choice.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
