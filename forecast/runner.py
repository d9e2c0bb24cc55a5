"""Run one experiment: plan its trials (forecast.plan), run them here, in worker processes or
on Ray, and record the sweep in MLflow: a parent run, one child run per trial, and the summary.
An Optuna search's trials are not planned but asked of its study, one by one, by whichever
process runs them (:func:`search_trial`, forecast.search).

This is the edge where computation meets tracking. :func:`execute_trial` wraps one
:func:`forecast.trial.run_trial` in its child run, wherever the trial runs;
:func:`run_experiment` owns the parent run and the comparison table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
import pandas as pd
import tensorflow as tf
from optuna.trial import TrialState

from forecast import plots, results, search
from forecast.config import ConfigError, ExperimentConfig, one_line, results_digest
from forecast.data import data_source
from forecast.distributed import is_chief, make_strategy
from forecast.evaluation import max_solved_gap, ratio_column, seed_intervals
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
from forecast.progress import collect, solved_line
from forecast.results import Kind, Results
from forecast.search import SearchSettings
from forecast.signals import stop_signals
from forecast.sweep import point_label, resolve_point
from forecast.tracker import MemoryTracker, SweepRecord, Tracker, TrialReport
from forecast.tracking import MLflowTracker
from forecast.training import Pruner
from forecast.trial import Trial, run_trial

# Imported by each local worker process as it starts, before its first trial.
WORKER_PRELOAD = ("forecast.runner",)


def run_experiment(
    name: str,
    config: ExperimentConfig,
    log: Callable[[str], None] = print,
    workers: int | str | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    tracker: Tracker | None = None,
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

    Raises:
        ConfigError: bad sweep, task parameters, layer options or backend settings.
        forecast.data.DataError: a series that cannot be loaded or windowed.
        forecast.tracking.TrackingError: a tracking server that is not reachable, refuses
            this client (401, 403) or stops answering during the sweep.
    """
    tracker = tracker or MLflowTracker(tracking_uri())
    check_backend(backend, workers, ray_address)
    multi_worker = config.train.strategy == "multi_worker"
    if multi_worker and (backend != "local" or workers not in (None, 1, "auto")):
        raise ConfigError(
            "train.strategy=multi_worker: every process in TF_CONFIG runs the sweep together; "
            "use the local backend with one worker"
        )
    searching = config.sweep is not None and config.sweep.search == "optuna"
    if multi_worker and searching:
        raise ConfigError(
            "train.strategy=multi_worker: an optuna search runs its trials apart; "
            "use strategy default or mirrored"
        )
    # Before any other TensorFlow work: collective ops are configured at start-up.
    strategy = make_strategy(config.train.strategy) if multi_worker else None
    trials = plan_trials(config, log=lambda step: log(f"{name}: {step}"))
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
    if is_chief(strategy):
        tracker.check(backend, workers, nodes)
    if nodes > 1 and settings is not None and search.is_local_storage(settings.storage):
        raise ConfigError(
            f"--backend ray: the cluster has {nodes} nodes, but the study is in "
            f"{settings.storage} on this machine only; set sweep.storage to a database "
            "every node reaches"
        )
    run = functools.partial(
        _run_sweep,
        name,
        config,
        trials,
        settings,
        # Named after the real store in every process: multi-worker processes share backups.
        checkpoint_dir=tracker.checkpoint_dir(name),
        log=log,
        workers=workers,
        backend=backend,
        ray_address=ray_address,
    )
    if is_chief(strategy):
        return run(tracker)
    # The other workers of a multi-worker cluster train the same trials in step with the chief
    # but leave the record to it.
    sweep = run(MemoryTracker())
    uri = tracker.uri if isinstance(tracker, MLflowTracker) else None
    return dataclasses.replace(sweep, tracking_uri=uri, run_id=None)


