"""Run one experiment: every (gap, seed, model) trial, config -> data -> model -> train ->
evaluate, each tracked as an MLflow child run of one parent run."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import pandas as pd
import tensorflow as tf

from forecast import tracking
from forecast.config import ConfigError, ExperimentConfig
from forecast.data import synthetic_splits
from forecast.evaluation import evaluate, max_solved_gap, summarize
from forecast.models import build_model
from forecast.tasks import TASKS
from forecast.training import train


def run_experiment(
    name: str, config: ExperimentConfig, log: Callable[[str], None] = print
) -> pd.DataFrame:
    """Train and evaluate every trial; returns the per-(model, gap) summary table."""
    _preflight(config)
    resolved = config.to_dict()
    task = TASKS[config.task.name]
    trials = [
        (gap, seed, model)
        for gap in config.task.gaps
        for seed in config.seeds
        for model in config.models
    ]
    # Every trial builds a fresh model, which TensorFlow's retracing heuristic reports as a
    # suspected bug from the sixth trial on; the warning is wrong here.
    tf.get_logger().setLevel("ERROR")
    tracking.use_experiment(name)
    log(f"{name}: {len(trials)} trials -> MLflow at {tracking.tracking_uri()}")
    rows = []
    start = time.perf_counter()
    with tracking.parent_run(name, resolved):
        splits = None
        for index, (gap, seed, model_config) in enumerate(trials, 1):
            if index == 1 or (gap, seed) != (trials[index - 2][0], trials[index - 2][1]):
                # The models of one (gap, seed) share their data.
                splits = synthetic_splits(
                    task,
                    gap,
                    seed,
                    config.task.n_train,
                    config.task.n_val,
                    config.task.n_test,
                    **config.task.params,
                )
            run_name = f"{model_config.name}-gap{gap}-seed{seed}"
            log(f"[{index}/{len(trials)}] {run_name}: training {config.train.epochs} epochs")
            keras.backend.clear_session()  # drop the previous trial's graphs and functions
            keras.utils.set_random_seed(seed)
            model = build_model(
                model_config.layer,
                model_config.units,
                splits.input_shape,
                splits.output_size,
                **model_config.options,
            )
            params = {
                "model": model_config.name,
                "layer": model_config.layer,
                "units": model_config.units,
                "gap": gap,
                "seed": seed,
                "parameters": model.count_params(),
                "task": config.task.name,
                "n_train": config.task.n_train,
                "epochs": config.train.epochs,
                "batch_size": config.train.batch_size,
                "learning_rate": config.train.learning_rate,
                "clipnorm": config.train.clipnorm,
                **{f"option.{key}": value for key, value in model_config.options.items()},
            }
            with tracking.child_run(run_name, params, resolved):
                result = train(
                    model, splits, config.train, callbacks=[tracking.EpochMetricsLogger()]
                )
                metrics = evaluate(model, splits, config.solved_ratio)
                metrics["train_seconds"] = result.seconds
                tracking.log_metrics(metrics)
            rows.append(
                {
                    "model": model_config.name,
                    "gap": gap,
                    "seed": seed,
                    "params": params["parameters"],
                    **metrics,
                }
            )
            elapsed = time.perf_counter() - start
            eta = elapsed / index * (len(trials) - index)
            log(
                f"[{index}/{len(trials)}] {run_name}: test MSE {metrics['test_mse']:.4g}, "
                f"ratio {metrics['mse_ratio']:.3f}, {result.seconds:.1f}s "
                f"(elapsed {elapsed:.0f}s, ETA {eta:.0f}s)"
            )
        trials_table = pd.DataFrame(rows)
        summary = summarize(trials_table)
        tracking.log_results_table(trials_table, summary)
        tracking.log_metrics(
            {f"max_solved_gap.{model}": gap for model, gap in max_solved_gap(trials_table).items()}
        )
    return summary


def _preflight(config: ExperimentConfig) -> None:
    """Draw a tiny task sample and build each model once, so that bad task parameters or layer
    options fail with a config error before any MLflow run exists."""
    try:
        TASKS[config.task.name](2, min(config.task.gaps), 0, **config.task.params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task.params: {error}") from None
    for index, model_config in enumerate(config.models):
        try:
            build_model(model_config.layer, model_config.units, (4, 1), 1, **model_config.options)
        except ValueError as error:
            raise ConfigError(f"models.{index}: {error}") from None
