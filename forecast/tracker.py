"""Who records a sweep: the interface :mod:`forecast.runner` reports to, and a tracker that
keeps the record in memory.

A sweep tells its tracker, in this order: the sweep started (its params; a tracker that can
resume says which trials an interrupted run of the same sweep already finished), each trial
started, each of its epochs, its outcome, the trial ended, the sweep's summary, the sweep
ended. Starting and ending are one context manager each, so that a record ends with the right
status however the code inside it ends: ``FINISHED``; ``KILLED`` on an interrupt, or on any
exception once the sweep's stop event is set (an interrupt that lands inside a library can come
out as another exception), re-raised as KeyboardInterrupt; ``FAILED`` otherwise, with the
reason, the exception re-raised.

MLflow's tracker (:class:`forecast.mlflow_tracker.MLflowTracker`) is the default.
:class:`MemoryTracker` keeps everything in this process: for a notebook that wants the tables
without a store, and for tests of a computation.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from forecast.config import ConfigError, ExperimentConfig, one_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from forecast.results import Results
    from forecast.trial import Trial, TrialOutcome


@dataclass(frozen=True)
class TrialReport:
    """A trial's result as the sweep collects it (small enough to send back from a worker),
    and as a tracker returns the trials an interrupted run of the sweep finished."""

    row: dict[str, Any]  # the trial's line in the trials table
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"; empty if it failed
    run_id: str  # its record's id (its MLflow run's)
    failure: str | None = None
    # Every forecaster's test forecasts and the series' scales (forecast.trial.TrialOutcome);
    # None for a failed trial.
    forecasts: pd.DataFrame | None = None
    scales: pd.DataFrame | None = None
    # For the ETA (see forecast.execution.timed_trial): the trial's seconds, and the process that
    # ran it (whose first trial pays its one-off costs).
    seconds: float = float("nan")
    process: int = 0
    run_name: str = ""  # its record's name, for the progress line
    trial_hash: str = ""  # Trial.digest
    pruned_at: int | None = None  # the epoch after which a pruner stopped its training


class TrialRecord(Protocol):
    """One trial's record, open while the trial runs."""

    id: str

    def log_epoch(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """An epoch's losses (Keras' ``logs``), as a Keras ``on_epoch_end`` callback gets them."""

    def log_outcome(self, outcome: TrialOutcome) -> None:
        """The finished trial: its metrics, forecasts, figures and (if configured) model."""


class SweepRecord(Protocol):
    """One sweep's record. Picklable: each trial records itself in it from whichever process
    runs the trial."""

    id: str
    resumed: bool  # whether it reopened an interrupted run of the same sweep

    def finished_trials(self) -> dict[str, TrialReport]:
        """Trial digest -> report, for each trial an interrupted run of this sweep finished."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Params learnt after the sweep started (an Optuna search's study name)."""

    def trial(
        self, trial: Trial, params: dict[str, Any], stop: threading.Event | None
    ) -> AbstractContextManager[TrialRecord]:
        """A trial's record, open while it runs; ``params`` are what a reader filters it by."""

    def failure(self, error: BaseException) -> Exception | None:
        """The tracker's own failure inside ``error`` (its server gone, say), which stops the
        sweep, as the exception to raise; None when ``error`` is the trial's."""

    def log_summary(
        self,
        results: Results,
        tables: dict[str, pd.DataFrame],
        metrics: dict[str, float],
        figures: dict[str, Figure],
    ) -> None:
        """The finished sweep's tables (file name -> table), metrics and figures."""


class Tracker(Protocol):
    """Where sweeps are recorded."""

    label: str  # as the progress lines name it, e.g. "MLflow at sqlite:///mlflow.db"

    def check(self, backend: str, workers: int | None, nodes: int) -> None:
        """Raise ConfigError if trials run this way (``nodes`` machines) cannot reach it."""

    def checkpoint_dir(self, name: str) -> Path | None:
        """Where the experiment ``name``'s trials back up each epoch, to resume a sweep; None
        where a sweep cannot be resumed."""

    def sweep(
        self,
        name: str,
        config: ExperimentConfig,
        params: dict[str, Any],
        digest: str,
        stop: threading.Event | None,
        resume: bool = True,
    ) -> AbstractContextManager[SweepRecord]:
        """The record of one sweep of the experiment ``name``: an interrupted one with the same
        ``digest`` (:func:`forecast.config.results_digest`) reopened when ``resume``, else a
        new one."""


@dataclass
class MemoryTrial:
    """A trial as :class:`MemoryTracker` recorded it."""

    id: str
    name: str
    params: dict[str, Any]
    status: str = "RUNNING"
    failure_reason: str | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)
    outcome: TrialOutcome | None = None

    def log_epoch(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epochs.append(dict(logs or {}))

    def log_outcome(self, outcome: TrialOutcome) -> None:
        self.outcome = outcome


@dataclass
class MemorySweep:
    """A sweep as :class:`MemoryTracker` recorded it."""

    id: str
    name: str
    params: dict[str, Any]
    status: str = "RUNNING"
    resumed: bool = False
    trials: list[MemoryTrial] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)

    def finished_trials(self) -> dict[str, TrialReport]:
        return {}

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    @contextlib.contextmanager
    def trial(
        self, trial: Trial, params: dict[str, Any], stop: threading.Event | None
    ) -> Iterator[MemoryTrial]:
        record = MemoryTrial(f"{self.id}-{len(self.trials)}", trial.run_name, dict(params))
        self.trials.append(record)
        with _ending(record, stop):
            yield record

    def failure(self, error: BaseException) -> Exception | None:
        return None

    def log_summary(
        self,
        results: Results,
        tables: dict[str, pd.DataFrame],
        metrics: dict[str, float],
        figures: dict[str, Figure],
    ) -> None:
        self.tables, self.metrics, self.figures = tables, metrics, figures


@dataclass
class MemoryTracker:
    """Records sweeps in this process's memory (``sweeps``, oldest first): nothing is written,
    nothing resumes, and trials must run in this process."""

    sweeps: list[MemorySweep] = field(default_factory=list)
    label: str = "memory"

    def check(self, backend: str, workers: int | None, nodes: int) -> None:
        if backend != "local" or (workers or 1) > 1:
            raise ConfigError(
                "an in-memory tracker records trials run in this process only: "
                "use the local backend with one worker"
            )

    def checkpoint_dir(self, name: str) -> Path | None:
        return None

    @contextlib.contextmanager
    def sweep(
        self,
        name: str,
        config: ExperimentConfig,
        params: dict[str, Any],
        digest: str,
        stop: threading.Event | None,
        resume: bool = True,
    ) -> Iterator[MemorySweep]:
        record = MemorySweep(uuid.uuid4().hex, name, dict(params))
        self.sweeps.append(record)
        with _ending(record, stop):
            yield record


@contextlib.contextmanager
def _ending(record: MemoryTrial | MemorySweep, stop: threading.Event | None) -> Iterator[None]:
    """End ``record`` with the status the code inside ends with (see the module's docstring)."""
    try:
        yield
    except KeyboardInterrupt:
        record.status = "KILLED"
        raise
    except Exception as error:
        if stop is not None and stop.is_set():
            record.status = "KILLED"
            raise KeyboardInterrupt from error
        record.status = "FAILED"
        if isinstance(record, MemoryTrial):
            record.failure_reason = one_line(error)
        raise
    record.status = "FINISHED"
