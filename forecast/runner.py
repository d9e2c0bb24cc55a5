"""Run one experiment: every (gap, seed, model) trial, config -> data -> model -> train ->
evaluate, each tracked as an MLflow child run of one parent run."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from forecast import plots, tracking
from forecast.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    project_root,
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
from forecast.tasks import TASKS
from forecast.training import train

GRADIENT_PROBE = 128  # test samples whose input gradients trace the gradient flow
# A trial's fixed cost (building, evaluating, plotting) in time steps of sequence, for the
# ETA; fitted to sine_long_gap on a 2-core machine, where a trial takes ~4 s + 0.05 s a step.
TRIAL_OVERHEAD_STEPS = 80


def run_experiment(
    name: str, config: ExperimentConfig, log: Callable[[str], None] = print
) -> pd.DataFrame:
    """Train and evaluate every trial; returns the per-(model, gap) summary table.

    Everything that can fail on bad input (task parameters, layer options, the series file)
    is checked before the first MLflow run is created.

    Raises:
        ConfigError: bad task parameters or layer options.
        forecast.data.DataError: a series that cannot be loaded or windowed.
    """
    _check_task_and_models(config)
    series = prepare_series(config.data) if config.data is not None else None
    gaps = config.task.gaps if config.task is not None else [config.data.gap]
    trials = [
        (gap, seed, model) for gap in gaps for seed in config.seeds for model in config.models
    ]

    # Every trial builds a fresh model, which TensorFlow's retracing heuristic reports as a
    # suspected bug from the sixth trial on; the warning is wrong here.
    tf.get_logger().setLevel("ERROR")
    # MLflow's INFO lines (schema creation, input-example validation) would bury the progress.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tracking.check_reachable(tracking.tracking_uri())
    tracking.use_experiment(name)
    log(f"{name}: {len(trials)} trials -> MLflow at {tracking.tracking_uri()}")
    source = _source(config)
    parent_params = {
        "source": source,
        "gaps": gaps,
        "seeds": config.seeds,
        "models": [model.name for model in config.models],
        "epochs": config.train.epochs,
    }
    rows = []
    flows: dict[str, np.ndarray] = {}  # gradient flow at the largest gap, for the parent run
    last_metrics: dict[str, float] = {}
    config_hash = config_digest(config)
    checkpoints = project_root() / ".checkpoints" / name
    start = time.perf_counter()
    with tracking.parent_run(name, config.to_dict(), parent_params):
        task_splits: dict[tuple[int, int], Splits] = {}
        for index, (gap, seed, model_config) in enumerate(trials, 1):
            if series is not None:
                splits = series.splits
            else:
                # The models of one (gap, seed) share their data; earlier draws are dropped.
                if (gap, seed) not in task_splits:
                    task_splits = {(gap, seed): _task_splits(config, gap, seed)}
                splits = task_splits[(gap, seed)]
            run_name = f"{model_config.name}-gap{gap}-seed{seed}"
            log(f"[{index}/{len(trials)}] {run_name}: training {config.train.epochs} epochs")
            try:
                outcome = _run_trial(
                    config,
                    model_config,
                    gap,
                    seed,
                    splits,
                    series,
                    checkpoint_dir=checkpoints / f"{run_name}-{config_hash}",
                )
            except TrialFailed as failure:
                # Recorded FAILED in MLflow with its reason; the sweep goes on.
                log(f"[{index}/{len(trials)}] {run_name}: FAILED: {failure}")
                rows.append(_failed_row(model_config.name, gap, seed, failure.parameters))
                continue
            metrics = last_metrics = outcome.metrics
            if gap == max(gaps) and seed == config.seeds[0]:
                flows.update({f"{model_config.name} {k}": v for k, v in outcome.flow.items()})
            rows.append(
                {
                    "model": model_config.name,
                    "gap": gap,
                    "seed": seed,
                    "params": outcome.parameters,
                    **metrics,
                }
            )
            elapsed = time.perf_counter() - start
            # Trial time grows with sequence length, so weigh the remaining trials by theirs.
            base = splits.input_shape[0] - gap + TRIAL_OVERHEAD_STEPS
            done_work = sum(base + g for g, _, _ in trials[:index])
            eta = elapsed / done_work * sum(base + g for g, _, _ in trials[index:])
            log(
                f"[{index}/{len(trials)}] {run_name}: test MSE {metrics['test_mse']:.4g}, "
                f"ratio {metrics['mse_ratio']:.3f}, {metrics['train_seconds']:.1f}s "
                f"(elapsed {elapsed:.0f}s, ETA {eta:.0f}s)"
            )
        trials_table = pd.DataFrame(rows)
        summary = summarize(trials_table)
        if series is not None:
            summary = pd.concat([summary, baseline_rows(last_metrics, gaps[0])], ignore_index=True)
        else:
            solved = max_solved_gap(trials_table, config.solved_ratio)
            tracking.log_metrics({f"max_solved_gap.{m}": g for m, g in solved.items()})
            log("largest solved gap: " + ", ".join(f"{m} {g}" for m, g in solved.items()))
            figure = plots.ratio_vs_gap(seed_intervals(trials_table), config.solved_ratio, name)
            tracking.log_figure(figure, "ratio_vs_gap.png")
        if flows:
            title = f"Gradient flow at gap {max(gaps)}, seed {config.seeds[0]}"
            tracking.log_figure(plots.gradient_flow(flows, title), "gradient_flow.png")
        tracking.log_results_table(trials_table, summary)
    return summary


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]
    parameters: int
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"


def _run_trial(
    config: ExperimentConfig,
    model_config: ModelConfig,
    gap: int,
    seed: int,
    splits: Splits,
    series: SeriesData | None,
    checkpoint_dir: Path,
) -> TrialOutcome:
    """Build, train, evaluate and log one model as a child run of the active parent run.

    Raises:
        TrialFailed: training could not finish (e.g. a NaN loss); the run is recorded FAILED.
    """
    keras.backend.clear_session()  # drop the previous trial's graphs and functions
    keras.utils.set_random_seed(seed)
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
    probe = (splits.x_test[:GRADIENT_PROBE], splits.y_test[:GRADIENT_PROBE])
    flow_at_init = gradient_flow(model, *probe)
    run_name = f"{model_config.name}-gap{gap}-seed{seed}"
    with tracking.child_run(run_name, params, config.to_dict()):
        tracking.log_dataset(
            splits.x_train, splits.y_train, source, f"{source}-gap{gap}-seed{seed}"
        )
        result = train(
            model,
            splits,
            config.train,
            seed,
            callbacks=[tracking.EpochMetricsLogger()],
            checkpoint_dir=checkpoint_dir,
        )
        if result.failure is not None:
            raise TrialFailed(result.failure, params["parameters"])
        predictions, truth = test_forecasts(
            model, splits, series.to_original_units if series else None
        )
        naive = series.naive_forecasts if series else {}
        metrics = score(predictions, truth, splits.y_train, config.solved_ratio, naive)
        metrics["train_seconds"] = result.seconds
        tracking.log_metrics(metrics)
        if config.log_models:
            tracking.log_model(model, splits.x_test)
        flow = {"at init": flow_at_init, "trained": gradient_flow(model, *probe)}
        _log_trial_figures(model, splits, gap, flow, predictions, truth, naive)
    return TrialOutcome(metrics, params["parameters"], flow)


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


def _failed_row(model: str, gap: int, seed: int, parameters: int) -> dict:
    nan = float("nan")
    return {
        "model": model,
        "gap": gap,
        "seed": seed,
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
