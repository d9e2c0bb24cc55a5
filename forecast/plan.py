"""From an experiment's config to its trials, checked: every sweep point's values, training
settings, data, task and models are tried once here, so that bad input fails in one line before
any MLflow run exists, never in the middle of a sweep.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np

from forecast.config import ConfigError, ExperimentConfig, TrainConfig
from forecast.data import DataError
from forecast.distributed import STRATEGIES
from forecast.models import build_configured, check_saveable
from forecast.sweep import point_label, sweep_points
from forecast.tasks import task_function
from forecast.training import make_optimizer
from forecast.trial import Trial, prepare_series


def plan_trials(config: ExperimentConfig) -> list[Trial]:
    """Every trial of an experiment: sweep point x gap x seed x model, in that order.

    Each sweep point is checked first: its config values, its optimizer and strategy, its data
    (the series loads and its windows fit each part; the task draws a sample at every gap with
    its parameters) and every model (the layer builds with its options on that data's shapes,
    and, when models are logged, saves and loads again).

    Raises:
        ConfigError: naming the sweep point, if any, and the key.
        DataError: a series that cannot be loaded or windowed (without a sweep).
    """
    trials, seen = [], set()
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}  # per data section
    for overrides, point in sweep_points(config):
        label = point_label(overrides)
        try:
            _check_training(point.train)
            input_shape, output_shape = _check_data(point, shapes)
            _check_models(point, input_shape, output_shape)
        except (ConfigError, DataError) as error:
            if not label:
                raise
            raise ConfigError(f"sweep point {label}: {error}") from None
        gaps = point.task.gaps if point.task is not None else [point.data.gap]
        for gap in gaps:
            for seed in point.seeds:
                for model in point.models:
                    trial = Trial(point, model, gap, seed, label)
                    if trial.digest not in seen:  # random draws can repeat a point
                        seen.add(trial.digest)
                        trials.append(trial)
    return trials


def _check_training(train: TrainConfig) -> None:
    try:
        make_optimizer(train.optimizer, train.learning_rate, train.clipnorm)
    except ValueError:
        raise ConfigError(
            f"train.optimizer: unknown optimizer {train.optimizer!r}; use a name of "
            "keras.optimizers, e.g. adam, adamw, rmsprop, sgd"
        ) from None
    if train.strategy not in STRATEGIES:
        raise ConfigError(
            f"train.strategy: unknown strategy {train.strategy!r}; "
            f"choose one of {', '.join(STRATEGIES)}"
        )


def _check_data(
    config: ExperimentConfig, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, output shape) of one sample, after loading the series or drawing the task
    at every gap; each distinct data section is tried once."""
    section = config.data if config.data is not None else config.task
    key = json.dumps(dataclasses.asdict(section), sort_keys=True, default=str)
    if key in shapes:
        return shapes[key]
    if config.data is not None:
        splits = prepare_series(config.data).splits
        shapes[key] = (splits.input_shape, splits.output_shape)
        return shapes[key]
    task = config.task
    try:
        function = task_function(task.name)
    except ValueError as error:
        raise ConfigError(f"task.name: {error}") from None
    for gap in task.gaps:
        try:
            inputs, targets = function(TASK_PROBE, gap, 0, **task.params)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"task.params: {error}") from None
        _check_task_output(task.name, gap, inputs, targets)
    shapes[key] = (inputs.shape[1:], targets.shape[1:])
    return shapes[key]


TASK_PROBE = 2  # samples each task draws at each gap to be checked


def _check_task_output(name: str, gap: int, inputs: object, targets: object) -> None:
    """A task's draw against the contract of forecast.tasks: float32 arrays, inputs (n, time,
    features) and targets (n, outputs), n as asked, and every value finite."""
    where = f"task.name: {name} at gap {gap} returned"
    for what, array, rank, shape in (
        ("inputs", inputs, 3, "(n_samples, time, features)"),
        ("targets", targets, 2, "(n_samples, outputs)"),
    ):
        if not isinstance(array, np.ndarray):
            kind = type(array).__name__
            raise ConfigError(f"{where} {what} of type {kind}; expected a numpy array")
        if array.ndim != rank or len(array) != TASK_PROBE:
            raise ConfigError(
                f"{where} {what} of shape {array.shape} for {TASK_PROBE} samples; expected {shape}"
            )
        if array.dtype != np.float32:
            raise ConfigError(f"{where} {what} of dtype {array.dtype}; expected float32")
        if not np.isfinite(array).all():
            raise ConfigError(f"{where} {what} with NaN or infinite values")


def _check_models(
    config: ExperimentConfig, input_shape: tuple[int, ...], output_shape: tuple[int, ...]
) -> None:
    for index, model in enumerate(config.models):
        try:
            built = build_configured(model, input_shape, output_shape)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"models.{index}: {error}") from None
        if config.log_models:  # else a trial would fail after training, as its model is logged
            try:
                check_saveable(built)
            except ValueError as error:
                name = model.builder or model.layer
                raise ConfigError(
                    f"models.{index}: {name} {error} (or set log_models: false)"
                ) from None
    keras.backend.clear_session(free_memory=False)  # the checks' models are not needed again
