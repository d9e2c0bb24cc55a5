"""MLflow as a sweep's tracker (see :mod:`forecast.tracker`): it records through the write side,
:mod:`forecast.tracking`, and, to resume an interrupted sweep, reads its finished trials back
through the read side, :mod:`forecast.results`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from forecast.config import ConfigError, ExperimentConfig
from forecast.data import data_source
from forecast.evaluation import METRICS, ensemble_name, metric_name
from forecast.paths import checkpoints_dir
from forecast.results import sweep_trials, trial_flow, trial_forecasts, unfinished_sweep
from forecast.tracker import TrialReport
from forecast.tracking import (
    RunRef,
    check_reachable,
    end_unfinished_trials,
    forecaster_metrics,
    is_local_store,
    log_baseline_runs,
    log_ensemble_model,
    log_epoch,
    log_params,
    log_sweep_summary,
    log_sweep_view,
    log_trial_outcome,
    parent_run,
    server_failure,
    trial_run,
    use_experiment,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from forecast.results import Results
    from forecast.trial import Trial, TrialOutcome


@dataclass(frozen=True)
class MLflowTracker:
    """The default tracker (see :mod:`forecast.tracker`): one MLflow experiment per named
    experiment in the store at ``uri``, one parent run per sweep, one child run per trial."""

    uri: str
    system_metrics: bool = False  # sample this machine's CPU and memory onto each sweep's run

    @property
    def label(self) -> str:
        return f"MLflow at {self.uri}"

    def check(self, backend: str, workers: int | None, nodes: int) -> None:
        check_reachable(self.uri)
        if nodes > 1 and is_local_store(self.uri):
            raise ConfigError(
                f"--backend ray: the cluster has {nodes} nodes, but MLflow logs to {self.uri} on "
                "this machine only; set MLFLOW_TRACKING_URI to a server every node reaches"
            )

    def checkpoint_dir(self, name: str) -> Path:
        return checkpoints_dir(name, self.uri)

    @contextlib.contextmanager
    def sweep(
        self,
        name: str,
        config: ExperimentConfig,
        params: dict[str, Any],
        digest: str,
        stop: threading.Event | None,
        resume: bool = True,
    ) -> Iterator[MLflowSweep]:
        experiment_id = use_experiment(self.uri, name)
        resume_id = unfinished_sweep(self.uri, experiment_id, digest) if resume else None
        config_dict = config.to_dict()
        with parent_run(
            self.uri,
            experiment_id,
            name,
            config_dict,
            params,
            digest,
            resume_id,
            self.system_metrics,
            stop,
        ) as run:
            yield MLflowSweep(self.uri, experiment_id, run.run_id, resumed=resume_id is not None)


@dataclass(frozen=True)
class MLflowSweep:
    """A sweep's parent run; what a trial needs to record itself as its child, in any process."""

    uri: str
    experiment_id: str
    id: str
    resumed: bool = False

    @property
    def _run(self) -> RunRef:
        return RunRef(MlflowClient(self.uri), self.experiment_id, self.id)

    def finished_trials(self) -> dict[str, TrialReport]:
        """The FINISHED trials of the interrupted sweep this run resumes, with their gradient
        flows and forecasts read from their runs; its child runs still marked RUNNING are
        marked KILLED first."""
        if not self.resumed:
            return {}
        end_unfinished_trials(self.uri, self.id, "KILLED")
        table = sweep_trials(self.uri, self.id, latest_only=False)
        if not len(table):
            return {}
        finished = table[(table["status"] == "FINISHED") & (table["trial_hash"] != "")]
        finished = finished.rename(columns={"run_name": "trial", "trial_state": "state"})
        columns = [c for c in finished.columns if c not in ("status", "run_id", "trial_hash")]
        reports = {}
        for _, row in finished.iterrows():
            forecasts, scales = trial_forecasts(self.uri, row["run_id"]) or (None, None)
            flow = trial_flow(self.uri, row["run_id"])
            reports[row["trial_hash"]] = TrialReport(
                {key: row[key] for key in columns if pd.notna(row[key])},
                {label: np.asarray(curve) for label, curve in flow.items()},
                row["run_id"],
                forecasts=forecasts,
                scales=scales,
                run_name=row["trial"],
                trial_hash=row["trial_hash"],
            )
        return reports

    def log_params(self, params: dict[str, Any]) -> None:
        log_params(self._run, params)

    @contextlib.contextmanager
    def trial(
        self, trial: Trial, params: dict[str, Any], stop: threading.Event | None
    ) -> Iterator[MLflowTrial]:
        with trial_run(
            self.uri,
            self.experiment_id,
            self.id,
            trial.run_name,
            params,
            trial.config.to_dict(),
            trial.digest,
            stop,
        ) as run:
            yield MLflowTrial(run, trial, run.run_id)

    def failure(self, error: BaseException) -> Exception | None:
        return server_failure(error, self.uri)

    def log_summary(
        self,
        results: Results,
        tables: dict[str, pd.DataFrame],
        metrics: dict[str, float],
        figures: dict[str, Figure],
    ) -> None:
        tags = {"forecast.kind": results.kind.data}
        summary = tables["summary.csv"]
        # A series' summary has a row per forecaster (a search's: its best trials).
        if results.kind.forecasts_series and not results.kind.search and len(summary):
            # Every forecaster side by side: on the sweep's own page, and as runs in its table.
            metrics = {**metrics, **forecaster_metrics(summary, METRICS)}
            specifications = {}
            if "specification" in summary:
                specifications = summary.set_index(["model", "gap"])["specification"].to_dict()
            log_baseline_runs(self._run, results.baseline_scores(), specifications)
            ensembles = results.baseline_scores("ensemble")
            runs = log_baseline_runs(self._run, ensembles, {}, "ensemble")
            if results.config.log_models and results.kind.data == "series":
                _log_ensemble_models(self._run, runs, results)
            ranked = results.summary(["mase"])  # by the headline, whatever the table shows
            if "mase" in ranked and ranked["mase"].notna().any():
                tags["forecast.best_forecaster"] = ranked.at[ranked["mase"].idxmin(), "model"]
        if results.kind.forecasts_series:
            shown = [metric_name(metric) for metric in results.config.evaluation.metrics]
            params = ["model", "specification"]
        else:
            shown = ["test_accuracy" if results.kind.data == "categorical task" else "test_mse"]
            shown, params = [*shown, "effective_memory"], ["model", "gap", "seed"]
        log_sweep_view(self._run, results.kind.ratio, shown, params)
        log_sweep_summary(self._run, tables, metrics, figures, tags)


