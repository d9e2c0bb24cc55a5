"""Baseline forecasters against statsforecast's own cross-validation on the same data."""

import numpy as np
import pandas as pd
import pytest

from forecast.forecasters import (
    baseline_forecasts,
    baseline_names,
    check_forecaster,
    make_forecaster,
)

pytest.importorskip("statsforecast")  # installed by `make` (the `stats` extra)


def seasonal_series(length=120, season=12, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    return 10 + 0.05 * steps + 2 * np.sin(2 * np.pi * steps / season) + rng.normal(0, 0.3, length)


def statsforecast_cross_validation(model, values, fit_end, steps, refit):
    """statsforecast's forecasts from every origin from fit_end - 1 on, as (origins, steps)."""
    from statsforecast import StatsForecast

    frame = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(values)), "y": values})
    reference = StatsForecast(models=[model], freq=1).cross_validation(
        df=frame, h=steps, test_size=len(values) - fit_end, step_size=1, refit=refit
    )
    # One row per (cutoff, time): the cutoff is the origin, time - cutoff the step ahead.
    column = reference.columns[-1]
    reference["ahead"] = reference["ds"] - reference["cutoff"]
    return reference.pivot(index="cutoff", columns="ahead", values=column).to_numpy()


@pytest.mark.parametrize("name", ["ets", "theta", "arima"])
def test_statistical_forecasts_from_every_origin_are_statsforecasts_own_without_refitting(name):
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    values = seasonal_series()
    fit_end, horizon, gap = 90, 3, 1
    origins = np.arange(fit_end - 1, len(values) - gap - horizon)
    ours, chosen = baseline_forecasts(
        values[:, None], fit_end, origins, horizon, gap, (12,), [name]
    )
    model = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA}[name](season_length=12)
    theirs = statsforecast_cross_validation(model, values, fit_end, gap + horizon, refit=False)
    np.testing.assert_allclose(ours[name][:, :, 0], theirs[: len(origins), gap:], rtol=1e-6)
    assert chosen[name].startswith({"ets": "ETS(", "theta": "Theta(", "arima": "ARIMA("}[name])


def test_mstl_with_two_seasons_forecasts_every_origin_as_statsforecasts_own():
    """A daily and a weekly season of hourly-like data (6 and 18 steps here, to stay small):
    statsforecast's MSTL with both and its default trend model, fitted once on the past."""
    from statsforecast.models import MSTL

    steps = np.arange(160)
    rng = np.random.default_rng(1)
    values = 10 + np.sin(2 * np.pi * steps / 6) + 2 * np.sin(2 * np.pi * steps / 18)
    values = values + rng.normal(0, 0.2, len(steps))
    fit_end, horizon = 120, 4
    origins = np.arange(fit_end - 1, len(values) - horizon)
    ours, chosen = baseline_forecasts(
        values[:, None], fit_end, origins, horizon, 0, (6, 18), ["mstl"]
    )
    theirs = statsforecast_cross_validation(
        MSTL(season_length=[6, 18]), values, fit_end, horizon, refit=False
    )
    np.testing.assert_allclose(ours["mstl"][:, :, 0], theirs[: len(origins)], rtol=1e-6)
    assert chosen["mstl"].startswith("MSTL[6, 18] + ETS(")
    # The weekly-like season matters: the daily-like one alone forecasts worse.
    truth = np.stack([values[origin + 1 : origin + 1 + horizon] for origin in origins])
    one, _ = baseline_forecasts(values[:, None], fit_end, origins, horizon, 0, (6,), ["mstl"])
    error = {
        k: np.abs(f["mstl"][:, :, 0] - truth).mean() for k, f in (("both", ours), ("one", one))
    }
    assert error["both"] < error["one"]


def test_each_single_season_forecaster_takes_the_season_it_can_fit():
    seasons = (12, 48)  # a half-day and a day of half-hours, say
    assert make_forecaster("seasonal_naive", seasons).season == 48
    models = {name: make_forecaster(name, seasons).model for name in ("ets", "arima", "theta")}
    assert models["ets"].season_length == 12  # the longest up to 24 steps
    assert models["arima"].season_length == 12
    assert models["theta"].season_length == 48
    assert make_forecaster("ets", (52,)).model.season_length == 1  # none it can fit
    assert make_forecaster("mstl", seasons).model.season_length == [12, 48]
    with pytest.raises(ValueError, match="mstl needs data.season"):
        make_forecaster("mstl")
    with pytest.raises(ValueError, match="mstl needs two whole seasons of 48 steps"):
        make_forecaster("mstl", seasons).fit(np.ones(90))