def _run_sweep(
    name: str,
    config: ExperimentConfig,
    trials: list[Trial],
    settings: SearchSettings | None,
    tracker: Tracker,
    checkpoint_dir: Path | None,
    log: Callable[[str], None],
    workers: int | None,
    backend: str,
    ray_address: str | None,
) -> Results:
    """Run the trials under one parent run (a new one, or the interrupted one it resumes); for
    an Optuna search (``settings``), its ``n_trials``, each sampled from the one planned."""
    _quiet_libraries()
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
        gaps = sorted({trial.gap for trial in trials})
        parent_params = {
            "source": data_source(config),
            "gaps": gaps,
            "seeds": config.seeds,
            "models": [model.name for model in config.models],
            "epochs": config.train.epochs,
            "sweep_points": len({trial.point for trial in trials}),
        }
        if settings is not None:
            parent_params.update(
                {
                    "sweep_points": settings.n_trials,
                    "search": f"optuna {settings.sampler}",
                    "pruner": settings.pruner,
                    "search_metric": f"{settings.metric} ({settings.direction})",
                    "search_space": ",".join(settings.space),
                    "study_storage": settings.storage,
                }
            )
        log(f"{name}: opening {tracker.label}")  # a new store's tables take seconds to make
        with tracker.sweep(
            name, config, parent_params, results_digest(config), stop, resumable
        ) as parent:
            done = parent.finished_trials()
            where = f"{workers} workers" if local_pool else "1 process"
            where = "Ray" if backend == "ray" else where
            resumed = f"resuming run {parent.id}"
            resuming = f" ({resumed}: {len(done)} finished)" if parent.resumed else ""
            # Backups belong to the sweep run that wrote them: a new sweep never resumes a trial
            # from another's (one interrupted and not resumed, or one in a store since deleted),
            # a resumed sweep finds its own. A multi-worker sweep, which does not resume, keeps
            # one folder that all its workers name alike.
            backups = checkpoint_dir
            if checkpoint_dir is not None and resumable:
                backups = checkpoint_dir / parent.id
            context = TrialContext(parent, None if backups is None else str(backups))
            if settings is None:
                pending = [trial for trial in trials if trial.digest not in done]
                log(f"{name}: {len(trials)} trials on {where} -> {tracker.label}{resuming}")
                execute = functools.partial(timed_trial, context=context)
                # In parallel, the longest trials first, so that no long one starts last while
                # the other workers sit idle (longest-processing-time-first scheduling).
                in_order = sorted(pending, key=lambda trial: trial.work, reverse=True)
            else:
                # The study is the sweep's: a resumed sweep resumes it.
                settings = dataclasses.replace(settings, study_name=f"{name}-{parent.id}")
                parent.log_params({"study": settings.study_name})
                study = search.open_study(settings)
                searched = search.resume(study)
                pending = in_order = [
                    SearchSlot(len(study.trials) + index, trials[0].work)
                    for index in range(max(0, settings.n_trials - searched))
                ]
                log(
                    f"{name}: optuna search of {settings.n_trials} trials ({settings.sampler}, "
                    f"pruner {settings.pruner}) on {where} -> {tracker.label}, study "
                    f"{settings.study_name} in {settings.storage}"
                    + (f" ({resumed}: {searched} searched)" if parent.resumed else "")
                )
                execute = functools.partial(
                    search_trial, settings=settings, template=trials[0], context=context
                )
            # (A search's slots are not trials yet: the trial it samples from tells.)
            if note := _first_trial_note(trials if settings else pending):
                log(f"{name}: {note}")
            if backend == "ray":
                reports = run_on_ray(execute, in_order, ray_address, max_in_flight=workers)
            elif pool is not None:
                reports = run_in_pool(pool, execute, in_order)
            else:  # in this process, where signals land: stop at the next batch
                reports = ((item, execute(item, stop=stop)) for item in pending)
            processes = workers if local_pool else 1  # trials at once, for the ETA
            if backend == "ray":  # as many as the cluster has CPUs, unless capped
                processes = workers or ray_cpus()
            # Closed before the parent run ends: the workers stop before it marks their runs.
            with contextlib.closing(reports):
                collected = collect(reports, pending, log, stop, name, processes)

            if settings is None:
                # Every trial's row in plan order, whether it ran now or before an interruption.
                reports = {**done, **collected}
                ran = [reports[trial.digest] for trial in trials]
            else:  # in the order they were asked for, each sampled point once
                ran = {**done, **{r.trial_hash or k: r for k, r in collected.items()}}
                ran = list(ran.values())
            kind = Kind.of(config, trials[0].classes is not None)
            uri = tracker.uri if isinstance(tracker, MLflowTracker) else None
            found = _results(name, config, kind, ran, uri, parent.id)
            tables = {"trials.csv": found.trials, "summary.csv": found.summary()}
            if (paired := found.paired()) is not None and len(paired):
                tables["paired.csv"] = paired
            if len(by_series := found.per_series()):
                tables["per_series.csv"] = by_series
            if settings is None:
                metrics, figures = _sweep_summary(name, config, trials, reports, found.trials, log)
            else:
                metrics, figures = _search_summary(study, settings, tables, log, name)
            parent.log_summary(found, tables, metrics, figures)
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


