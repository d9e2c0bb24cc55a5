"""Statistical baselines against statsforecast's own cross-validation on the same data."""

import numpy as np
import pandas as pd
import pytest

from forecast.data import DataError, load_series, series_splits
from forecast.statistical import statistical_forecasts

pytest.importorskip("statsforecast")  # installed by `make` (the `stats` extra)


def seasonal_series(length=120, season=12, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    return 10 + 0.05 * steps + 2 * np.sin(2 * np.pi * steps / season) + rng.normal(0, 0.3, length)


@pytest.mark.parametrize("name", ["ets", "theta", "arima"])
def test_forecasts_from_every_origin_are_statsforecasts_own_without_refitting(name):
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    values = seasonal_series()
    fit_end, horizon, gap = 90, 3, 1
    origins = np.arange(fit_end - 1, len(values) - gap - horizon)
    ours = statistical_forecasts(values[:, None], fit_end, origins, horizon, gap, 12, [name])
    model = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA}[name](season_length=12)
    frame = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(values)), "y": values})
    reference = StatsForecast(models=[model], freq=1).cross_validation(
        df=frame, h=gap + horizon, test_size=len(values) - fit_end, step_size=1, refit=False
    )
    # One row per (cutoff, time): the cutoff is the origin, time - cutoff the step ahead.
    column = reference.columns[-1]
    reference["ahead"] = reference["ds"] - reference["cutoff"]
    theirs = reference.pivot(index="cutoff", columns="ahead", values=column).to_numpy()
    # cross_validation's cutoffs run from fit_end - 1 to the last origin with a full horizon.
    np.testing.assert_allclose(ours[name][:, :, 0], theirs[: len(origins), gap:], rtol=1e-6)


def test_a_series_with_baselines_scores_them_on_the_test_windows():
    frame = load_series("sunspots", "year")
    data = series_splits(frame, input_width=10, horizon=2, baselines=("ets", "theta", "arima"))
    naive = data.naive_forecasts
    assert {"ets", "theta", "arima"} <= set(naive)
    for name in ("ets", "theta", "arima"):
        assert naive[name].shape == naive["persistence"].shape
        assert np.isfinite(naive[name]).all()
    # ARIMA captures the sunspot cycle that persistence cannot (measured: ~0.5 of its MSE).
    truth = data.to_original_units(np.asarray(data.splits.y_test))
    mse = {name: np.mean((forecast - truth) ** 2) for name, forecast in naive.items()}
    assert mse["arima"] < mse["persistence"]


def test_an_unknown_baseline_is_named():
    frame = pd.DataFrame({"y": seasonal_series()})
    with pytest.raises(DataError, match="unknown statistical baseline 'prophet'"):
        series_splits(frame, input_width=8, baselines=("prophet",))
