"""Run one experiment: expand its sweep into trials (sweep point x gap x seed x model), run
them here, in worker processes or on Ray (see forecast.trial for one trial), and summarise
them on the sweep's MLflow parent run."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import tensorflow as tf

from forecast import plots, tracking
from forecast.config import ConfigError, ExperimentConfig, point_label, project_root, sweep_points
from forecast.evaluation import baseline_rows, max_solved_gap, seed_intervals, summarize
from forecast.models import build_model
from forecast.parallel import check_backend, connect_ray, process_pool, run_in_pool, run_on_ray
from forecast.tasks import TASKS
from forecast.training import is_chief, make_strategy
from forecast.trial import (
    Trial,
    TrialContext,
    TrialResult,
    data_source,
    execute_trial,
    prepare_series,
)

# Imported by each local worker process as it starts, before its first trial.
WORKER_PRELOAD = ("forecast.trial",)


def run_experiment(
    name: str,
    config: ExperimentConfig,
    log: Callable[[str], None] = print,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> pd.DataFrame:
    """Train and evaluate every trial; returns the per-(model, gap) summary table.

    A trial is one (sweep point, gap, seed, model). ``workers`` > 1 runs trials in that many
    local processes; ``backend="ray"`` runs them as Ray tasks (on ``ray_address``, or a local
    Ray), at most ``workers`` at once if given. Re-running a sweep that was interrupted resumes
    it: trials already FINISHED in its MLflow parent run are skipped (matched by a hash of
    their resolved config).

    Everything that can fail on bad input (sweep keys, task parameters, layer options, the
    series file, workers, the Ray address) is checked before the first MLflow run is created.

    Raises:
        ConfigError: bad sweep, task parameters, layer options or backend settings.
        forecast.data.DataError: a series that cannot be loaded or windowed.
        forecast.tracking.TrackingError: an unreachable tracking server.
    """
    check_backend(backend, workers, ray_address)
    multi_worker = config.train.strategy == "multi_worker"
    if multi_worker and (backend != "local" or (workers or 1) > 1):
        raise ConfigError(
            "train.strategy=multi_worker: every process in TF_CONFIG runs the sweep together; "
            "use the local backend with one worker"
        )
    # Before any other TensorFlow work: collective ops are configured at start-up.
    strategy = make_strategy(config.train.strategy) if multi_worker else None
    points = sweep_points(config)
    for _, point in points:
        _check_task_and_models(point)
    if config.data is not None:
        prepare_series(config.data)  # a bad series fails here, once, not in every trial
    trials = _trials(points)
    if backend == "ray":
        nodes = connect_ray(ray_address)
        uri = tracking.tracking_uri()
        if nodes > 1 and tracking.is_local_store(uri):
            raise ConfigError(
                f"--backend ray: the cluster has {nodes} nodes, but MLflow logs to {uri} on this "
                "machine only; set MLFLOW_TRACKING_URI to a server every node reaches"
            )
    if is_chief(strategy):
        return _run_sweep(name, config, trials, len(points), log, workers, backend, ray_address)
    # The other workers of a multi-worker cluster train the same trials in step with the chief
    # but leave the record to it: their runs go to a private store, deleted afterwards.
    with tempfile.TemporaryDirectory() as scratch:
        shared = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch}/mlflow.db"
        try:
            return _run_sweep(name, config, trials, len(points), log, workers, backend, None)
        finally:
            if shared is None:
                del os.environ["MLFLOW_TRACKING_URI"]
            else:
                os.environ["MLFLOW_TRACKING_URI"] = shared


def _run_sweep(
    name: str,
    config: ExperimentConfig,
    trials: list[Trial],
    n_points: int,
    log: Callable[[str], None],
    workers: int | None,
    backend: str,
    ray_address: str | None,
) -> pd.DataFrame:
    """Run the trials under one parent run (a new one, or the interrupted one it resumes)."""
    # Every trial builds a fresh model, which TensorFlow's retracing heuristic reports as a
    # suspected bug from the sixth trial on; the warning is wrong here.
    tf.get_logger().setLevel("ERROR")
    # MLflow's INFO lines (schema creation, input-example validation) would bury the progress.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tracking.check_reachable(tracking.tracking_uri())
    local_pool = backend == "local" and (workers or 1) > 1
    # Workers start now, importing TensorFlow while this process sets up the MLflow runs.
    pool = process_pool(workers, WORKER_PRELOAD) if local_pool else contextlib.nullcontext()
    with pool as pool:
        experiment_id = tracking.use_experiment(name)
        sweep_hash = config_digest(config)
        # Multi-worker processes must run the same trials in step; only the chief sees the
        # store, so none of them resumes.
        resume = config.train.strategy != "multi_worker"
        resume_id = tracking.unfinished_sweep(experiment_id, sweep_hash) if resume else None
        gaps = sorted({trial.gap for trial in trials})
        parent_params = {
            "source": data_source(config),
            "gaps": gaps,
            "seeds": config.seeds,
            "models": [model.name for model in config.models],
            "epochs": config.train.epochs,
            "sweep_points": n_points,
        }
        with tracking.parent_run(
            name, config.to_dict(), parent_params, sweep_hash, resume_id
        ) as parent:
            done = tracking.finished_trials(resume_id) if resume_id else {}
            rows = [done[trial.digest] for trial in trials if trial.digest in done]
            pending = [trial for trial in trials if trial.digest not in done]
            where = f"{workers} workers" if local_pool else "1 process"
            where = "Ray" if backend == "ray" else where
            log(
                f"{name}: {len(trials)} trials on {where} -> MLflow at {tracking.tracking_uri()}"
                + (f" (resuming run {resume_id}: {len(rows)} finished)" if resume_id else "")
            )
            context = TrialContext(
                tracking_uri=tracking.tracking_uri(),
                experiment_id=experiment_id,
                parent_run_id=parent.info.run_id,
                checkpoint_dir=str(project_root() / ".checkpoints" / name),
            )
            run = functools.partial(execute_trial, context=context)
            if backend == "ray":
                results = run_on_ray(run, pending, ray_address, max_in_flight=workers)
            elif pool is not None:
                results = run_in_pool(pool, run, pending)
            else:
                results = ((trial, run(trial)) for trial in pending)
            new_rows, flows = _collect(results, pending, gaps[-1], config.seeds[0], log)
            rows += new_rows
            summary = _log_summary(name, config, pd.DataFrame(rows), flows, gaps, log)
    return summary


def _collect(
    results: Iterator[tuple[Trial, TrialResult]],
    pending: list[Trial],
    flow_gap: int,
    flow_seed: int,
    log: Callable[[str], None],
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The trials' rows as results arrive, with a progress line each; and the gradient flows
    of the trials at ``flow_gap`` and ``flow_seed``, for the parent run's figure."""
    rows, flows = [], {}
    start = time.perf_counter()
    total_work = sum(trial.work for trial in pending)
    done_work = 0.0
    for index, (trial, result) in enumerate(results, 1):
        rows.append(result.row)
        prefix = f"[{index}/{len(pending)}] {trial.run_name}"
        done_work += trial.work
        elapsed = time.perf_counter() - start
        # Trial time grows with sequence length, so weigh the remaining trials by theirs.
        eta = elapsed / done_work * (total_work - done_work)
        if result.failure is not None:
            log(f"{prefix}: FAILED: {result.failure}")
            continue
        if trial.gap == flow_gap and trial.seed == flow_seed:
            flows.update({f"{trial.label} {k}": v for k, v in result.flow.items()})
        metrics = result.row
        log(
            f"{prefix}: test MSE {metrics['test_mse']:.4g}, "
            f"ratio {metrics['mse_ratio']:.3f}, {metrics['train_seconds']:.1f}s "
            f"(elapsed {elapsed:.0f}s, ETA {eta:.0f}s)"
        )
    return rows, flows


