"""Experiment configuration: plain dataclasses loaded from ``experiments/NAME.yaml``.

A YAML file sets any subset of the fields below; ``--set key=value`` overrides them by dotted
path (``train.epochs=2``, ``task.gaps=[10,20]``, ``models.0.units=8``). Every key is checked:
a misspelt key is an error, never silently ignored.

This module checks what the config alone can tell (keys, types, ranges). What needs the rest of
the package (a task's parameters, a layer's options, whether windows fit the series) is checked
for every sweep point by :func:`forecast.plan.plan_trials`, before any run exists.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forecast.paths import experiments_dir


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line."""


@dataclass
class TaskConfig:
    name: str = "sine_long_gap"  # a function of forecast.tasks, or package.module:function
    gaps: list[int] = field(default_factory=lambda: [10, 50, 100])
    n_train: int = 2048
    n_val: int = 512
    n_test: int = 512
    params: dict[str, Any] = field(default_factory=dict)  # extra arguments of the task function


@dataclass
class BacktestConfig:
    """Rolling-origin evaluation (see forecast.data.fold_bounds)."""

    folds: int = 1  # consecutive test folds cut from the series' last test_fraction; 1: one split
    # Train anew on everything before each fold (true), before every k-th fold (an integer k),
    # or once, on the first fold's past, then slide (false).
    refit: bool | int = True


@dataclass
class DataConfig:
    """A real series, or many in one table (see forecast.data.load_series, load_panel and
    series_splits for each key)."""

    source: str = ""  # a dataset name in datasets/ (co2, sunspots) or a CSV path
    # Many series in one long-format table: the column naming each row's series. One model
    # trains on all of them (see forecast.data.load_panel and panel_splits).
    series_column: str | None = None
    time_column: str | None = None
    # Past covariates, read over the input window: all value columns but future_columns by
    # default.
    feature_columns: list[str] | None = None
    target_columns: list[str] | None = None  # the feature columns by default
    # Future-known covariates (see forecast.data.covariates): columns given for every step,
    # the horizon's included (a planned promotion, a price), and calendar features of the time
    # column as sin/cos pairs: month, week_of_year, day_of_month, day_of_week, day_of_year, hour.
    future_columns: list[str] | None = None
    calendar: list[str] = field(default_factory=list)
    # A panel's static covariates: numeric columns constant within each series (a site's
    # altitude), given to the model with every window of their series, never read as features
    # (see forecast.data.panels and forecast.models.build_model).
    static_columns: list[str] = field(default_factory=list)
    # A panel: a learned embedding of each series' identity, of this dimension; null: none.
    series_embedding: int | None = None
    fillna: str | None = None  # None (missing values are an error), ffill, interpolate, drop
    input_width: int = 32
    horizon: int = 1
    gap: int = 0  # steps between the last input and the first target
    stride: int = 1
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    scaler: str = "standard"  # standard, minmax or none; fitted on the train part only
    # A transform of the target before the scaler, fitted on the train part too and undone for
    # the forecasts: log, or boxcox (its lambda fitted); null: none. Values must be positive.
    transform: str | None = None
    # mstl: the network learns the targets less their seasons (MSTL's seasonal profile of every
    # data.season, fitted on the train part) and its forecasts get them back (the hybrid route
    # of Smyl's ES-RNN); null: off. A single series with a time_column, without data.transform.
    deseasonalize: str | None = None
    relative: bool = False  # model each window relative to its last input step
    # Steps per season (12: monthly data with a yearly cycle), or a list of seasons ([48, 336]:
    # half-hourly data with a daily and a weekly cycle). mstl takes every season; the seasonal
    # naive forecast, theta, a user's forecaster and the lag of the naive error that scales MASE
    # and RMSSE take the longest; ets and arima the longest up to 24 steps (see
    # forecast.forecasters).
    season: int | list[int] | None = None
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    # Forecasters scored beside the networks on the same folds, besides the naive ones (naive,
    # seasonal_naive with a season, mean, drift, always there): ets, theta, arima
    # (statsforecast), or a user's class by import path (see forecast.forecasters)
    baselines: list[str] = field(default_factory=list)

    @property
    def seasons(self) -> tuple[int, ...]:
        """``season`` as a tuple, shortest first; empty without one."""
        if self.season is None:
            return ()
        return tuple(sorted([self.season] if isinstance(self.season, int) else self.season))