def _sweep_summary(
    name: str,
    config: ExperimentConfig,
    trials: list[Trial],
    reports: dict[str, TrialReport],
    trials_table: pd.DataFrame,
    log: Callable[[str], None],
) -> tuple[dict[str, float], dict[str, Any]]:
    """A grid sweep's (or a single experiment's) parent metrics and figures: a task's largest
    solved gap per model, ratio against gap and effective memory; every model's gradient flow
    at the largest gap and the first seed."""
    metrics, figures = {}, {}
    if config.task is not None:
        solved = max_solved_gap(trials_table, config.solved_ratio)
        log(solved_line(solved))
        metrics = {f"max_solved_gap.{m}": g for m, g in solved.items()}
        intervals = seed_intervals(trials_table)
        loss = "MSE" if ratio_column(trials_table) == "mse_ratio" else "cross-entropy"
        figures["ratio_vs_gap.png"] = plots.ratio_vs_gap(intervals, config.solved_ratio, name, loss)
        if (
            trials_table.get("effective_memory") is not None
            and trials_table["effective_memory"].notna().any()
        ):
            figures["effective_memory.png"] = plots.effective_memory(
                trials_table, f"{name}: how far back each trained model looks"
            )
    flow_gap, flow_seed = max(trial.gap for trial in trials), config.seeds[0]
    flows = {
        f"{trial.label} {when}": np.asarray(curve)
        for trial in trials
        if trial.gap == flow_gap and trial.seed == flow_seed
        for when, curve in reports[trial.digest].flow.items()
    }
    if flows:
        title = f"Gradient flow at gap {flow_gap}, seed {flow_seed}"
        figures["gradient_flow.png"] = plots.gradient_flow(flows, title)
    return metrics, figures


def _search_summary(
    study: optuna.Study,
    settings: SearchSettings,
    tables: dict[str, pd.DataFrame],
    log: Callable[[str], None],
    name: str,
) -> tuple[dict[str, float], dict[str, Any]]:
    """An Optuna search's parent metric (the best value found), its trials as the study saw
    them (``search.csv``, added to ``tables``), and its figures: the optimisation history and
    the parameters' importances."""
    searched = tables["search.csv"] = search.trials_table(study)
    scored = searched[searched["state"] == "complete"] if len(searched) else searched
    if not len(scored):
        log(f"{name}: no trial of the search completed")
        return {}, {}
    best = scored.loc[
        scored["value"].idxmin() if settings.direction == "minimize" else scored["value"].idxmax()
    ]
    values = ", ".join(
        f"{key}={best[key]:.4g}" if isinstance(best[key], float) else f"{key}={best[key]}"
        for key in settings.space
    )
    log(f"{name}: best {settings.metric} {best['value']:.4g} (trial {best['number']}: {values})")
    counts = searched["state"].value_counts()
    log(
        f"{name}: {counts.get('complete', 0)} trials complete, {counts.get('pruned', 0)} "
        f"pruned, {counts.get('fail', 0)} failed"
    )
    figures = {
        "optimization_history.png": plots.search_history(
            searched, settings.metric, settings.direction, f"{name}: optimisation history"
        )
    }
    if importances := search.param_importances(study):
        figures["param_importances.png"] = plots.param_importances(
            importances, f"{name}: what {settings.metric} depends on"
        )
    return {f"best_{settings.metric}": float(best["value"])}, figures


@dataclass(frozen=True)
class TrialContext:
    """Where a trial reports, picklable so that worker processes and Ray tasks get it: the
    sweep's record, and the folder of its per-epoch backups (None: no backups)."""

    sweep: SweepRecord
    checkpoint_dir: str | None


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
    _quiet_libraries()
    row = _trial_row(trial)
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
            specifications = {f"spec.{k}": v for k, v in outcome.specifications.items()}
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
        failed = {"state": "failed", "params": nan, "test_mse": nan, "mse_ratio": nan}
        row = {**row, **failed, "solved": 0.0, "train_seconds": nan}
        failure = one_line(error)
        return TrialReport(row, {}, run_id, failure, run_name=trial.run_name)
    # As the run holds them, so that a resumed sweep's rows read back the same columns.
    last_epoch = {"train_loss": outcome.history["loss"][-1]}
    for key in ("val_loss", "val_ratio", "val_accuracy"):
        if outcome.history.get(key):
            last_epoch[key] = outcome.history[key][-1]
    state = "pruned" if outcome.pruned_at else "complete"
    row = {**row, "state": state, "params": outcome.model.count_params()}
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


