"""Statistical baselines: automatic ETS, Theta and ARIMA (statsforecast's AutoETS, AutoTheta,
AutoARIMA), forecasting the same test windows as the networks.

Each model is fitted once per fold, on the raw target values before the fold's test part (the
networks' train and validation parts together), then forecasts from every test window's
origin with the observations up to it and the parameters as fitted (statsforecast's
``forward``, which is what its own ``cross_validation(refit=False)`` does). Univariate: each
target column is forecast from its own past; feature columns are not used.

One thing outlives a call: ``_FORECASTS``, this process's last few results by their inputs.
Every trial of a series experiment needs the same forecasts (they depend on the data alone),
and fitting them costs seconds per fold; a worker process computes them once for all the
trials it runs.

Why statsforecast: it selects the model automatically for all three methods (statsmodels has
no automatic ARIMA or ETS selection, and no way to forecast a Theta model from a new origin
without refitting), its models are compiled C++ with no just-in-time compilation, and from
one fitted model a forecast from a new origin costs 0.3-8 ms (statsmodels: 5-80 ms), measured
on co2 (2026-11-29). It needs ``pandas<3`` (Nixtla/statsforecast#1182), so it is an extra:
``pip install 'forecast[stats]'`` (``make`` installs it).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from forecast.config import STATISTICAL_MODELS

# A seasonal AutoARIMA of period 52 did not finish in 5 minutes on weekly co2; above this
# period ARIMA is fitted without a season (ETS and Theta keep it).
MAX_ARIMA_SEASON = 24


def make_model(name: str, season: int | None):
    """An unfitted statsforecast model for ``name`` (``ets``, ``theta`` or ``arima``).

    Raises:
        ValueError: an unknown name, or statsforecast not installed.
    """
    try:
        from statsforecast.models import AutoARIMA, AutoETS, AutoTheta
    except ImportError:
        raise ValueError(
            "statistical baselines need statsforecast: pip install 'forecast[stats]'"
        ) from None
    season_length = season or 1
    if name == "ets":
        return AutoETS(season_length=season_length)
    if name == "theta":
        return AutoTheta(season_length=season_length)
    if name == "arima":
        return AutoARIMA(season_length=season_length if season_length <= MAX_ARIMA_SEASON else 1)
    raise ValueError(
        f"unknown statistical baseline {name!r}; choose from {', '.join(STATISTICAL_MODELS)}"
    )


def statistical_forecasts(
    values: np.ndarray,
    fit_end: int,
    origins: np.ndarray,
    horizon: int,
    gap: int,
    season: int | None,
    names: list[str],
) -> dict[str, np.ndarray]:
    """Each model's forecasts of ``horizon`` steps, ``gap`` steps after each origin.

    Args:
        values: The raw target values, (time, targets), up to at least the last origin.
        fit_end: The models are fitted on ``values[:fit_end]``.
        origins: For each test window, the index in ``values`` of its last input step.
        horizon, gap: As the windows'.
        season: Steps per season, or None.
        names: Which models: ``ets``, ``theta``, ``arima``.

    Returns:
        name -> forecasts, (windows, horizon, targets), in the values' units.
    """
    values = np.asarray(values, dtype=np.float64)
    key = hashlib.sha256(
        values.tobytes()
        + np.asarray(origins).tobytes()
        + repr((values.shape, fit_end, horizon, gap, season, tuple(names))).encode()
    ).hexdigest()
    if key in _FORECASTS:
        _FORECASTS.move_to_end(key)
        return {name: forecast.copy() for name, forecast in _FORECASTS[key].items()}
    forecasts = {}
    for name in names:
        result = np.empty((len(origins), horizon, values.shape[1]))
        for column in range(values.shape[1]):
            model = make_model(name, season).fit(values[:fit_end, column])
            for index, origin in enumerate(origins):
                ahead = model.forward(y=values[: origin + 1, column], h=gap + horizon)["mean"]
                result[index, :, column] = ahead[gap:]
        forecasts[name] = result
    _FORECASTS[key] = forecasts
    if len(_FORECASTS) > FORECASTS_KEPT:
        _FORECASTS.popitem(last=False)
    return {name: forecast.copy() for name, forecast in forecasts.items()}


_FORECASTS: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()  # see the module docstring
FORECASTS_KEPT = 16  # a few folds of a few series