@dataclass
class EvaluationConfig:
    """How a series' forecasts are scored (see forecast.evaluation)."""

    # The printed table's columns, of mae, rmse, mse, mape, smape, mase, rmsse, coverage, msis,
    # wql; MLflow gets them all.
    metrics: list[str] = field(
        default_factory=lambda: ["mae", "rmse", "mape", "smape", "mase", "coverage"]
    )
    # Calibrate the network's interval on its validation errors, step by step (split
    # conformal): a point model gets an interval of nominal coverage `interval`, a quantile
    # model's outer quantiles are widened or narrowed to theirs. false: a quantile model's raw
    # quantiles, no interval for a point model.
    conformal: bool = True
    interval: float = 0.8
    # Forecast from every step-th origin of each test fold (every forecaster, the networks
    # too): 1 is every test step; a larger step spends less on a forecaster that is slow per
    # origin. The training windows' spacing is data.stride's, not this.
    step: int = 1
    # A series' model trained with several seeds is also scored as one forecaster combining
    # its seeds' forecasts, <model>_ensemble: mean, median, or none.
    ensemble: str = "mean"


@dataclass
class ModelConfig:
    name: str = "lstm"
    layer: str = "LSTM"  # a class of forecast.layers, or an import path package.module:Name
    units: int = 32
    depth: int = 1  # recurrent layers stacked (all but the last return sequences)
    # Instead of a recurrent stack, any model: package.module:function called as
    # function(input_shape, output_shape, **options) -> keras.Model (layer, units, depth unused)
    builder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # extra arguments of the layer


@dataclass
class TrainConfig:
    optimizer: str = "adam"  # any name keras.optimizers.get knows: adam, adamw, rmsprop, sgd...
    learning_rate: float = 3e-3
    clipnorm: float | None = 1.0  # clip each weight's gradient to this norm (Keras'); null: off
    epochs: int = 10
    batch_size: int = 64
    # mse, or quantile: a pinball-loss head forecasting each of `quantiles` (point metrics use
    # the 0.5 quantile, the median). A categorical task trains on cross-entropy either way.
    loss: str = "mse"
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    early_stopping_patience: int | None = None  # epochs without val_loss gain; null: off
    # A series' model is trained again, from its initial weights, on train + validation for
    # the epochs it trained (up to its best val_loss with early stopping): the latest data
    # trains it. The first model's validation errors still calibrate its interval.
    refit: bool = True
    # Give up on a trial whose validation MSE is still above give_up_ratio x the trivial
    # baseline's after give_up_epoch epochs (null: never). Long-gap learning can sit on a
    # plateau for most of a run before it drops, so this is a late, loose test, not patience.
    give_up_epoch: int | None = None
    give_up_ratio: float = 0.9
    checkpoint: bool = True  # back up each epoch, so an interrupted trial resumes
    verbose: int = 0  # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch
    # tf.distribute: default (none), mirrored (all local devices), multi_worker (every process
    # named in TF_CONFIG trains one model together; see forecast.distributed)
    strategy: str = "default"


@dataclass
class SweepConfig:
    """A search over config keys, each point of which runs every (gap, seed, model).

    ``search: grid`` (the default) tries every combination of ``grid``'s values: it maps dotted
    config keys (as ``--set`` takes them) to the values to try.

    ``search: optuna`` runs ``n_trials`` trials of an Optuna study (forecast.search) over
    ``space``: each trial samples one value per key, trains the experiment's one model at its
    one gap and seed, reports ``metric`` after every epoch to the ``pruner``, which may stop it
    early, and tells the study its last value. A space entry is one of
    ``{uniform: [low, high]}``, ``{loguniform: [low, high]}``, ``{randint: [low, high]}``
    (high excluded) or ``{choice: [a, b, ...]}``; the numeric ones also take Optuna's ``step``
    and ``log`` (``{randint: [8, 129], step: 8}``).
    """

    search: str = "grid"  # grid or optuna
    grid: dict[str, list[Any]] = field(default_factory=dict)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_trials: int = 20
    sampler: str = "tpe"  # tpe, random, or cmaes (numeric spaces only)
    # median, successive_halving, hyperband, give_up (train.give_up_epoch and _ratio), none;
    # null: give_up where train.give_up_epoch is set, else median.
    pruner: str | None = None
    prune_after: int = 1  # epochs every trial trains before the pruner may stop it
    # A per-epoch validation value: val_ratio (val_loss over the trivial baseline's, as the
    # give-up rule reads it), val_loss, or a categorical task's val_accuracy.
    metric: str = "val_ratio"
    direction: str | None = None  # minimize or maximize; null: maximize val_accuracy only
    seed: int = 0  # of the sampler, so that a search (and its resume) samples the same way
    # Where the study lives: an SQLAlchemy URL (sqlite, postgresql, mysql); null: optuna.db
    # beside a local mlflow.db, or in the project root for a tracking server.
    storage: str | None = None


