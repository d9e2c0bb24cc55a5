import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_squared_error

from forecast.data import Splits
from forecast.evaluation import evaluate, max_solved_gap, summarize


class ConstantModel:
    def __init__(self, value):
        self.value = value

    def predict(self, x, **kwargs):
        return np.full((len(x), 1), self.value, dtype="float32")


def test_evaluate_matches_sklearn_and_the_mean_baseline():
    rng = np.random.default_rng(0)
    y_train = rng.uniform(size=(50, 1)).astype("float32")
    y_test = rng.uniform(size=(30, 1)).astype("float32")
    x = np.zeros((30, 4, 1), "float32")
    splits = Splits(x[:1], y_train, x[:1], y_train[:1], x, y_test)
    metrics = evaluate(ConstantModel(0.3), splits, solved_ratio=0.1)
    assert metrics["test_mse"] == pytest.approx(
        mean_squared_error(y_test, np.full_like(y_test, 0.3))
    )
    baseline = mean_squared_error(y_test, np.full_like(y_test, y_train.mean()))
    assert metrics["baseline_mse"] == pytest.approx(baseline)
    assert metrics["mse_ratio"] == pytest.approx(metrics["test_mse"] / baseline)
    assert metrics["solved"] == 0.0
    perfect = evaluate(
        ConstantModel(0.0), Splits(x, y_train * 0 + 1, x, x[:, 0], x, y_test * 0), 0.1
    )
    assert perfect["solved"] == 1.0


def test_summary_and_max_solved_gap():
    trials = pd.DataFrame(
        {
            "model": ["rnn", "rnn", "rnn", "rnn", "lstm", "lstm", "lstm", "lstm"],
            "gap": [10, 10, 50, 50, 10, 10, 50, 50],
            "seed": [0, 1] * 4,
            "params": [5] * 4 + [9] * 4,
            "test_mse": [0.1, 0.3, 1.0, 1.0, 0.1, 0.1, 0.2, 0.4],
            "mse_ratio": [0.05, 0.07, 1.0, 0.9, 0.01, 0.01, 0.05, 0.2],
            "solved": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],
            "train_seconds": [1.0, 3.0] * 4,
        }
    )
    summary = summarize(trials)
    assert list(summary["model"]) == ["rnn", "rnn", "lstm", "lstm"]
    assert list(summary["solved"]) == ["2/2", "0/2", "2/2", "1/2"]
    assert summary["test_mse"].iloc[0] == pytest.approx(0.2)
    assert summary["train_seconds"].iloc[0] == pytest.approx(2.0)
    assert max_solved_gap(trials) == {"rnn": 10, "lstm": 10}


def test_regression_metrics_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, r2_score

    from forecast.evaluation import regression_metrics

    rng = np.random.default_rng(3)
    truth = rng.normal(5, 2, size=(40, 3, 2))
    predictions = truth + rng.normal(0, 0.5, size=truth.shape)
    metrics = regression_metrics(predictions, truth)
    flat_truth, flat_pred = truth.reshape(40, -1), predictions.reshape(40, -1)
    assert metrics["mse"] == pytest.approx(mean_squared_error(flat_truth, flat_pred))
    assert metrics["rmse"] == pytest.approx(np.sqrt(metrics["mse"]))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(flat_truth, flat_pred))
    assert metrics["r2"] == pytest.approx(r2_score(flat_truth, flat_pred))
    expected_smape = 100 * np.mean(
        2 * np.abs(predictions - truth) / (np.abs(truth) + np.abs(predictions))
    )
    assert metrics["smape"] == pytest.approx(expected_smape)
    assert regression_metrics(np.zeros((2, 1)), np.zeros((2, 1)))["smape"] == 0.0


def test_mase_and_per_step_errors_use_the_naive_forecasts():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 4, 1), "float32")
    y_test = rng.normal(size=(20, 2, 1)).astype("float32")
    splits = Splits(x, y_test, x, y_test, x, y_test)
    persistence = y_test + 1.0  # off by exactly 1 everywhere: MAE 1
    metrics = evaluate(
        ConstantModelSeq(y_test + 0.5), splits, 0.1, naive_forecasts={"persistence": persistence}
    )
    assert metrics["test_mase"] == pytest.approx(0.5)
    assert metrics["persistence_mse"] == pytest.approx(1.0)
    assert metrics["test_mse.step1"] == pytest.approx(0.25)
    assert metrics["test_mse.step2"] == pytest.approx(0.25)


class ConstantModelSeq:
    def __init__(self, predictions):
        self.predictions = predictions

    def predict(self, x, **kwargs):
        return self.predictions


def test_seed_intervals_are_student_t_intervals():
    from scipy import stats

    from forecast.evaluation import seed_intervals

    ratios = [0.02, 0.05, 0.11]
    trials = pd.DataFrame(
        {"model": ["lstm"] * 3, "gap": [100] * 3, "seed": [0, 1, 2], "mse_ratio": ratios}
    )
    row = seed_intervals(trials).iloc[0]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(ratios), scale=stats.sem(ratios))
    assert row["mean_ratio"] == pytest.approx(np.mean(ratios))
    assert (row["low"], row["high"]) == pytest.approx((low, high))


def test_gradient_flow_reaches_only_the_steps_a_model_can_see():
    import keras

    from forecast.evaluation import gradient_flow
    from forecast.layers import SimpleRNN

    memoryless = keras.Sequential(
        [keras.Input((6, 1)), SimpleRNN(3, recurrent_initializer="zeros"), keras.layers.Dense(1)]
    )
    x = np.random.default_rng(0).normal(size=(8, 6, 1)).astype("float32")
    flow = gradient_flow(memoryless, x, np.ones((8, 1), "float32"))
    assert flow.shape == (6,)
    assert flow[0] > 0 and np.all(flow[1:] == 0)  # k = 0 is the last step
