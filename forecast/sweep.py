"""A sweep's points: the grid of a config's ``sweep`` section, expanded; or, for an Optuna
search, its search space read and the points that probe it.

Each point is a set of dotted overrides (as ``--set`` takes them) and the config they give,
checked as a loaded config is (:func:`forecast.config.validate`). The search itself, which
samples its points one trial at a time, is :mod:`forecast.search`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, NamedTuple

from forecast.config import (
    ConfigError,
    ExperimentConfig,
    SweepConfig,
    build_config,
    require,
    validate,
    value_at,
    with_overrides,
)

SEARCHES = ("grid", "optuna")
SPACE_KINDS = ("uniform", "loguniform", "randint", "choice")
SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "successive_halving", "hyperband", "give_up", "none")
# The per-epoch validation values a search can optimise, and the way each improves.
SEARCH_METRICS = {"val_ratio": "minimize", "val_loss": "minimize", "val_accuracy": "maximize"}


class Dimension(NamedTuple):
    """One entry of a search space, read: the values Optuna may sample for a config key."""

    kind: str  # one of SPACE_KINDS
    values: list[Any]  # a choice's values, or [low, high] (a randint's high excluded)
    step: float | int | None = None
    log: bool = False

    @property
    def lowest(self) -> Any:
        return self.values[0]

    @property
    def highest(self) -> Any:
        """The largest value that can be sampled (a randint's high is excluded, and a step
        stops short of a high it does not divide)."""
        if self.kind == "choice":
            return self.values[-1]
        low, high = self.values
        if self.kind == "randint":
            step = self.step or 1
            return low + step * ((high - 1 - low) // step)
        if self.step is not None:
            return low + self.step * math.floor((high - low) / self.step + 1e-9)
        return high


def sweep_points(config: ExperimentConfig) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """Each point of ``config.sweep`` as (its overrides, the resolved and validated config):
    every combination of a grid; for an Optuna search, the points its plan checks before any
    trial samples one (:func:`probe_overrides`).

    Without a sweep, the one point is ``({}, config)``.

    Raises:
        ConfigError: a bad sweep section, a key that is not a config key, or a point whose
            values are invalid, naming the point and the key.
    """
    sweep = config.sweep
    if sweep is None:
        return [({}, config)]
    check_sweep(config)
    if sweep.search == "optuna":
        grid = probe_overrides(search_space(config))
    else:
        grid = [
            dict(zip(sweep.grid, values, strict=True))
            for values in itertools.product(*sweep.grid.values())
        ]
    return [resolve_point(config, overrides) for overrides in grid]


def resolve_point(
    config: ExperimentConfig, overrides: dict[str, Any]
) -> tuple[dict[str, Any], ExperimentConfig]:
    """``config`` without its sweep section, ``overrides`` applied and validated; returns the
    overrides as the config converted them (1 -> 1.0 for a float key) and the point's config.

    Raises:
        ConfigError: a key that is not a config key or an invalid value, naming the point.
    """
    where = f"sweep point {point_label(overrides)}"
    base = dataclasses.replace(config, sweep=None)
    point = build_config(with_overrides(base, overrides), where=where)
    try:
        validate(point)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return {key: value_at(point, key) for key in overrides}, point


def point_label(overrides: dict[str, Any]) -> str:
    """A sweep point as one string, e.g. ``train.learning_rate=0.001,models.0.units=16``."""
    return ",".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in overrides.items()
    )


def check_sweep(config: ExperimentConfig) -> None:
    """The sweep section's own settings (the points' values are checked as they resolve).

    Raises:
        ConfigError: naming the key and its value.
    """
    sweep = config.sweep
    require(
        sweep.search in SEARCHES,
        f"sweep.search: must be grid or optuna, got {sweep.search!r}",
    )
    if sweep.search == "grid":
        _check_grid(sweep)
    else:
        _check_search(config)


def _check_grid(sweep: SweepConfig) -> None:
    """A grid's values: a non-empty list under each key, no sampled space."""
    require(
        not sweep.space,
        "sweep.space: a grid search samples nothing; set sweep.search: optuna to search it",
    )
    require(bool(sweep.grid), "sweep.grid: empty; list the values to try under their keys")
    for key, values in sweep.grid.items():
        require(key.split(".")[0] != "sweep", f"sweep.grid: cannot sweep {key!r} itself")
        require(
            isinstance(values, list) and len(values) > 0,
            f"sweep.grid.{key}: expected a non-empty list of values, got {values!r}",
        )


