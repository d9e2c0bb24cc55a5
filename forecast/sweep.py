"""A sweep's points: the grid and random search of a config's ``sweep`` section, expanded.

Each point is a set of dotted overrides (as ``--set`` takes them) and the config they give,
checked as a loaded config is (:func:`forecast.config.validate`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from forecast.config import (
    ConfigError,
    ExperimentConfig,
    build_config,
    require,
    validate,
    value_at,
    with_overrides,
)

SPACE_KINDS = ("uniform", "loguniform", "randint", "choice")


def sweep_points(config: ExperimentConfig) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """Each point of ``config.sweep`` as (its overrides, the resolved and validated config).

    Without a sweep, the one point is ``({}, config)``.

    Raises:
        ConfigError: an empty grid, a key that is not a config key, a bad search space, or a
            point whose values are invalid, naming the point and the key.
    """
    sweep = config.sweep
    if sweep is None:
        return [({}, config)]
    require(bool(sweep.grid) or sweep.samples > 0, "sweep: empty grid and no random samples")
    require(sweep.samples >= 0, f"sweep.samples: must be >= 0, got {sweep.samples}")
    require(sweep.samples > 0 or not sweep.space, "sweep.space: set sweep.samples to draw from it")
    require(sweep.samples == 0 or bool(sweep.space), "sweep.samples: sweep.space is empty")
    for key, values in sweep.grid.items():
        require(key.split(".")[0] != "sweep", f"sweep.grid: cannot sweep {key!r} itself")
        require(
            isinstance(values, list) and len(values) > 0,
            f"sweep.grid.{key}: expected a non-empty list of values, got {values!r}",
        )
    for key, spec in sweep.space.items():
        _check_space(key, spec)
    grid = [
        dict(zip(sweep.grid, values, strict=True))
        for values in itertools.product(*sweep.grid.values())
    ]
    if sweep.samples > 0:
        rng = np.random.default_rng(sweep.seed)
        grid = [
            {**point, **{key: _draw(spec, rng) for key, spec in sweep.space.items()}}
            for _ in range(sweep.samples)
            for point in grid
        ]
    base = dataclasses.replace(config, sweep=None)
    points = []
    for overrides in grid:
        where = f"sweep point {point_label(overrides)}"
        point = build_config(with_overrides(base, overrides), where=where)
        try:
            validate(point)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        # The values as the config converted them (1 -> 1.0 for a float key), for labels.
        points.append(({key: value_at(point, key) for key in overrides}, point))
    return points


def point_label(overrides: dict[str, Any]) -> str:
    """A sweep point as one string, e.g. ``train.learning_rate=0.001,models.0.units=16``."""
    return ",".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in overrides.items()
    )


def _check_space(key: str, spec: Any) -> None:
    require(
        isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in SPACE_KINDS,
        f"sweep.space.{key}: expected one of {', '.join(SPACE_KINDS)} with its range, "
        f"e.g. {{loguniform: [0.0001, 0.01]}}, got {spec!r}",
    )
    ((kind, bounds),) = spec.items()
    ok = isinstance(bounds, list) and len(bounds) > 0
    if kind != "choice":
        ok = ok and len(bounds) == 2 and bounds[0] < bounds[1]
        ok = ok and (kind != "loguniform" or bounds[0] > 0)
    require(ok, f"sweep.space.{key}: bad {kind} range {bounds!r}")


def _draw(spec: dict[str, Any], rng: np.random.Generator) -> Any:
    """One value from a space entry, as a plain Python value for YAML and MLflow."""
    ((kind, bounds),) = spec.items()
    if kind == "choice":
        return bounds[int(rng.integers(len(bounds)))]
    if kind == "randint":
        return int(rng.integers(bounds[0], bounds[1]))
    if kind == "uniform":
        return float(rng.uniform(bounds[0], bounds[1]))
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))