@dataclass
class ExperimentConfig:
    description: str = ""
    task: TaskConfig | None = None  # a synthetic task swept over gaps ...
    data: DataConfig | None = None  # ... or a real series; exactly one of the two
    models: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    seeds: list[int] = field(default_factory=lambda: [0])
    solved_ratio: float = 0.1  # a trial solves the task when test MSE / baseline MSE <= this
    log_models: bool = True  # log each trained model to MLflow (a pyfunc model, ~2 s a trial)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    sweep: SweepConfig | None = None  # a grid or an Optuna search over other keys

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def available_experiments() -> dict[str, str]:
    """Experiment name -> its one-line description, for every YAML in :func:`experiments_dir`."""
    found = {}
    for path in sorted(experiments_dir().glob("*.yaml")):
        try:
            description = str((_read_yaml(path) or {}).get("description", ""))
        except ConfigError as error:
            description = f"(unreadable: {error})"
        found[path.stem] = description.strip().splitlines()[0] if description.strip() else ""
    return found


def resolve_experiment_path(name_or_path: str) -> Path:
    """An existing YAML path, or the name of an experiment in :func:`experiments_dir`."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: no such experiment file")
        return path
    candidate = experiments_dir() / f"{name_or_path}.yaml"
    if not candidate.is_file():
        names = ", ".join(available_experiments()) or "none"
        raise ConfigError(f"unknown experiment {name_or_path!r}; available: {names}")
    return candidate


def load_experiment(name_or_path: str, overrides: list[str] = ()) -> tuple[str, ExperimentConfig]:
    """Read an experiment, apply ``key=value`` overrides, validate; returns (name, config)."""
    path = resolve_experiment_path(name_or_path)
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    config = build_config(raw, where=str(path))
    merged = config.to_dict()
    for override in overrides:
        _apply_override(merged, override)
    config = build_config(merged, where="--set")
    validate(config)
    return path.stem, config


def differences(config: dict[str, Any], reference: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted ``key=value`` settings (as ``--set`` takes them) in which ``config`` differs
    from ``reference``, both as :meth:`ExperimentConfig.to_dict` gives them."""
    found = []
    for key, value in config.items():
        other = reference.get(key) if isinstance(reference, dict) else None
        if isinstance(value, dict) and isinstance(other, dict):
            found += differences(value, other, f"{prefix}{key}.")
        elif value != other:
            text = yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()
            found.append(f"{prefix}{key}={text}")
    return found


def build_config(raw: dict[str, Any], where: str) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from plain YAML data, keys and types checked (not values).

    ``where`` (a file, ``--set``, a sweep point) starts every error message.
    """
    return _build(ExperimentConfig, raw, where)


def with_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` as a plain dict with dotted ``overrides`` applied (as ``--set`` applies them).

    Raises:
        ConfigError: a key that is not a config key, naming it.
    """
    merged = copy.deepcopy(config.to_dict())
    for key, value in overrides.items():
        _set_key(merged, key, value, where="sweep")
    return merged