def _check_search(config: ExperimentConfig) -> None:
    """An Optuna search's space, sampler, pruner and metric, and its one model, gap and seed."""
    sweep = config.sweep
    require(
        not sweep.grid,
        "sweep.grid: an optuna search samples every key from sweep.space; "
        "list a grid's values there as {choice: [...]}",
    )
    require(bool(sweep.space), "sweep.space: empty; an optuna search samples its keys from it")
    space = search_space(config)
    require(sweep.n_trials > 0, f"sweep.n_trials: must be positive, got {sweep.n_trials}")
    require(
        sweep.sampler in SAMPLERS,
        f"sweep.sampler: must be one of {', '.join(SAMPLERS)}, got {sweep.sampler!r}",
    )
    if sweep.sampler == "cmaes":
        for key, dimension in space.items():
            require(
                dimension.kind != "choice",
                f"sweep.space.{key}: cmaes samples numbers only, not a choice; "
                "use sampler: tpe, or a numeric range",
            )
    require(
        sweep.pruner is None or sweep.pruner in PRUNERS,
        f"sweep.pruner: must be one of {', '.join(PRUNERS)}, got {sweep.pruner!r}",
    )
    give_up = config.train.give_up_epoch
    require(
        sweep.pruner != "give_up" or give_up is not None,
        "sweep.pruner: give_up stops at train.give_up_epoch, which is not set",
    )
    require(
        sweep.pruner in (None, "give_up") or give_up is None,
        f"train.give_up_epoch: in an optuna search the pruner stops trials ({sweep.pruner}); "
        "set train.give_up_epoch: null, or sweep.pruner: give_up",
    )
    require(
        sweep.pruner != "give_up" or sweep.metric == "val_ratio",
        f"sweep.pruner: give_up reads val_ratio, not {sweep.metric}; set sweep.metric: val_ratio",
    )
    require(sweep.prune_after >= 1, f"sweep.prune_after: must be >= 1, got {sweep.prune_after}")
    require(
        sweep.metric in SEARCH_METRICS,
        f"sweep.metric: must be one of {', '.join(SEARCH_METRICS)}, got {sweep.metric!r}",
    )
    require(
        sweep.direction in (None, "minimize", "maximize"),
        f"sweep.direction: must be minimize or maximize, got {sweep.direction!r}",
    )
    gaps = config.task.gaps if config.task is not None else [config.data.gap]
    for what, values in (
        ("task.gaps", gaps),
        ("seeds", config.seeds),
        ("models", [model.name for model in config.models]),
    ):
        require(
            len(values) == 1,
            f"{what}: an optuna search trains one model at one gap with one seed a trial, "
            f"got {values}; run one search for each",
        )


def search_space(config: ExperimentConfig) -> dict[str, Dimension]:
    """``config.sweep.space`` read: config key -> :class:`Dimension`.

    Raises:
        ConfigError: an entry that is not one of the space's kinds, or a bad range, naming it.
    """
    return {key: _dimension(key, spec) for key, spec in config.sweep.space.items()}


def probe_overrides(space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """The points a search's plan checks before its first trial: none of the space's keys set,
    then every key at its lowest value, then at its highest, then each middle value of a
    choice (the others at their lowest), so that a value no config or model takes fails
    before any trial runs."""
    lowest = {key: dimension.lowest for key, dimension in space.items()}
    probes = [{}, lowest, {key: dimension.highest for key, dimension in space.items()}]
    for key, dimension in space.items():
        if dimension.kind == "choice":
            probes += [{**lowest, key: value} for value in dimension.values[1:-1]]
    return probes


def _dimension(key: str, spec: Any) -> Dimension:
    where = f"sweep.space.{key}"
    require(key.split(".")[0] != "sweep", f"sweep.space: cannot search {key!r} itself")
    kinds = [kind for kind in spec if kind in SPACE_KINDS] if isinstance(spec, dict) else []
    require(
        len(kinds) == 1,
        f"{where}: expected one of {', '.join(SPACE_KINDS)} with its range, "
        f"e.g. {{loguniform: [0.0001, 0.01]}}, got {spec!r}",
    )
    (kind,) = kinds
    values, options = spec[kind], {k: v for k, v in spec.items() if k != kind}
    extra = set(options) - ({"step", "log"} if kind != "choice" else set())
    require(not extra, f"{where}: unknown option {', '.join(sorted(extra))} of {kind}")
    require(isinstance(values, list) and len(values) > 0, f"{where}: bad {kind} {values!r}")
    if kind == "choice":
        require(
            all(value is None or isinstance(value, bool | int | float | str) for value in values),
            f"{where}: a choice's values must be numbers, strings, booleans or null "
            f"(what Optuna stores), got {values!r}",
        )
        return Dimension(kind, values)
    step, log = options.get("step"), options.get("log", False) or kind == "loguniform"
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ok = numbers and len(values) == 2 and values[0] < values[1] and (not log or values[0] > 0)
    if kind == "randint":
        ok = ok and all(isinstance(v, int) for v in values)
    require(ok, f"{where}: bad {kind} range {values!r}")
    require(isinstance(log, bool), f"{where}: log must be true or false, got {log!r}")
    require(step is None or not log, f"{where}: Optuna takes a step or a log scale, not both")
    if step is not None:
        whole = isinstance(step, int) and not isinstance(step, bool)
        require(
            (whole or (kind != "randint" and isinstance(step, float))) and step > 0,
            f"{where}: step must be a positive {'integer' if kind == 'randint' else 'number'}, "
            f"got {step!r}",
        )
    return Dimension(kind, values, step, log)
