"""The Python API: forecast.run returns every forecaster's forecasts and their scores as
tables, forecast.load rebuilds the same from MLflow, and the command line prints them."""

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import forecast
from forecast.cli import format_table, main, ranked_summary
from forecast.config import ConfigError
from tests.test_experiment import TINY

ROOT = Path(__file__).resolve().parent.parent

# co2 backtested on 2 folds with an 80% quantile interval, two tiny networks, the naive
# forecasters as baselines.
SERIES = {
    "data.backtest.folds": 2,
    "data.baselines": [],
    "data.input_width": 8,
    "data.horizon": 2,
    "data.season": 4,
    "models.0.units": 3,
    "models.1.units": 3,
    "train.epochs": 1,
    "train.batch_size": 256,
    "log_models": False,
    "train.refit": False,
}


@pytest.fixture(scope="module")
def series_results(tmp_path_factory, empty_store):
    """co2's tiny backtest, run once for this module's tests in a store of its own."""
    folder = tmp_path_factory.mktemp("api")
    shutil.copyfile(empty_store, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return forecast.run("co2_forecast", SERIES, tracking_uri=uri, log=None)


def test_run_returns_every_forecast_as_one_table_scored_as_by_hand(series_results):
    results = series_results
    assert (results.kind.data, results.kind.backtest, results.kind.search) == (
        "series",
        True,
        False,
    )
    trials, forecasts = results.trials, results.forecasts
    assert list(trials["trial"]) == ["rnn-gap0-seed0", "lstm-gap0-seed0"]
    assert list(trials["state"]) == ["complete", "complete"]
    assert set(forecasts["forecaster"]) == {
        "rnn",
        "lstm",
        "naive",
        "seasonal_naive",
        "mean",
        "drift",
    }
    # Every forecaster forecasts the same origins and steps of the same folds, in every trial.
    keys = ["fold", "series", "target", "origin", "step", "time"]
    grids = [
        rows[keys].sort_values(keys).reset_index(drop=True)
        for _, rows in forecasts.groupby(["trial", "forecaster"])
    ]
    for grid in grids[1:]:
        pd.testing.assert_frame_equal(grid, grids[0])
    assert forecasts["time"].iloc[0] > forecasts["origin"].iloc[0]
    assert {"q0.1", "q0.5", "q0.9"} <= set(forecasts)
    assert forecasts.loc[forecasts["forecaster"] == "lstm", "level"].eq(0.8).all()

    # MAPE by hand from the table is the scores' MAPE, and (mean over folds) the trial's.
    by_hand = (
        (100 * (forecasts["yhat"] - forecasts["y"]).abs() / forecasts["y"].abs())
        .groupby([forecasts["trial"], forecasts["forecaster"], forecasts["fold"]])
        .mean()
    )
    scored = results.scores[results.scores["metric"] == "mape"]
    scored = scored.set_index(["trial", "forecaster", "fold"])["value"].sort_index()
    pd.testing.assert_series_equal(by_hand.sort_index(), scored.sort_index(), check_names=False)
    lstm = trials.set_index("trial").loc["lstm-gap0-seed0"]
    assert lstm["test_mape"] == pytest.approx(scored.loc["lstm-gap0-seed0", "lstm"].mean())
    # The trials table holds each network's own metrics; the baselines are in `scores` only.
    assert not any(column.startswith("naive.") for column in trials.columns)
    assert {"coverage", "msis", "wql", "mase", "rmsse"} <= set(results.scores["metric"])
    assert set(results.score(["mae"])["metric"]) == {"mae"}
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        results.score(["accuracy"])


def test_scores_match_utilsforecast_on_the_same_forecasts(series_results):
    from utilsforecast.evaluation import evaluate
    from utilsforecast.losses import mae, mape, rmse

    results = series_results
    forecasts = results.forecasts
    one = forecasts[(forecasts["trial"] == "lstm-gap0-seed0") & (forecasts["fold"] == 0)]
    # utilsforecast's layout: one row per (series, time), a column per model; one origin a row.
    first_step = one[one["step"] == 1]
    wide = first_step.pivot_table(index=["series", "time"], columns="forecaster", values="yhat")
    wide["y"] = first_step.drop_duplicates(["series", "time"]).set_index(["series", "time"])["y"]
    wide = wide.reset_index().rename(columns={"series": "unique_id", "time": "ds"})
    models = ["lstm", "naive", "drift"]
    reference = evaluate(wide[["unique_id", "ds", "y", *models]], metrics=[mae, rmse, mape])
    # Ours over step 1 only, as the reference sees it.
    step_one = dataclasses.replace(results, forecasts=first_step).score(["mae", "rmse", "mape"])
    for metric, scale in (("mae", 1), ("rmse", 1), ("mape", 100)):
        expected = reference[reference["metric"] == metric].iloc[0]
        got = step_one[step_one["metric"] == metric].set_index("forecaster")["value"]
        for model in models:
            assert got[model] == pytest.approx(scale * expected[model], rel=1e-9)


def test_load_gives_the_frames_run_returned_and_compare_prints_its_summary(
    series_results, monkeypatch, capsys
):
    results = series_results
    loaded = forecast.load(results.run_id, results.tracking_uri)
    assert loaded.kind == results.kind and loaded.name == "co2_forecast"
    pd.testing.assert_frame_equal(loaded.forecasts, results.forecasts)
    pd.testing.assert_frame_equal(loaded.scores, results.scores)
    pd.testing.assert_frame_equal(loaded.summary(), results.summary())
    pd.testing.assert_frame_equal(loaded.paired(), results.paired())
    columns = ["trial", "model", "network", "point", "gap", "seed", "state", "run_id", "test_mape"]
    pd.testing.assert_frame_equal(
        loaded.trials[columns].reset_index(drop=True), results.trials[columns], check_dtype=False
    )
    # By the experiment's name too, as `forecast compare` reads it: the table `forecast run`
    # prints, then the pairs by fold.
    latest = forecast.load("co2_forecast", results.tracking_uri)
    pd.testing.assert_frame_equal(latest.forecasts, results.forecasts)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", results.tracking_uri)
    assert main(["compare", "co2_forecast"]) == 0
    compared = capsys.readouterr().out.split("\n\n")
    # Which sweep it is (and how its settings differ from the experiment file's), then the
    # summary best first.
    assert compared[0].startswith(f"co2_forecast: sweep {results.run_id}, started ")
    assert ", FINISHED; " in compared[0]
    for setting in ("data.backtest.folds=2", "data.baselines=[]", "train.epochs=1"):
        assert setting in compared[0].split("; ")[1].split(", ")
    ranked, best = ranked_summary(results.summary(), "table")
    assert compared[1] == f"{format_table(ranked, 'table')}\n{best}"
    assert compared[2].startswith("Paired by backtest fold")


def test_a_models_seeds_are_also_scored_as_their_ensemble(tracking_store):
    """Two seeds of the LSTM: their forecasts combined step by step (the points, the interval's
    bounds and the quantiles, each the mean) are a forecaster of their own, in the tables, the
    summary and MLflow's runs, and rebuilt alike by forecast.load."""
    lstm = {"name": "lstm", "layer": "LSTM", "units": 3}
    overrides = {**SERIES, "data.backtest.folds": 1, "models": [lstm], "seeds": [0, 1]}
    results = forecast.run("co2_forecast", overrides, log=None)
    forecasts = results.forecasts
    keys = ["series", "target", "fold", "origin", "step"]
    columns = ["y", "yhat", "lo", "hi", "q0.1", "q0.5", "q0.9"]
    seeds = forecasts[forecasts["forecaster"] == "lstm"].groupby(keys)[columns].mean()
    ensemble = forecasts[forecasts["forecaster"] == "lstm_ensemble"]
    assert set(ensemble["trial"]) == {"lstm-gap0-seed0"}  # on the first seed's rows
    pd.testing.assert_frame_equal(
        ensemble.set_index(keys)[columns].sort_index(), seeds.sort_index()
    )

    summary = results.summary().set_index("model")
    assert list(summary.index[:2]) == ["lstm", "lstm_ensemble"]
    assert summary.at["lstm_ensemble", "seeds"] == 2
    assert summary.at["lstm_ensemble", "weights"] == 2 * summary.at["lstm", "weights"]
    mae = (ensemble["yhat"] - ensemble["y"]).abs().mean()
    assert summary.at["lstm_ensemble", "mae"] == pytest.approx(mae)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_store)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("co2_forecast").experiment_id],
        "tags.`forecast.role` = 'ensemble'",
    )
    assert run.info.run_name == "lstm_ensemble-gap0"
    assert run.data.metrics["test_mae"] == pytest.approx(mae)
    loaded = forecast.load(results.run_id, tracking_store)
    pd.testing.assert_frame_equal(loaded.forecasts, results.forecasts)
    assert len(loaded.trials) == 2  # the ensemble's run is no trial

    evaluation = dataclasses.replace(results.config.evaluation, ensemble="median")
    median = dataclasses.replace(
        results, config=dataclasses.replace(results.config, evaluation=evaluation)
    )
    rows = median.forecasts[median.forecasts["forecaster"] == "lstm_ensemble"]
    np.testing.assert_allclose(rows["yhat"], ensemble["yhat"])  # of two, the median is the mean
    evaluation = dataclasses.replace(evaluation, ensemble="none")
    alone = dataclasses.replace(
        results, config=dataclasses.replace(results.config, evaluation=evaluation)
    )
    assert "lstm_ensemble" not in set(alone.forecasts["forecaster"])