def value_at(config: ExperimentConfig, key: str) -> Any:
    """The value at a dotted ``key`` of ``config``, e.g. ``models.0.units``."""
    node: Any = config.to_dict()
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def validate(config: ExperimentConfig) -> None:
    """Value checks that types alone cannot express.

    Raises:
        ConfigError: naming the first bad key and its value.
    """
    require(
        (config.task is None) != (config.data is None),
        "an experiment needs exactly one of `task` (a synthetic task) and `data` (a series)",
    )
    if config.task is not None:
        _validate_task(config.task)
    else:
        _validate_data(config.data)
    _validate_evaluation(config.evaluation)
    require(len(config.models) > 0, "models: the list of models is empty")
    names = [m.name for m in config.models]
    require(len(set(names)) == len(names), f"models: model names must be unique, got {names}")
    for index, model in enumerate(config.models):
        require(model.units > 0, f"models.{index}.units: must be positive, got {model.units}")
        require(model.depth > 0, f"models.{index}.depth: must be positive, got {model.depth}")
    require(len(config.seeds) > 0, "seeds: the list of seeds is empty")
    require(
        0 < config.solved_ratio < 1, f"solved_ratio: must lie in (0, 1), got {config.solved_ratio}"
    )
    for key in ("epochs", "batch_size", "learning_rate"):
        value = getattr(config.train, key)
        require(value > 0, f"train.{key}: must be positive, got {value}")
    require(
        config.train.loss in ("mse", "quantile"),
        f"train.loss: must be mse or quantile, got {config.train.loss!r}",
    )
    quantiles = config.train.quantiles
    require(
        quantiles == sorted(set(quantiles)) and all(0 < q < 1 for q in quantiles),
        f"train.quantiles: must increase strictly within (0, 1), got {quantiles}",
    )
    require(
        config.train.loss != "quantile" or 0.5 in quantiles,
        f"train.quantiles: must hold 0.5, the median the point metrics use, got {quantiles}",
    )
    patience = config.train.early_stopping_patience
    require(
        patience is None or patience > 0,
        f"train.early_stopping_patience: must be positive or null, got {patience}",
    )
    give_up = config.train.give_up_epoch
    require(
        give_up is None or give_up > 0,
        f"train.give_up_epoch: must be positive or null, got {give_up}",
    )
    require(
        config.train.give_up_ratio > 0,
        f"train.give_up_ratio: must be positive, got {config.train.give_up_ratio}",
    )


# Keys that change how a run is shown or stored, never its numbers: a re-run that changes only
# these resumes an interrupted sweep instead of starting afresh.
PRESENTATION_KEYS = (
    "description",
    "log_models",
    "train.verbose",
    "train.checkpoint",
    "sweep.storage",
    "evaluation.ensemble",  # combines the trials' forecasts after they are made
)


