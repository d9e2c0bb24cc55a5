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