@dataclass(frozen=True)
class SearchSlot:
    """The ``number``-th trial an Optuna search asks its study for, before it is sampled: what
    the sweep hands a worker and waits on."""

    number: int
    work: float  # as Trial.work, for the ETA: that of the trial the plan checked

    @property
    def digest(self) -> str:
        return f"search-{self.number}"

    @property
    def run_name(self) -> str:
        return f"search trial {self.number}"


def search_trial(
    slot: SearchSlot,
    settings: SearchSettings,
    template: Trial,
    context: TrialContext,
    stop: threading.Event | None = None,
) -> TrialReport:
    """One trial of an Optuna search, in whichever process runs it: ask the study for a point
    (``template``'s config with sampled values), run it as :func:`timed_trial` does, reporting
    each epoch's metric to the study's pruner, and tell the study how it ended: its last
    value, pruned, or failed. Its child run's params include the sampled values and the
    Optuna trial's number (``search_trial``)."""
    start = time.perf_counter()
    study = search.open_study(settings, search.trial_seed(settings, slot.number))
    asked = study.ask()
    number = search.origin(asked)
    sampled = search.sample(asked, settings.space)
    try:
        sampled, point = resolve_point(template.config, sampled)
    except ConfigError as error:  # a combination of values the plan's probes did not meet
        study.tell(asked, state=TrialState.FAIL)
        label = f"#{number} {point_label(sampled)}"
        run_name = f"{slot.run_name} ({point_label(sampled)})"
        row = {
            "trial": run_name,
            "model": f"{template.model.name} [{label}]",
            "network": template.model.name,
            "point": label,
            "search_trial": number,
            **sampled,
        }
        return TrialReport(
            {**row, "gap": template.gap, "seed": template.seed, "state": "failed"},
            {},
            "",
            str(error),
            seconds=time.perf_counter() - start,
            process=os.getpid(),
            run_name=run_name,
        )
    # The series' folds the plan prepared serve every point that leaves the data as it is.
    prepared = template.prepared if point.data == template.config.data else None
    trial = Trial(
        point,
        point.models[0],
        template.gap,
        template.seed,
        f"#{number} {point_label(sampled)}",
        prepared,
        search_trial=number,
        classes=template.classes,
    )
    pruner = search.reporting_pruner(asked, settings.metric)
    searched = {"search_trial": number, **sampled}
    report = timed_trial(trial, context, stop, pruner, searched)
    report = dataclasses.replace(report, row={**report.row, **searched})
    value = report.row.get(settings.metric, float("nan"))
    if report.failure is not None or not np.isfinite(value):
        study.tell(asked, state=TrialState.FAIL)
    elif report.pruned_at is not None:
        study.tell(asked, state=TrialState.PRUNED)
    else:
        study.tell(asked, value)
    return report


def _trial_row(trial: Trial) -> dict[str, Any]:
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


def _first_trial_note(trials: Sequence[Trial]) -> str | None:
    """What the first trial in each process does besides training, where it takes long: fit
    a series' fitted baselines on every fold (forecast.forecasters keeps their forecasts for
    the trials after it). None when there is nothing such."""
    series = [trial.config.data for trial in trials if trial.config.data is not None]
    fitted = list(dict.fromkeys(name for data in series for name in data.baselines))
    if not fitted:
        return None
    names = ", ".join(fitted)  # in the config's order
    folds = max(data.backtest.folds for data in series if data.baselines)
    on = f"each of {folds} folds" if folds > 1 else "the series"
    return (
        f"the first trial in each process also fits {names} on {on}, which can take minutes; "
        "the trials after it reuse those forecasts"
    )


def _stop_when_set(stop: threading.Event) -> keras.callbacks.Callback:
    """A Keras callback that ends training with KeyboardInterrupt once ``stop`` is set."""

    def check(batch: int, logs: dict[str, float] | None = None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt

    return keras.callbacks.LambdaCallback(on_train_batch_end=check)


def _quiet_libraries() -> None:
    # Every trial builds a fresh model, which TensorFlow's retracing heuristic reports as a
    # suspected bug from the sixth trial on; the warning is wrong here.
    tf.get_logger().setLevel("ERROR")
    # MLflow's INFO lines (schema creation, input-example validation) would bury the progress.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # As would the two download bars of each logged model's input-example check; a user who
    # sets the variable keeps their choice.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