def results_digest(config: ExperimentConfig, *extra: Any) -> str:
    """A short hash of everything in ``config`` (and ``extra``) that can change results."""
    resolved = config.to_dict()
    for key in PRESENTATION_KEYS:
        *parents, last = key.split(".")
        node = resolved
        for part in parents:
            node = node[part] or {}  # a section left out (no sweep)
        node.pop(last, None)
    text = json.dumps([resolved, *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_line(error: BaseException, with_type: bool = True) -> str:
    """An exception as one line for an error message: ``Type: first line of its message``, or
    without ``with_type`` the first line alone; its type's name when it has no message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text}" if with_type else text


def _validate_task(task: TaskConfig) -> None:
    require(bool(task.name), "task.name: name a task, e.g. sine_long_gap")
    require(len(task.gaps) > 0, "task.gaps: the list of gaps is empty")
    require(all(g >= 0 for g in task.gaps), f"task.gaps: gaps must be >= 0, got {task.gaps}")
    for key in ("n_train", "n_val", "n_test"):
        value = getattr(task, key)
        require(value > 0, f"task.{key}: must be positive, got {value}")


def _validate_data(data: DataConfig) -> None:
    require(bool(data.source), "data.source: name a dataset (e.g. co2) or a CSV path")
    for key, minimum in (("input_width", 1), ("horizon", 1), ("gap", 0), ("stride", 1)):
        value = getattr(data, key)
        require(value >= minimum, f"data.{key}: must be >= {minimum}, got {value}")
    folds = data.backtest.folds
    require(folds >= 1, f"data.backtest.folds: must be >= 1, got {folds}")
    refit = data.backtest.refit
    require(
        isinstance(refit, bool) or refit >= 1,
        f"data.backtest.refit: must be true, false or a number of folds >= 1, got {refit}",
    )
    require(
        data.transform in (None, "log", "boxcox"),
        f"data.transform: must be log, boxcox or null, got {data.transform!r}",
    )
    if data.deseasonalize is not None:
        require(
            data.deseasonalize == "mstl",
            f"data.deseasonalize: must be mstl or null, got {data.deseasonalize!r}",
        )
        for needed, why in (
            (data.season is not None, "set data.season"),
            (data.series_column is None, "it deseasonalises a single series, not a panel"),
            (
                data.time_column is not None,
                "set data.time_column: a request's rows are placed by their times",
            ),
            (data.transform is None, "it works in the series' units: drop data.transform"),
        ):
            require(needed, f"data.deseasonalize: {why}")
    seasons = data.seasons
    require(
        data.season != [] and all(season >= 2 for season in seasons),
        f"data.season: must be null, a number of steps >= 2 or a list of them, got {data.season}",
    )
    require(
        len(set(seasons)) == len(seasons), f"data.season: a season is given twice: {data.season}"
    )
    embedding = data.series_embedding
    require(
        embedding is None or embedding >= 1,
        f"data.series_embedding: must be >= 1 or null, got {embedding}",
    )
    for key in ("static_columns", "series_embedding"):
        require(
            data.series_column is not None or not getattr(data, key),
            f"data.{key}: describes the series of a panel; set data.series_column too",
        )
    named = {
        "feature_columns": data.feature_columns or [],
        "target_columns": data.target_columns or [],
        "future_columns": data.future_columns or [],
    }
    for column in data.static_columns:
        for key, columns in named.items():
            require(
                column not in columns,
                f"data.static_columns: {column!r} is also in data.{key}; name it once",
            )
        require(
            column not in (data.series_column, data.time_column),
            f"data.static_columns: {column!r} is the series or time column",
        )


def _validate_evaluation(evaluation: EvaluationConfig) -> None:
    require(evaluation.step >= 1, f"evaluation.step: must be >= 1, got {evaluation.step}")
    require(
        evaluation.ensemble in ("mean", "median", "none"),
        f"evaluation.ensemble: must be mean, median or none, got {evaluation.ensemble!r}",
    )
    require(
        0 < evaluation.interval < 1,
        f"evaluation.interval: must lie in (0, 1), got {evaluation.interval}",
    )


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def _apply_override(config: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected key=value, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    _set_key(config, key, value, where="--set")


def _set_key(config: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set a dotted ``key`` of a plain config dict; an unknown key is an error naming it."""
    parts = key.split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        free_form = depth > 0 and parts[depth - 1] in ("params", "options")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where} {key}: no item {part!r} in a list of {len(node)}")
            part = int(part)
        elif not isinstance(node, dict) or (part not in node and not (last and free_form)):
            unknown = ".".join(parts[: depth + 1])
            raise ConfigError(f"{where} {key}: unknown config key {unknown!r}")
        if last:
            node[part] = value
        else:
            node = node[part]


# Keys that config files of earlier versions may hold, with what replaced them.
RETIRED_KEYS = {
    "sweep.samples": "the random search is Optuna's now; set sweep.search: optuna, "
    "sweep.sampler: random and sweep.n_trials instead",
}


def _build(cls: type, raw: Any, where: str, path: str = "") -> Any:
    """Turn plain YAML data into ``cls``, checking keys and types; errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {path or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        dotted = f"{path}.{key}" if path else str(key)
        if dotted in RETIRED_KEYS:
            raise ConfigError(f"{where}: {dotted}: {RETIRED_KEYS[dotted]}")
        if key not in known:
            raise ConfigError(
                f"{where}: unknown config key {dotted!r}; known here: {', '.join(sorted(known))}"
            )
    values = {
        key: _convert(hints[key], value, where, f"{path}.{key}" if path else key)
        for key, value in raw.items()
    }
    return cls(**values)


def _convert(hint: Any, value: Any, where: str, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, path)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return None
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kinds) == 1:
            return _convert(kinds[0], value, where, path)
        for kind in kinds:  # the first that takes the value
            with contextlib.suppress(ConfigError):
                return _convert(kind, value, where, path)
        names = " or ".join(
            kind.__name__ if isinstance(kind, type) else str(kind) for kind in kinds
        )
        raise ConfigError(f"{where}: {path} must be {names}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {path} must be a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_convert(inner, item, where, f"{path}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {path} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads 1e-3 as a string: it wants a dot in the mantissa.
        with contextlib.suppress(ValueError):
            return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{where}: {path} must be {hint.__name__}, got {value!r}")