def _log_summary(
    name: str,
    config: ExperimentConfig,
    trials_table: pd.DataFrame,
    flows: dict[str, np.ndarray],
    gaps: list[int],
    log: Callable[[str], None],
) -> pd.DataFrame:
    """The sweep's summary table, solved gaps and figures, on the parent run."""
    summary = summarize(trials_table)
    if config.data is not None:
        finished = trials_table.dropna(subset=["test_mse"])
        if len(finished):
            last = finished.iloc[-1].to_dict()
            summary = pd.concat([summary, baseline_rows(last, gaps[0])], ignore_index=True)
    else:
        solved = max_solved_gap(trials_table, config.solved_ratio)
        tracking.log_metrics({f"max_solved_gap.{_metric_key(m)}": g for m, g in solved.items()})
        log("largest solved gap: " + ", ".join(f"{m} {g}" for m, g in solved.items()))
        figure = plots.ratio_vs_gap(seed_intervals(trials_table), config.solved_ratio, name)
        tracking.log_figure(figure, "ratio_vs_gap.png")
    if flows:
        title = f"Gradient flow at gap {gaps[-1]}, seed {config.seeds[0]}"
        tracking.log_figure(plots.gradient_flow(flows, title), "gradient_flow.png")
    tracking.log_results_table(trials_table, summary)
    return summary


def _metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits and ``_-./ `` only; a sweep label has more."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in label)


def _trials(points: list[tuple[dict, ExperimentConfig]]) -> list[Trial]:
    trials, seen = [], set()
    for overrides, point in points:
        gaps = point.task.gaps if point.task is not None else [point.data.gap]
        label = point_label(overrides)
        for gap in gaps:
            for seed in point.seeds:
                for model in point.models:
                    trial = Trial(point, model, gap, seed, label)
                    if trial.digest not in seen:  # random draws can repeat a point
                        seen.add(trial.digest)
                        trials.append(trial)
    return trials


def config_digest(config: ExperimentConfig) -> str:
    """A short hash of the resolved config: a re-run with the same one resumes its sweep."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_task_and_models(config: ExperimentConfig) -> None:
    """Draw a tiny task sample and build each model once, so that bad task parameters or layer
    options fail with a config error before any MLflow run exists."""
    if config.task is not None:
        try:
            TASKS[config.task.name](2, min(config.task.gaps), 0, **config.task.params)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"task.params: {error}") from None
    for index, model_config in enumerate(config.models):
        try:
            build_model(
                model_config.layer, model_config.units, (4, 1), (1,), **model_config.options
            )
        except ValueError as error:
            raise ConfigError(f"models.{index}: {error}") from None