@pytest.mark.parametrize("name", ["naive", "seasonal_naive", "mean", "drift"])
def test_naive_forecasts_are_statsforecasts_own_over_a_horizon_of_several_seasons(name):
    """A horizon of 30 steps with a season of 12: the seasonal naive forecast reaches back as
    many whole seasons as each step needs."""
    from statsforecast.models import HistoricAverage, Naive, RandomWalkWithDrift, SeasonalNaive

    values = seasonal_series()
    fit_end, steps = 70, 30
    origins = np.arange(fit_end - 1, len(values) - steps)
    ours, _ = baseline_forecasts(values[:, None], fit_end, origins, steps, 0, (12,), [name])
    model = {
        "naive": Naive(),
        "seasonal_naive": SeasonalNaive(season_length=12),
        "mean": HistoricAverage(),
        "drift": RandomWalkWithDrift(),
    }[name]
    theirs = statsforecast_cross_validation(model, values, fit_end, steps, refit=True)
    np.testing.assert_allclose(ours[name][:, :, 0], theirs[: len(origins)], rtol=1e-9)


def test_seasonal_naive_takes_the_last_observed_value_of_each_season_by_hand():
    values = np.arange(20.0)  # y = step: k seasons back is step - k * season
    fitted = make_forecaster("seasonal_naive", (4,)).fit(values[:10])
    ahead = fitted.forecast(values, np.array([9]), 9)
    np.testing.assert_array_equal(ahead[0], [6, 7, 8, 9, 6, 7, 8, 9, 6])


def test_the_naive_forecasters_are_always_there_the_seasonal_one_with_a_season():
    assert baseline_names([], ()) == ["naive", "mean", "drift"]
    assert baseline_names(["ets", "naive"], (12,)) == [
        "naive",
        "seasonal_naive",
        "mean",
        "drift",
        "ets",
    ]


def test_an_unknown_forecaster_is_named():
    with pytest.raises(ValueError, match="unknown forecaster 'prophet'"):
        make_forecaster("prophet")
    with pytest.raises(ValueError, match="seasonal_naive needs data.season"):
        make_forecaster("seasonal_naive")


USER_FORECASTERS = '''
import numpy as np


class LastTwoMean:
    """The mean of the last two observations, for every step."""

    def __init__(self, season=None):
        self.specification = "mean of 2"

    def fit(self, past):
        return self

    def forecast(self, values, origins, steps):
        level = (values[origins] + values[origins - 1]) / 2
        return np.repeat(level[:, None], steps, axis=1)


class WrongShape(LastTwoMean):
    def forecast(self, values, origins, steps):
        return np.zeros(steps)


class NoSeason:
    def __init__(self):
        pass
'''


def test_a_users_forecaster_plugs_in_by_import_path_and_is_checked(tmp_path, monkeypatch):
    (tmp_path / "my_forecasters.py").write_text(USER_FORECASTERS)
    monkeypatch.chdir(tmp_path)  # import paths resolve from the working directory first
    values = np.arange(30.0)[:, None]
    name = "my_forecasters:LastTwoMean"
    check_forecaster(name, (), values[:20, 0], 3)
    ours, chosen = baseline_forecasts(values, 20, np.array([19, 24]), 3, 1, (), [name])
    np.testing.assert_allclose(ours[name][:, :, 0], [[18.5] * 3, [23.5] * 3])
    assert chosen[name] == "mean of 2"
    with pytest.raises(ValueError, match=r"WrongShape.forecast returned shape \(3,\)"):
        check_forecaster("my_forecasters:WrongShape", (), values[:20, 0], 3)
    with pytest.raises(ValueError, match=r"NoSeason\(season=None\)"):
        check_forecaster("my_forecasters:NoSeason", (), values[:20, 0], 3)
    with pytest.raises(ValueError, match="cannot import 'nowhere'"):
        check_forecaster("nowhere:Thing", (), values[:20, 0], 3)


def test_arima_on_log_air_passengers_finds_the_published_airline_model():
    """The published anchor (docs/benchmarks.md): on log(AirPassengers), Box & Jenkins' Series G,
    R's auto.arima selects the airline model ARIMA(0,1,1)(0,1,1)[12]; R's arima documents its
    fit, by conditional sum of squares ma1 -0.3772, sma1 -0.5724, by full maximum likelihood
    ma1 -0.4018, sma1 -0.5569 with log-likelihood 244.70 and AIC -483.40."""
    from statsforecast.utils import AirPassengers

    arima = make_forecaster("arima", (12,)).fit(np.log(AirPassengers))
    assert arima.specification == "ARIMA(0,1,1)(0,1,1)[12]"
    fitted = arima.model.model_
    # statsforecast's maximum-likelihood step stays at the conditional-sum-of-squares start,
    # 0.05 below R's likelihood maximum: its coefficients are R's CSS ones.
    assert fitted["coef"]["ma1"] == pytest.approx(-0.3772, abs=5e-4)
    assert fitted["coef"]["sma1"] == pytest.approx(-0.5724, abs=5e-4)
    assert fitted["loglik"] == pytest.approx(244.70, abs=0.1)
    assert fitted["aic"] == pytest.approx(-483.40, abs=0.2)