def _log_ensemble_models(sweep: RunRef, runs: dict[str, str], results: Results) -> None:
    """Each ensemble's run gets a model that serves it: its complete seeds' logged models,
    combined as ``evaluation.ensemble`` says (once: a resumed sweep keeps the one it made)."""
    client = sweep.client
    complete = results.trials[results.trials["state"] == "complete"]
    for (network, point, gap), seeds in complete.groupby(["network", "point", "gap"], sort=False):
        name = f"{ensemble_name(network)}-gap{gap}" + (f" {point}" if point else "")
        run_id = runs.get(name)
        if len(seeds) < 2 or run_id is None or client.get_run(run_id).outputs.model_outputs:
            continue
        run = RunRef(client, sweep.experiment_id, run_id)
        log_params(run, {"members": ", ".join(seeds["trial"])})  # what the model holds
        log_ensemble_model(run, list(seeds["run_id"]), results.config.evaluation.ensemble)


@dataclass(frozen=True)
class MLflowTrial:
    """A trial's child run."""

    run: RunRef
    trial: Trial
    id: str

    def log_epoch(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        log_epoch(self.run, epoch, logs or {})

    def log_outcome(self, outcome: TrialOutcome) -> None:
        trial = self.trial
        source = data_source(trial.config)
        dataset = f"{source}-gap{trial.gap}-seed{trial.seed}"
        log_trial_outcome(self.run, outcome, source, dataset, trial.config.log_models)