def test_a_task_forecasts_its_test_samples_and_scores_them_against_the_mean(tracking_store):
    tiny = [*TINY, "task.gaps=[2]"]  # two trials
    overrides = {key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in tiny)}
    results = forecast.run("sine_long_gap", overrides, log=None)
    assert results.kind.data == "task"
    scores = results.scores.set_index(["trial", "forecaster", "metric"])["value"]
    for _, trial in results.trials.iterrows():
        assert scores[trial["trial"], trial["network"], "mse"] == pytest.approx(trial["test_mse"])
        assert scores[trial["trial"], "mean", "mse"] == pytest.approx(trial["baseline_mse"])
    own = results.forecasts[results.forecasts["trial"] == results.trials["trial"].iloc[0]]
    assert list(own.columns) == ["trial", "forecaster", "fold", "sample", "position", "y", "yhat"]
    assert np.isfinite(own["yhat"]).all()


def test_bad_input_to_run_raises_one_clear_error(tracking_store):
    with pytest.raises(ConfigError, match="no experiment or file 'no_such'|no_such"):
        forecast.run("no_such", log=None)
    with pytest.raises(ConfigError, match="train.epochz"):
        forecast.run("sine_long_gap", {"train.epochz": 1}, log=None)
    with pytest.raises(ConfigError, match="tracking|no sweep or experiment 'nothing'"):
        forecast.load("nothing")


def test_import_forecast_loads_neither_tensorflow_nor_mlflow():
    script = "import sys, forecast; print(sorted({'tensorflow', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.processes
def test_the_python_example_runs_as_written(tracking_store):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "True"  # the loaded summary equals the returned one
    checks = [line for line in lines if line.rstrip().endswith(("True", "False"))]
    assert all(line.rstrip().endswith("True") for line in checks), done.stdout
