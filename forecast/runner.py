"""Run one experiment: check it, plan its trials (forecast.plan), run them here, in worker
processes or on Ray, and report the sweep to its tracker (forecast.tracker; MLflow's by
default): the sweep, each trial, the summary tables and figures.

Two strategies say which trials run and what the sweep's summary adds:
:class:`forecast.grid.GridSweep` runs every planned trial; :class:`forecast.search.OptunaSearch`
asks its study for each trial, in whichever process runs it. One trial, wherever it runs, is
:func:`forecast.execution.execute_trial`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from forecast import results, search
from forecast.config import ConfigError, ExperimentConfig, results_digest
from forecast.data import SeriesData, data_source
from forecast.distributed import is_chief, make_strategy
from forecast.execution import TrialContext, quiet_libraries
from forecast.grid import GridSweep
from forecast.mlflow_tracker import MLflowTracker
from forecast.parallel import (
    auto_workers,
    check_backend,
    connect_ray,
    process_pool,
    ray_cpus,
    run_in_pool,
    run_on_ray,
)
from forecast.paths import tracking_uri
from forecast.plan import plan_trials
from forecast.progress import collect, first_trial_note
from forecast.results import Kind, Results
from forecast.search import OptunaSearch
from forecast.signals import stop_signals
from forecast.tracker import MemoryTracker, Tracker, TrialReport

# Imported by each local worker process as it starts, before its first trial: what a trial of
# either strategy runs.
WORKER_PRELOAD = ("forecast.execution", "forecast.search")


def run_experiment(
    name: str,
    config: ExperimentConfig,
    log: Callable[[str], None] = print,
    workers: int | str | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    tracker: Tracker | None = None,
    prepared: tuple[SeriesData, ...] | None = None,
) -> Results:
    """Train and evaluate every trial of ``config`` and record them with ``tracker`` (default:
    MLflow's, in the store at :func:`forecast.paths.tracking_uri`); returns the sweep's
    :class:`forecast.results.Results`.

    A trial is one (sweep point, gap, seed, model). ``workers`` > 1 runs trials in that many
    local processes, ``"auto"`` as many as :func:`forecast.parallel.auto_workers` picks, and
    1 or ``None`` in this process; ``backend="ray"`` runs them as Ray tasks (on
    ``ray_address``, or a local Ray), at most ``workers`` at once if given as a number.
    Re-running a sweep that was interrupted (Ctrl-C, SIGTERM, a crash) resumes it: trials
    already FINISHED in its parent run are skipped, matched by a hash of what can change their
    results.

    Everything that can fail on bad input (every sweep point's config, data, task and layers,
    the workers, the Ray address, the tracker) is checked before the sweep's record is made.
    ``prepared``: ``config.data``'s folds if read already (:func:`forecast.data.prepare_unswept`).

    Raises:
        ConfigError: bad sweep, task parameters, layer options or backend settings.
        forecast.data.DataError: a series that cannot be loaded or windowed.
        forecast.tracking.TrackingError: a tracking server that is not reachable, refuses
            this client (401, 403) or stops answering during the sweep.
    """
    tracker = tracker or MLflowTracker(tracking_uri())
    check_backend(backend, workers, ray_address)
    multi_worker = config.train.strategy == "multi_worker"
    searching = config.sweep is not None and config.sweep.search == "optuna"
    if multi_worker:
        _check_multi_worker(backend, workers, searching)
    # Before any other TensorFlow work: collective ops are configured at start-up.
    distribution = make_strategy(config.train.strategy) if multi_worker else None
    trials = plan_trials(config, lambda step: log(f"{name}: {step}"), prepared)
    settings = None
    if searching:  # its study opens where the sweep's run is made; its database now
        # Beside a local MLflow store by default.
        uri = tracker.uri if isinstance(tracker, MLflowTracker) else None
        settings = search.search_settings(config, uri)
        search.check_storage(settings.storage)
    if workers == "auto":  # a Ray cluster sizes itself; multi-worker processes run one each
        local = backend == "local" and not multi_worker
        workers = auto_workers(len(trials)) if local else None
    nodes = connect_ray(ray_address) if backend == "ray" else 1
    if is_chief(distribution):
        tracker.check(backend, workers, nodes)
    if nodes > 1 and settings is not None and search.is_local_storage(settings.storage):
        raise ConfigError(
            f"--backend ray: the cluster has {nodes} nodes, but the study is in "
            f"{settings.storage} on this machine only; set sweep.storage to a database "
            "every node reaches"
        )
    strategy = GridSweep(trials) if settings is None else OptunaSearch(settings, trials[0])
    run = functools.partial(
        _run_sweep,
        name,
        config,
        strategy,
        Kind.of(config, trials[0].classes is not None),
        # Named after the real store in every process: multi-worker processes share backups.
        checkpoint_dir=tracker.checkpoint_dir(name),
        log=log,
        workers=workers,
        backend=backend,
        ray_address=ray_address,
    )
    if is_chief(distribution):
        return run(tracker=tracker)
    # The other workers of a multi-worker cluster train the same trials in step with the chief
    # but leave the record to it.
    sweep = run(tracker=MemoryTracker())
    uri = tracker.uri if isinstance(tracker, MLflowTracker) else None
    return dataclasses.replace(sweep, tracking_uri=uri, run_id=None)


def _check_multi_worker(backend: str, workers: int | str | None, searching: bool) -> None:
    """Refuse what a multi-worker sweep cannot do: every process in TF_CONFIG runs every trial
    in step."""
    if backend != "local" or workers not in (None, 1, "auto"):
        raise ConfigError(
            "train.strategy=multi_worker: every process in TF_CONFIG runs the sweep together; "
            "use the local backend with one worker"
        )
    if searching:
        raise ConfigError(
            "train.strategy=multi_worker: an optuna search runs its trials apart; "
            "use strategy default or mirrored"
        )


def _run_sweep(
    name: str,
    config: ExperimentConfig,
    strategy: GridSweep | OptunaSearch,
    kind: Kind,
    checkpoint_dir: Path | None,
    log: Callable[[str], None],
    workers: int | None,
    backend: str,
    ray_address: str | None,
    tracker: Tracker,
) -> Results:
    """Run the strategy's trials under one sweep record (a new one, or the interrupted one it
    resumes), here, in worker processes or on Ray, and record the summary."""
    quiet_libraries()
    local_pool = backend == "local" and (workers or 1) > 1
    # Workers start now, importing TensorFlow while this process sets up the MLflow runs.
    if local_pool:
        log(f"{name}: starting {workers} worker processes")
    pool = process_pool(workers, WORKER_PRELOAD) if local_pool else contextlib.nullcontext()
    # SIGTERM (a batch scheduler, a container stop) and SIGHUP end the sweep as Ctrl-C does:
    # its runs end KILLED, and a rerun resumes it. Once stopped, whatever exception a trial or
    # the sweep raises is taken as the interrupt it was (an interrupt inside a library can come
    # out as another exception); training also checks the event after every batch.
    with pool as pool, stop_signals() as stop:
        # Multi-worker processes must run the same trials in step; only the chief sees the
        # store, so none of them resumes.
        resumable = config.train.strategy != "multi_worker"
        params = {
            "source": data_source(config),
            "seeds": config.seeds,
            "models": [model.name for model in config.models],
            "epochs": config.train.epochs,
            **strategy.params(),
        }
        log(f"{name}: opening {tracker.label}")  # a new store's tables take seconds to make
        digest = results_digest(config)
        with tracker.sweep(name, config, params, digest, stop, resumable) as sweep:
            done = sweep.finished_trials()
            # Backups belong to the sweep run that wrote them: a new sweep never resumes a trial
            # from another's (one interrupted and not resumed, or one in a store since deleted),
            # a resumed sweep finds its own. A multi-worker sweep, which does not resume, keeps
            # one folder that all its workers name alike.
            backups = checkpoint_dir
            if checkpoint_dir is not None and resumable:
                backups = checkpoint_dir / sweep.id
            context = TrialContext(sweep, None if backups is None else str(backups))
            where = f"{workers} workers" if local_pool else "1 process"
            where = "Ray" if backend == "ray" else where
            work = strategy.begin(name, sweep, context, done, f"{where} -> {tracker.label}", log)
            if note := first_trial_note(work.trials):
                log(f"{name}: {note}")
            if backend == "ray":
                reports = run_on_ray(work.execute, work.in_order, ray_address, workers)
            elif pool is not None:
                reports = run_in_pool(pool, work.execute, work.in_order)
            else:  # in this process, where signals land: stop at the next batch
                reports = ((item, work.execute(item, stop=stop)) for item in work.pending)
            processes = workers if local_pool else 1  # trials at once, for the ETA
            if backend == "ray":  # as many as the cluster has CPUs, unless capped
                processes = workers or ray_cpus()
            # Closed before the parent run ends: the workers stop before it marks their runs.
            with contextlib.closing(reports):
                collected = collect(reports, work.pending, log, stop, name, processes, kind.ratio)
            ran = strategy.reports(done, collected)
            uri = tracker.uri if isinstance(tracker, MLflowTracker) else None
            found = _results(name, config, kind, ran, uri, sweep.id)
            tables = {"trials.csv": found.trials, "summary.csv": found.summary()}
            if (paired := found.paired()) is not None and len(paired):
                tables["paired.csv"] = paired
            if len(by_series := found.per_series()):
                tables["per_series.csv"] = by_series
            metrics, figures = strategy.summary(name, sweep, config, found, ran, tables, log)
            sweep.log_summary(found, tables, metrics, figures)
    return found


def _results(
    name: str,
    config: ExperimentConfig,
    kind: Kind,
    reports: list[TrialReport],
    uri: str | None,
    run_id: str,
) -> Results:
    """The sweep's :class:`Results` from its trials' reports."""
    trials = pd.DataFrame([{**report.row, "run_id": report.run_id} for report in reports])
    forecasts, scales = [], []
    for report in reports:
        if report.forecasts is not None:
            forecasts.append(report.forecasts.assign(trial=report.row["trial"]))
            scales.append(report.scales.assign(trial=report.row["trial"]))
    return Results(
        name,
        config,
        kind,
        trials,
        results.long_table(forecasts),
        results.long_table(scales),
        uri,
        run_id,
    )
