"""From an experiment's config to its trials, checked: every sweep point's values, training
settings, data, task and models are tried once here, so that bad input fails in one line before
any MLflow run exists, never in the middle of a sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable

import keras
import numpy as np

from forecast.config import ConfigError, DataConfig, ExperimentConfig, TrainConfig
from forecast.data import DataError, SeriesData, Splits, data_source, prepare_series
from forecast.distributed import STRATEGIES
from forecast.evaluation import METRICS
from forecast.forecasters import baseline_names, check_forecaster
from forecast.models import build_configured, check_saveable
from forecast.sweep import point_label, sweep_points
from forecast.tasks import task_function
from forecast.training import make_optimizer, model_output_shape
from forecast.trial import Trial, embedding_dimension


def plan_trials(
    config: ExperimentConfig,
    log: Callable[[str], None] = lambda step: None,
    prepared: tuple[SeriesData, ...] | None = None,
) -> list[Trial]:
    """Every trial of an experiment: sweep point x gap x seed x model, in that order. An Optuna
    search, whose points are sampled as it runs, plans its one trial without sampled values,
    the template of each it samples; the points it checks probe its space (see
    :func:`forecast.sweep.probe_overrides`).

    Each sweep point is checked first: its config values, its optimizer and strategy, its data
    (the series loads and its windows fit each part; the task draws a sample at every gap with
    its parameters) and every model (the layer builds with its options on that data's shapes,
    and, when models are logged, saves and loads again). ``log`` hears what is being checked,
    as it starts. ``prepared``: ``config.data``'s folds, if already read.

    Raises:
        ConfigError: naming the sweep point, if any, and the key.
        DataError: a series that cannot be loaded or windowed (without a sweep).
    """
    trials, seen = [], set()
    # Per data section: splits with the trials' shapes, and a series' folds, prepared once.
    probes: dict[str, tuple[Splits, tuple[SeriesData, ...] | None]] = {}
    read = {_data_key(config): prepared} if prepared is not None else {}
    points = sweep_points(config)
    searching = config.sweep is not None and config.sweep.search == "optuna"
    for number, (overrides, point) in enumerate(points, 1):
        label = point_label(overrides)
        # Each point builds its models again, and may load other data.
        if searching and number > 1:
            log(f"checking the search space at {label}: its data and models")
        elif len(points) > 1 and not searching:
            log(f"checking sweep point {number}/{len(points)} ({label}): its data and models")
        else:
            log(f"checking the data ({data_source(point)}) and the models")
        try:
            _check_training(point.train)
            _check_evaluation(point)
            probe, folds = _check_data(point, probes, read, log)
            _check_models(point, probe)
            if searching and config.sweep.metric == "val_accuracy" and probe.classes is None:
                raise ConfigError(
                    "sweep.metric: val_accuracy needs a categorical task; use val_ratio"
                )
        except (ConfigError, DataError) as error:
            if not label:
                raise
            raise ConfigError(f"sweep point {label}: {error}") from None
        if searching and number > 1:
            continue  # a probe: its trials are sampled as the search runs
        gaps = point.task.gaps if point.task is not None else [point.data.gap]
        for gap in gaps:
            for seed in point.seeds:
                for model in point.models:
                    trial = Trial(point, model, gap, seed, label, folds, classes=probe.classes)
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


def _check_evaluation(config: ExperimentConfig) -> None:
    for name in config.evaluation.metrics:
        if name not in METRICS:
            raise ConfigError(
                f"evaluation.metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}"
            )


def _data_key(config: ExperimentConfig) -> str:
    """The identity of a config's data: its data section and test windows' step, or its task
    section; two sweep points with equal ones share their data."""
    if config.data is None:
        section = dataclasses.asdict(config.task)
    else:
        section = {"data": dataclasses.asdict(config.data), "step": config.evaluation.step}
    return json.dumps(section, sort_keys=True, default=str)


def _check_data(
    config: ExperimentConfig,
    probes: dict[str, tuple[Splits, tuple[SeriesData, ...] | None]],
    read: dict[str, tuple[SeriesData, ...]],
    log: Callable[[str], None],
) -> tuple[Splits, tuple[SeriesData, ...] | None]:
    """Splits with the shapes of the trials' data, after loading the series (unless ``read``
    has its folds) or drawing the task at every gap (the last gap's draw in all three parts),
    and a series' folds, which the trials then share; each distinct data section is tried
    once. A baseline that will take long is announced on ``log`` with an estimate."""
    key = _data_key(config)
    if key in probes:
        return probes[key]
    if config.data is not None:
        data = config.data
        folds = read.get(key) or tuple(prepare_series(data, config.evaluation.step))
        first = folds[0]
        # Each forecaster is made; a user's is also fitted and run on the first target's past
        # (the statistical ones take seconds a fold, in the trials).
        part = next(iter(first.series.values())) if first.series is not None else first
        _check_seasons(data, part.fit_end)
        for name in baseline_names(data.baselines, data.seasons):
            try:
                past = part.values[: part.fit_end, 0]
                timing = check_forecaster(name, data.seasons, past, data.gap + data.horizon)
            except ValueError as error:
                raise ConfigError(f"data.baselines: {error}") from None
            if timing is not None and (note := _slow_forecaster_note(name, timing, folds, config)):
                log(note)
        probes[key] = (first.splits, folds)
        return probes[key]
    task = config.task
    try:
        function = task_function(task.name)
    except ValueError as error:
        raise ConfigError(f"task.name: {error}") from None
    for gap in task.gaps:
        try:
            drawn = function(TASK_PROBE, gap, 0, **task.params)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"task.params: {error}") from None
        inputs, targets, classes = _check_task_output(task.name, gap, drawn)
    probes[key] = (Splits(inputs, targets, inputs, targets, inputs, targets, classes), None)
    return probes[key]


TASK_PROBE = 2  # samples each task draws at each gap to be checked


def _check_task_output(
    name: str, gap: int, drawn: object
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """A task's draw against the contract of forecast.tasks: ``(inputs, targets)`` of float32
    arrays, inputs (n, time, features) and targets (n, outputs), n as asked, every value
    finite; or ``(inputs, labels, classes)`` with integer labels in ``0 .. classes - 1``.
    Returns (inputs, targets, classes or None)."""
    where = f"task.name: {name} at gap {gap} returned"
    if not isinstance(drawn, tuple) or len(drawn) not in (2, 3):
        raise ConfigError(
            f"{where} {type(drawn).__name__}; expected (inputs, targets) or "
            "(inputs, labels, classes)"
        )
    inputs, targets, *declared = drawn
    classes = declared[0] if declared else None
    if classes is not None and (
        not isinstance(classes, int | np.integer) or isinstance(classes, bool) or classes < 2
    ):
        raise ConfigError(f"{where} classes={classes!r}; expected an integer >= 2")
    for what, array, rank, shape, dtype in (
        ("inputs", inputs, 3, "(n_samples, time, features)", "float32"),
        ("targets", targets, 2, "(n_samples, outputs)", "float32" if classes is None else "int"),
    ):
        if not isinstance(array, np.ndarray):
            kind = type(array).__name__
            raise ConfigError(f"{where} {what} of type {kind}; expected a numpy array")
        if array.ndim != rank or len(array) != TASK_PROBE:
            raise ConfigError(
                f"{where} {what} of shape {array.shape} for {TASK_PROBE} samples; expected {shape}"
            )
        if dtype == "int":
            if not np.issubdtype(array.dtype, np.integer):
                raise ConfigError(f"{where} labels of dtype {array.dtype}; expected integers")
            if array.min() < 0 or array.max() >= classes:
                raise ConfigError(
                    f"{where} labels from {array.min()} to {array.max()}; "
                    f"expected 0 .. {classes - 1} for {classes} classes"
                )
            continue
        if array.dtype != np.float32:
            raise ConfigError(f"{where} {what} of dtype {array.dtype}; expected float32")
        if not np.isfinite(array).all():
            raise ConfigError(f"{where} {what} with NaN or infinite values")
    return inputs, targets, None if classes is None else int(classes)


# Above this estimate a baseline's cost is announced before the run.
SLOW_FORECASTER_SECONDS = 60.0


def _slow_forecaster_note(
    name: str, timing: tuple[float, float], folds: tuple[SeriesData, ...], config: ExperimentConfig
) -> str | None:
    """What baseline ``name`` will cost in all, from its ``timing`` (seconds to fit, seconds to
    forecast from one origin) on the first fold: a fit per fold, series and target, a forecast
    per test origin and target; None where it is under :data:`SLOW_FORECASTER_SECONDS`."""
    fitting, per_origin = timing
    targets = len(folds[0].target_columns)
    series = len(folds[0].series) if folds[0].series is not None else 1
    fits = len(folds) * series * targets
    origins = sum(len(fold.splits.y_test) for fold in folds)
    total = fits * fitting + origins * targets * per_origin
    if total < SLOW_FORECASTER_SECONDS:
        return None
    step = config.evaluation.step
    faster = step * math.ceil(total / SLOW_FORECASTER_SECONDS)
    at_faster = fits * fitting + origins * targets * per_origin * step / faster
    return (
        f"{name} takes about {per_origin:.2g} s an origin: its {origins:,} test origins take "
        f"about {_duration(total)}; evaluation.step: {faster} would take about "
        f"{_duration(at_faster)}"
    )


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _check_seasons(data: DataConfig, past: int) -> None:
    """The first fold's ``past`` steps (before its test part) hold the longest season, which
    the seasonal naive forecast and MASE's scale look back by, and two of it for ``mstl``.

    Raises:
        ConfigError: naming the season, the steps it needs and the steps there are; one line.
    """
    longest = max(data.seasons, default=0)
    needed = 2 * longest if "mstl" in data.baselines else longest
    if past < needed:
        what = "two seasons for mstl" if "mstl" in data.baselines else "one season"
        raise ConfigError(
            f"data.season: {longest} steps needs {needed} steps of past ({what}); the first "
            f"backtest fold of {data.source} has {past} before its test part: give a shorter "
            "season, fewer data.backtest.folds or a longer series"
        )


def _check_models(config: ExperimentConfig, probe: Splits) -> None:
    if probe.classes is not None and config.train.loss == "quantile":
        raise ConfigError(
            "train.loss: quantile needs real-valued targets; this task's are class labels"
        )
    output_shape = model_output_shape(probe.output_shape, config.train)
    for index, model in enumerate(config.models):
        try:
            built = build_configured(
                model,
                probe.input_shape,
                output_shape,
                probe.per_step,
                probe.future_steps,
                probe.static_columns,
                probe.series_count,
                embedding_dimension(config),
            )
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
