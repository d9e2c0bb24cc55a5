"""Baseline forecasters: naive methods, automatic ETS, Theta and ARIMA, and a user's own, all
behind one small interface that the networks' forecasts are scored beside.

A forecaster sees one target column of a fold's past and then forecasts ``steps`` ahead from
each of many origins::

    forecaster = make_forecaster("seasonal_naive", seasons=(12,)).fit(past)  # (time,) values
    ahead = forecaster.forecast(values, origins, steps)  # (origins, steps)

``fit`` gets the observations before the fold's test part (the networks' train and
validation parts together). ``forecast`` gets the whole series and the index of each origin's
last observation; a forecaster reads ``values[: origin + 1]`` only, so it uses what was known
at the origin and the parameters fitted on the past (statsforecast's ``forward``, which is
what its ``cross_validation(refit=False)`` does). After ``fit``, ``specification`` names the
model chosen (``ETS(M,A,M)``, ``ARIMA(1,1,0)(0,1,0)[12]``, ...).

A user's forecaster is a class named by import path in ``data.baselines``
(``package.module:Name``): it is called with ``season=`` (the longest of ``data.season``, or
None) and must have the two methods above; it is tried on the series before any run.

Seasons: ``mstl`` decomposes the series by every season of ``data.season``; the others take one
season each: the longest (seasonal naive, Theta, a user's), or for ETS and ARIMA the longest
they can fit, up to :data:`MAX_SEASON_ETS_ARIMA` steps (none if every season is longer).

One thing outlives a call: ``_FORECASTS``, this process's last few results by their inputs.
Every trial of a series experiment needs the same baseline forecasts (they depend on the data
alone), and fitting the statistical models costs seconds per fold; a worker process computes
them once for all the trials it runs.

Why statsforecast for ETS, Theta, ARIMA and MSTL: it selects ETS, Theta and ARIMA models
automatically (statsmodels has no automatic ARIMA or ETS selection, and no way to forecast a
Theta model from a new origin without refitting), its models are compiled C++, and one fitted
model forecasts from a new origin in milliseconds (docs/benchmarks.md); its MSTL decomposes
by several seasons at once and forecasts what they leave with its automatic ETS. It needs
``pandas<3`` (Nixtla/statsforecast#1182), so it is an extra: ``pip install 'forecast[stats]'``
(``make`` installs it).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Protocol

import numpy as np

from forecast.config import one_line
from forecast.imports import is_import_path, resolve

# Always computed for a series: they cost nothing and are what a forecaster compares with first.
NAIVE_FORECASTERS = ("naive", "seasonal_naive", "mean", "drift")

# A seasonal AutoARIMA of period 52 did not finish in 5 minutes on weekly co2, and
# statsforecast's ETS has no seasonal models above 24 steps: longer seasons are not theirs.
MAX_SEASON_ETS_ARIMA = 24


class Forecaster(Protocol):
    """What every baseline is: fitted on one target's past, forecasting from any origin."""

    specification: str

    def fit(self, past: np.ndarray) -> Forecaster: ...

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray: ...


class _LearnsNothing:
    """A forecaster with nothing to fit: it reads only the values up to each origin."""

    def fit(self, past: np.ndarray) -> _LearnsNothing:
        return self


class Naive(_LearnsNothing):
    """Persistence: every step ahead is the last observation."""

    specification = "naive"

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
        return np.repeat(values[origins][:, None], steps, axis=1)


