"""The engine reports to a tracker (forecast.tracker): what it tells it, checked with the
in-memory tracker, which writes nothing. MLflow's own record has its tests beside the pipeline's
(test_experiment, test_pipeline)."""

import numpy as np
import pandas as pd
import pytest

from forecast import api, runner
from forecast import trial as trial_module
from forecast.config import ConfigError, load_experiment
from forecast.forecasters import NAIVE_FORECASTERS
from forecast.tracker import MemoryTracker
from tests.test_experiment import SERIES_TINY, TINY


@pytest.fixture
def no_store(tmp_path, monkeypatch):
    """Where MLflow's default store would be, so that a test can check nothing was written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "mlflow.db"


def test_a_sweep_tells_its_tracker_each_trial_epoch_and_summary(no_store):
    name, config = load_experiment("sine_long_gap", TINY)
    tracker = MemoryTracker()
    results = runner.run_experiment(name, config, log=lambda line: None, tracker=tracker)
    (sweep,) = tracker.sweeps
    assert sweep.status == "FINISHED"
    assert (results.run_id, results.tracking_uri) == (sweep.id, None)
    assert sweep.params["models"] == ["rnn", "lstm"] and sweep.params["gaps"] == [2, 6]
    assert [trial.name for trial in sweep.trials] == list(results.trials["trial"])
    assert list(results.trials["run_id"]) == [trial.id for trial in sweep.trials]
    for trial in sweep.trials:
        assert trial.status == "FINISHED" and trial.params["epochs"] == 2
        # Each epoch's logs as Keras gave them, the same losses the outcome's history holds.
        assert [epoch["loss"] for epoch in trial.epochs] == trial.outcome.history["loss"]
    pd.testing.assert_frame_equal(sweep.tables["summary.csv"], results.summary())
    assert set(sweep.metrics) == {"max_solved_gap.rnn", "max_solved_gap.lstm"}
    assert {"ratio_vs_gap.png", "gradient_flow.png"} <= set(sweep.figures)
    assert not no_store.exists()


def test_a_failed_trial_ends_failed_with_its_reason_and_the_sweep_goes_on(no_store, monkeypatch):
    real = trial_module.train

    def crash_lstm(model, *args, **kwargs):
        if "lstm" in model.name:
            raise RuntimeError("boom")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train", crash_lstm)
    name, config = load_experiment("sine_long_gap", [*TINY, "task.gaps=[2]"])
    tracker = MemoryTracker()
    results = runner.run_experiment(name, config, log=lambda line: None, tracker=tracker)
    (sweep,) = tracker.sweeps
    statuses = [(trial.name, trial.status, trial.failure_reason) for trial in sweep.trials]
    assert statuses == [
        ("rnn-gap2-seed0", "FINISHED", None),
        ("lstm-gap2-seed0", "FAILED", "RuntimeError: boom"),
    ]
    assert sweep.status == "FINISHED"
    assert list(results.trials["state"]) == ["complete", "failed"]


def test_an_interrupt_ends_the_trial_and_the_sweep_killed(no_store, monkeypatch):
    real = trial_module.train

    def interrupt_lstm(model, *args, **kwargs):
        if "lstm" in model.name:
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train", interrupt_lstm)
    name, config = load_experiment("sine_long_gap", [*TINY, "task.gaps=[2]"])
    tracker = MemoryTracker()
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lambda line: None, tracker=tracker)
    (sweep,) = tracker.sweeps
    assert [trial.status for trial in sweep.trials] == ["FINISHED", "KILLED"]
    assert sweep.status == "KILLED"


@pytest.mark.parametrize("refit, trainings", [(False, 1), (2, 2)])
def test_a_backtest_trains_before_every_refit_th_fold_and_slides_between(
    refit, trainings, no_store
):
    """Four folds: without refit one training on the first fold's past; with refit 2, one
    before the first fold and one before the third."""
    overrides = [*SERIES_TINY, "data.backtest.folds=4", f"data.backtest.refit={refit}"]
    overrides += ["train.epochs=2", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    name, config = load_experiment("co2_forecast", overrides)
    tracker = MemoryTracker()
    results = runner.run_experiment(name, config, log=lambda line: None, tracker=tracker)
    (lstm,) = tracker.sweeps[0].trials
    assert len(lstm.epochs) == 2 * trainings
    naive = results.forecasts[results.forecasts["forecaster"] == "naive"]
    origins = naive.groupby("fold")["origin"].min()
    assert len(origins) == 4 and origins.is_monotonic_increasing and origins.is_unique
    # Each fold scored on its own windows.
    scores = results.scores
    naive_mse = scores[(scores["forecaster"] == "naive") & (scores["metric"] == "mse")]
    assert naive_mse["value"].nunique() == 4


def test_evaluation_step_forecasts_every_kth_origin_as_every_origin_does(no_store):
    """Every forecaster, the network too, forecasts the same at the origins both keep."""
    overrides = [*SERIES_TINY, "models=[{name: lstm, layer: LSTM, units: 3}]"]
    runs = {}
    for step in (1, 3):
        name, config = load_experiment("co2_forecast", [*overrides, f"evaluation.step={step}"])
        results = runner.run_experiment(
            name, config, log=lambda line: None, tracker=MemoryTracker()
        )
        runs[step] = results.forecasts.set_index(["forecaster", "origin", "step"])["yhat"]
    every, third = runs[1], runs[3]
    origins = {step: runs[step].index.unique("origin").sort_values() for step in runs}
    assert list(origins[3]) == list(origins[1][::3])  # weekly origins, three weeks apart
    assert set(third.index.unique("forecaster")) == {"lstm", *NAIVE_FORECASTERS}
    np.testing.assert_allclose(third, every.loc[third.index], rtol=1e-5)


def test_an_in_memory_tracker_refuses_trials_run_elsewhere(no_store):
    name, config = load_experiment("sine_long_gap", TINY)
    with pytest.raises(ConfigError, match="in-memory tracker records trials run in this process"):
        runner.run_experiment(name, config, workers=2, tracker=MemoryTracker())
    with pytest.raises(ConfigError, match="in-memory tracker"):
        MemoryTracker().check("ray", None, 1)
    with pytest.raises(ConfigError, match="tracker: tracking_uri and system_metrics are MLflow's"):
        api.run("sine_long_gap", tracker=MemoryTracker(), tracking_uri="sqlite:///x.db")
