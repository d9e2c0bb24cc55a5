"""Run one experiment: every (gap, seed, model) trial, config -> data -> model -> train ->
evaluate, each tracked as an MLflow child run of one parent run."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf

from forecast import plots, tracking
from forecast.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    point_label,
    project_root,
    sweep_points,
)
from forecast.data import SeriesData, Splits, load_series, series_splits, synthetic_splits
from forecast.evaluation import (
    baseline_rows,
    gradient_flow,
    max_solved_gap,
    score,
    seed_intervals,
    summarize,
    test_forecasts,
)
from forecast.layers import LSTM
from forecast.models import build_model
from forecast.parallel import check_backend, process_pool, run_in_pool, run_on_ray
from forecast.tasks import TASKS
from forecast.training import is_chief, make_strategy, train

# Imported by each local worker process as it starts, before its first trial.
WORKER_PRELOAD = ("forecast.runner",)
GRADIENT_PROBE = 128  # test samples whose input gradients trace the gradient flow
# A trial's fixed cost (building, evaluating, plotting) in time steps of sequence, for the
# ETA; fitted to sine_long_gap on a 2-core machine, where a trial takes ~4 s + 0.05 s a step.
TRIAL_OVERHEAD_STEPS = 80


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
            "source": _source(config),
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


@dataclass(frozen=True)
class Trial:
    """One unit of work: a model trained on one gap with one seed, at one sweep point."""

    config: ExperimentConfig  # resolved for the sweep point
    model: ModelConfig
    gap: int
    seed: int
    point: str = ""  # the sweep point's label, "" without a sweep

    @property
    def label(self) -> str:
        """The model's name in tables and plots: with its sweep point, if any."""
        return f"{self.model.name} [{self.point}]" if self.point else self.model.name

    @property
    def run_name(self) -> str:
        base = f"{self.model.name}-gap{self.gap}-seed{self.seed}"
        return f"{base} {self.point}" if self.point else base

    @property
    def digest(self) -> str:
        """Identifies the trial across invocations, for resuming: changes with any setting."""
        key = {"config": self.config.to_dict(), "model": self.model.name}
        text = json.dumps({**key, "gap": self.gap, "seed": self.seed}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def work(self) -> float:
        """Relative cost, for the ETA: sequence length plus a fixed overhead, times epochs."""
        length = self.gap + (self.config.data.input_width if self.config.data else 20)
        return (length + TRIAL_OVERHEAD_STEPS) * self.config.train.epochs


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


@dataclass(frozen=True)
class TrialContext:
    """Where a trial reports, picklable so that worker processes and Ray tasks get it."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    checkpoint_dir: str


@dataclass(frozen=True)
class TrialResult:
    row: dict  # the trial's line in the trials table
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"; empty if it failed
    failure: str | None = None


def execute_trial(trial: Trial, context: TrialContext) -> TrialResult:
    """Run one trial wherever it is called (this process, a worker, a Ray task) and record it
    as a child run of the sweep. A failure is recorded FAILED and returned, not raised, so the
    sweep goes on."""
    mlflow.set_tracking_uri(context.tracking_uri)
    mlflow.set_experiment(experiment_id=context.experiment_id)
    tf.get_logger().setLevel("ERROR")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    strategy = make_strategy(trial.config.train.strategy)  # one per process, reused
    splits, series = _trial_data(trial.config, trial.gap, trial.seed)
    checkpoint = Path(context.checkpoint_dir) / f"{trial.run_name}-{trial.digest}".replace(" ", "_")
    row = {"model": trial.label, "gap": trial.gap, "seed": trial.seed}
    try:
        outcome = _run_trial(trial, splits, series, context, checkpoint, strategy)
    except TrialFailed as failure:
        return TrialResult(_failed_row(row, failure.parameters), {}, str(failure))
    row = {**row, "params": outcome.parameters, **outcome.metrics}
    return TrialResult(row, outcome.flow)


_data_cache: dict[str, tuple[Splits, SeriesData | None]] = {}


def _trial_data(config: ExperimentConfig, gap: int, seed: int) -> tuple[Splits, SeriesData | None]:
    """The trial's splits; the models of one (data, gap, seed) share them within a process,
    and only the latest draw is kept."""
    section = config.data if config.data is not None else config.task
    key = json.dumps([dataclasses.asdict(section), gap, seed], sort_keys=True, default=str)
    if key not in _data_cache:
        _data_cache.clear()
        if config.data is not None:
            series = prepare_series(config.data)
            _data_cache[key] = (series.splits, series)
        else:
            _data_cache[key] = (_task_splits(config, gap, seed), None)
    return _data_cache[key]


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]
    parameters: int
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"


def _run_trial(
    trial: Trial,
    splits: Splits,
    series: SeriesData | None,
    context: TrialContext,
    checkpoint_dir: Path,
    strategy: tf.distribute.Strategy | None = None,
) -> TrialOutcome:
    """Build, train, evaluate and log one model as a child run of the sweep's parent run.

    Raises:
        TrialFailed: training could not finish (a NaN loss) or the trial raised; the run is
            recorded FAILED with the reason.
    """
    config, model_config, gap, seed = trial.config, trial.model, trial.gap, trial.seed
    keras.backend.clear_session()  # drop the previous trial's graphs and functions
    keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(
            model_config.layer,
            model_config.units,
            splits.input_shape,
            splits.output_shape,
            **model_config.options,
        )
    source = _source(config)
    params = {
        "model": model_config.name,
        "layer": model_config.layer,
        "units": model_config.units,
        "gap": gap,
        "seed": seed,
        "parameters": model.count_params(),
        "source": source,
        "n_train": len(splits.x_train),
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "clipnorm": config.train.clipnorm,
        "variant": _variant(model_config.options),
    }
    if trial.point:
        params["sweep_point"] = trial.point
    probe = (splits.x_test[:GRADIENT_PROBE], splits.y_test[:GRADIENT_PROBE])
    flow_at_init = gradient_flow(model, *probe)
    with tracking.child_run(
        trial.run_name, params, config.to_dict(), context.parent_run_id, trial.digest
    ):
        try:
            metrics, flow = _train_and_evaluate(
                model, trial, splits, series, flow_at_init, probe, checkpoint_dir, strategy
            )
        except TrialFailed:
            raise
        except Exception as error:  # one bad trial ends only itself; child_run records it
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            raise TrialFailed(reason, params["parameters"]) from error
    return TrialOutcome(metrics, params["parameters"], flow)


def _train_and_evaluate(
    model: keras.Model,
    trial: Trial,
    splits: Splits,
    series: SeriesData | None,
    flow_at_init: np.ndarray,
    probe: tuple[np.ndarray, np.ndarray],
    checkpoint_dir: Path,
    strategy: tf.distribute.Strategy | None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The body of a trial's run: data, training, test metrics, model and figures."""
    config, gap, seed = trial.config, trial.gap, trial.seed
    source = _source(config)
    tracking.log_dataset(splits.x_train, splits.y_train, source, f"{source}-gap{gap}-seed{seed}")
    result = train(
        model,
        splits,
        config.train,
        seed,
        callbacks=[tracking.EpochMetricsLogger()],
        checkpoint_dir=checkpoint_dir,
        strategy=strategy,
    )
    if result.failure is not None:
        raise TrialFailed(result.failure, model.count_params())
    predictions, truth = test_forecasts(model, splits, series.to_original_units if series else None)
    naive = series.naive_forecasts if series else {}
    metrics = score(predictions, truth, splits.y_train, config.solved_ratio, naive)
    metrics["train_seconds"] = result.seconds
    tracking.log_metrics(metrics)
    if config.log_models:
        tracking.log_model(model, splits.x_test)
    flow = {"at init": flow_at_init, "trained": gradient_flow(model, *probe)}
    _log_trial_figures(model, splits, gap, flow, predictions, truth, naive)
    return metrics, flow


def _log_trial_figures(
    model: keras.Model,
    splits: Splits,
    gap: int,
    flow: dict[str, np.ndarray],
    predictions: np.ndarray,
    truth: np.ndarray,
    naive: dict[str, np.ndarray],
) -> None:
    """Gradient flow, test forecasts and, for an LSTM, its gates, on the active run."""
    tracking.log_figure(plots.gradient_flow(flow), "gradient_flow.png")
    baselines = naive or {"mean": splits.y_train.mean(axis=0, keepdims=True)}
    tracking.log_figure(plots.forecast(truth, predictions, baselines), "forecast.png")
    recurrent = model.layers[0]
    if isinstance(recurrent, LSTM):
        activations = recurrent.gate_activations(splits.x_test[:1])  # plots.gates shows one
        tracking.log_figure(plots.gates(activations, gap), "gates.png")


def _source(config: ExperimentConfig) -> str:
    """What the data comes from: the task's name or the series' source."""
    return config.task.name if config.task is not None else config.data.source


def _variant(options: dict) -> str:
    """The layer options as one readable param, e.g. ``chrono_init=400`` or ``standard``."""
    return ",".join(f"{key}={value}" for key, value in sorted(options.items())) or "standard"


class TrialFailed(RuntimeError):
    """A trial that could not produce a model, such as one whose loss became NaN."""

    def __init__(self, reason: str, parameters: int) -> None:
        super().__init__(reason)
        self.parameters = parameters


def config_digest(config: ExperimentConfig) -> str:
    """A short hash of the resolved config, so checkpoints never resume a different setup."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _failed_row(row: dict, parameters: int) -> dict:
    nan = float("nan")
    return {
        **row,
        "params": parameters,
        "test_mse": nan,
        "mse_ratio": nan,
        "solved": 0.0,
        "train_seconds": nan,
    }


def prepare_series(data: DataConfig) -> SeriesData:
    """Load, validate, split, scale and window the series of a ``data`` config section."""
    columns = None
    if data.feature_columns is not None or data.target_columns is not None:
        columns = list(dict.fromkeys([*(data.feature_columns or []), *(data.target_columns or [])]))
    frame = load_series(data.source, data.time_column, columns, data.fillna)
    return series_splits(
        frame,
        data.input_width,
        data.horizon,
        data.gap,
        data.stride,
        data.feature_columns,
        data.target_columns,
        data.val_fraction,
        data.test_fraction,
        data.scaler,
        data.relative,
        data.season,
    )


def _task_splits(config: ExperimentConfig, gap: int, seed: int) -> Splits:
    task = config.task
    return synthetic_splits(
        TASKS[task.name], gap, seed, task.n_train, task.n_val, task.n_test, **task.params
    )


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