class SeasonalNaive:
    """Each step ahead is the last observation of the same season: one season back, or as
    many whole seasons as it takes to reach an observed step (a horizon longer than the season
    repeats the last observed season)."""

    def __init__(self, season: int | None = None) -> None:
        if not season:
            raise ValueError("seasonal_naive needs data.season (steps per season)")
        self.season = season
        self.specification = f"seasonal naive [{season}]"

    def fit(self, past: np.ndarray) -> SeasonalNaive:
        if len(past) < self.season:
            raise ValueError(f"seasonal_naive needs a season ({self.season} steps) of past")
        return self

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
        ahead = np.arange(1, steps + 1)
        seasons_back = -(-ahead // self.season)  # ceil(ahead / season)
        return values[origins[:, None] + ahead[None, :] - seasons_back * self.season]


class Mean(_LearnsNothing):
    """The mean of every observation up to the origin, for every step (a historic average)."""

    specification = "mean"

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
        running_mean = np.cumsum(values) / np.arange(1, len(values) + 1)
        return np.repeat(running_mean[origins][:, None], steps, axis=1)


class Drift(_LearnsNothing):
    """The last observation plus the average change from the first observation to it, per
    step ahead (a random walk with drift)."""

    specification = "drift"

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
        last = values[origins]
        slope = (last - values[0]) / np.maximum(origins, 1)
        return last[:, None] + slope[:, None] * np.arange(1, steps + 1)[None, :]


class Statistical:
    """statsforecast's AutoETS, AutoTheta, AutoARIMA or MSTL, selected and fitted on the past,
    then forecasting from each origin with the parameters as fitted. MSTL decomposes the
    series by all ``seasons`` (STL, one season after another) and forecasts what they leave
    with an automatic ETS without season (statsforecast's default trend model); the others take
    one season (see the module's docstring)."""

    def __init__(self, name: str, seasons: tuple[int, ...] = ()) -> None:
        try:
            from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta
        except ImportError:
            raise ValueError(f"{name} needs statsforecast: pip install 'forecast[stats]'") from None
        self.name, self.seasons, self.specification = name, tuple(seasons), ""
        if name == "mstl":
            if not seasons:
                raise ValueError("mstl needs data.season (steps per season, or a list of them)")
            self.model = MSTL(season_length=list(seasons))
            return
        fit = [season for season in seasons if season <= MAX_SEASON_ETS_ARIMA]
        season = max(seasons if name == "theta" else fit, default=1)
        kinds = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA}
        self.model = kinds[name](season_length=season)

    def fit(self, past: np.ndarray) -> Statistical:
        if self.name == "mstl" and len(past) < 2 * self.seasons[-1]:
            raise ValueError(
                f"mstl needs two whole seasons of {self.seasons[-1]} steps to fit, "
                f"{2 * self.seasons[-1]} steps; the past holds {len(past)}"
            )
        self.model = self.model.fit(np.asarray(past, np.float64))
        if self.name == "mstl":
            trend = self.model.trend_forecaster.model_["method"]
            self.specification = f"MSTL{list(self.seasons)} + {trend}"
        else:
            self.specification = _specification(self.name, self.model.model_)
        return self

    def forecast(self, values: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
        return np.stack(
            [self.model.forward(y=values[: origin + 1], h=steps)["mean"] for origin in origins]
        )


def _specification(name: str, fitted: dict) -> str:
    """The model an automatic selection chose, as its authors write it."""
    if name == "ets":
        return str(fitted["method"])  # e.g. ETS(M,A,M)
    if name == "arima":
        from statsforecast.arima import arima_string

        return arima_string(fitted).strip()  # e.g. ARIMA(1,1,0)(0,1,0)[12]
    # Theta's variants (Fiorucci et al. 2016): standard, optimised, dynamic standard/optimised.
    return f"Theta({fitted['modeltype']})"


# Each built-in forecaster made from the seasons, shortest first.
BUILT_IN = {
    "naive": lambda seasons: Naive(),
    "seasonal_naive": lambda seasons: SeasonalNaive(max(seasons, default=None)),
    "mean": lambda seasons: Mean(),
    "drift": lambda seasons: Drift(),
    "ets": lambda seasons: Statistical("ets", seasons),
    "theta": lambda seasons: Statistical("theta", seasons),
    "arima": lambda seasons: Statistical("arima", seasons),
    "mstl": lambda seasons: Statistical("mstl", seasons),
}


def make_forecaster(name: str, seasons: tuple[int, ...] = ()) -> Forecaster:
    """An unfitted forecaster: a built-in name (:data:`BUILT_IN`) or a user's class by import
    path, ``package.module:Name``, called with ``season=`` the longest of ``seasons`` (or
    None).

    Raises:
        ValueError: an unknown name, a path that does not import, a class without ``fit`` and
            ``forecast``, or a forecaster that cannot work without a season; one line.
    """
    if not is_import_path(name):
        if name not in BUILT_IN:
            raise ValueError(
                f"unknown forecaster {name!r}; choose from {', '.join(BUILT_IN)} "
                "or give an import path, package.module:Name"
            )
        return BUILT_IN[name](tuple(seasons))
    season = max(seasons, default=None)
    made = resolve(name, {}, "forecaster")
    if not callable(made):
        raise ValueError(f"{name} is not a class or function")
    try:
        forecaster = made(season=season)
    except TypeError as error:
        raise ValueError(f"{name}(season={season}): {error}") from None
    for method in ("fit", "forecast"):
        if not callable(getattr(forecaster, method, None)):
            raise ValueError(
                f"{name} has no {method}() method; a forecaster has fit(past) and "
                "forecast(values, origins, steps)"
            )
    return forecaster


# The built-in forecasters that can take seconds an origin, timed before a run (MSTL
# decomposes the whole past again at every origin); the other statistical ones take
# milliseconds an origin (docs/benchmarks.md).
TIMED = ("mstl",)


def check_forecaster(
    name: str, seasons: tuple[int, ...], past: np.ndarray, steps: int
) -> tuple[float, float] | None:
    """Make the forecaster and, for a user's (or one of :data:`TIMED`), fit and forecast once
    on ``past`` (a target's observations), checking what it returns; then returns the seconds
    the fit took and the forecast from one origin, for an estimate of the whole run's.

    Raises:
        ValueError: naming the forecaster and what is wrong; one line.
    """
    forecaster = make_forecaster(name, seasons)
    if not is_import_path(name) and name not in TIMED:
        return None  # ours are tested; the statistical ones take seconds to fit
    try:
        started = time.perf_counter()
        fitted = forecaster.fit(past)
        fitting = time.perf_counter() - started
        ahead = (fitted or forecaster).forecast(past, np.array([len(past) - 1]), steps)
        forecasting = time.perf_counter() - started - fitting
    except Exception as error:  # a user's code: any failure is theirs to read in one line
        raise ValueError(f"{name} failed on the series: {one_line(error)}") from None
    ahead = np.asarray(ahead)
    if ahead.shape != (1, steps):
        raise ValueError(
            f"{name}.forecast returned shape {ahead.shape} for 1 origin and {steps} steps; "
            f"expected (origins, steps) = (1, {steps})"
        )
    if not np.isfinite(ahead.astype(np.float64)).all():
        raise ValueError(f"{name}.forecast returned NaN or infinite values")
    return fitting, forecasting


def baseline_names(extra: list[str], seasons: tuple[int, ...]) -> list[str]:
    """The forecasters a series is compared with: the naive ones (``seasonal_naive`` with a
    season), then those the config adds, each once."""
    naive = [name for name in NAIVE_FORECASTERS if seasons or name != "seasonal_naive"]
    return list(dict.fromkeys([*naive, *extra]))


def baseline_forecasts(
    values: np.ndarray,
    fit_end: int,
    origins: np.ndarray,
    horizon: int,
    gap: int,
    seasons: tuple[int, ...],
    names: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each forecaster's forecasts of ``horizon`` steps, ``gap`` steps after each origin.

    Args:
        values: The raw target values, (time, targets), up to at least the last origin.
        fit_end: The forecasters are fitted on ``values[:fit_end]``, one per target column.
        origins: For each test window, the index in ``values`` of its last input step.
        horizon, gap: As the windows'.
        seasons: Steps per season, shortest first; empty without a season.
        names: Forecasters, as :func:`make_forecaster` takes them.

    Returns:
        name -> forecasts, (windows, horizon, targets), in the values' units; and name -> the
        specification each chose (the first target's, for several).
    """
    values = np.asarray(values, dtype=np.float64)
    origins = np.asarray(origins)
    key = hashlib.sha256(
        values.tobytes()
        + origins.tobytes()
        + repr((values.shape, fit_end, horizon, gap, tuple(seasons), tuple(names))).encode()
    ).hexdigest()
    if key in _FORECASTS:
        _FORECASTS.move_to_end(key)
        forecasts, specifications = _FORECASTS[key]
        return {name: forecast.copy() for name, forecast in forecasts.items()}, dict(specifications)
    forecasts, specifications = {}, {}
    for name in names:
        result = np.empty((len(origins), horizon, values.shape[1]))
        for column in range(values.shape[1]):
            forecaster = make_forecaster(name, seasons)
            forecaster = forecaster.fit(values[:fit_end, column]) or forecaster
            ahead = np.asarray(forecaster.forecast(values[:, column], origins, gap + horizon))
            result[:, :, column] = ahead[:, gap:]
            if column == 0:
                specifications[name] = str(getattr(forecaster, "specification", "") or name)
        forecasts[name] = result
    _FORECASTS[key] = (forecasts, specifications)
    if len(_FORECASTS) > FORECASTS_KEPT:
        _FORECASTS.popitem(last=False)
    return {name: forecast.copy() for name, forecast in forecasts.items()}, dict(specifications)


_FORECASTS: OrderedDict[str, tuple[dict[str, np.ndarray], dict[str, str]]] = OrderedDict()
FORECASTS_KEPT = 16  # a few folds of a few series
