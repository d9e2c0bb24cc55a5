import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error

from forecast.data import series_splits
from forecast.evaluation import comparison_table, max_solved_gap, score, summarize


def test_score_matches_sklearn_and_the_mean_baseline():
    rng = np.random.default_rng(0)
    y_train = rng.uniform(size=(50, 1)).astype("float32")
    y_test = rng.uniform(size=(30, 1)).astype("float32")
    metrics = score(np.full_like(y_test, 0.3), y_test, y_train, solved_ratio=0.1)
    assert metrics["test_mse"] == pytest.approx(
        mean_squared_error(y_test, np.full_like(y_test, 0.3))
    )
    baseline = mean_squared_error(y_test, np.full_like(y_test, y_train.mean()))
    assert metrics["baseline_mse"] == pytest.approx(baseline)
    assert metrics["mse_ratio"] == pytest.approx(metrics["test_mse"] / baseline)
    assert metrics["solved"] == 0.0
    perfect = score(y_test * 0, y_test * 0, y_train * 0 + 1, 0.1)
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


def test_relative_mae_and_per_step_errors_use_the_naive_forecasts():
    rng = np.random.default_rng(0)
    y_test = rng.normal(size=(20, 2, 1)).astype("float32")
    persistence = y_test + 1.0  # off by exactly 1 everywhere: MAE 1
    metrics = score(y_test + 0.5, y_test, y_test, 0.1, naive_forecasts={"persistence": persistence})
    assert metrics["test_relmae"] == pytest.approx(0.5)
    assert "test_mase" not in metrics  # no in-sample scale given
    assert metrics["persistence_mse"] == pytest.approx(1.0)
    assert metrics["test_mse.step1"] == pytest.approx(0.25)
    assert metrics["test_mse.step2"] == pytest.approx(0.25)


@pytest.mark.parametrize("season", [None, 4])
def test_mase_scales_by_the_in_sample_naive_error_of_the_train_part(season):
    """Hyndman & Koehler (2006): MASE = test MAE / mean |y_t - y_{t-m}| over the training
    series (m = 1, or the season), here computed by hand from the raw train part."""
    rng = np.random.default_rng(1)
    values = np.cumsum(rng.normal(size=(200, 2)), axis=0)
    frame = pd.DataFrame(values, columns=["a", "b"])
    series = series_splits(frame, input_width=8, horizon=2, scaler="none", season=season)
    n_train = series.split_lengths[0]
    lag = season or 1
    train = values[:n_train]
    scale = np.array(
        [
            np.mean([abs(train[t, j] - train[t - lag, j]) for t in range(lag, n_train)])
            for j in (0, 1)
        ]
    )
    np.testing.assert_allclose(series.naive_scale, scale)
    truth = series.splits.y_test
    predictions = truth + rng.normal(size=truth.shape)
    metrics = score(predictions, truth, series.splits.y_train, 0.1, naive_scale=series.naive_scale)
    by_target = [np.mean(np.abs(predictions - truth)[..., j]) / scale[j] for j in (0, 1)]
    assert metrics["test_mase"] == pytest.approx(np.mean(by_target))


def test_comparison_table_gives_each_sweep_point_its_own_naive_rows():
    """A sweep over data keys: each point's naive forecasts are scored on its own windows."""
    trials = pd.DataFrame(
        {
            "model": ["lstm [w=8]", "lstm [w=12]"],
            "point": ["w=8", "w=12"],
            "gap": [0, 0],
            "seed": [0, 0],
            "params": [9, 9],
            "test_mse": [1.0, 2.0],
            "test_mae": [0.8, 1.1],
            "mse_ratio": [0.1, 0.2],
            "solved": [1.0, 0.0],
            "train_seconds": [1.0, 1.0],
            "baseline_mse": [10.0, 20.0],
            "baseline_mae": [3.0, 4.0],
            "persistence_mse": [2.0, 4.0],
            "persistence_mae": [1.0, 1.5],
            "persistence_ratio": [0.5, 0.5],
        }
    )
    table = comparison_table(trials)
    assert list(table["model"]) == [
        "lstm [w=8]",
        "lstm [w=12]",
        "naive_mean [w=8]",
        "naive_persistence [w=8]",
        "naive_mean [w=12]",
        "naive_persistence [w=12]",
    ]
    naive = table.set_index("model")
    assert naive.loc["naive_mean [w=12]", "test_mse"] == 20.0
    assert naive.loc["naive_persistence [w=8]", "test_mse"] == 2.0
    assert naive.loc["naive_mean [w=8]", "vs_persistence"] == pytest.approx(5.0)


def test_seed_intervals_are_student_t_intervals():
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

    from forecast.evaluation import make_gradient_flow
    from forecast.layers import SimpleRNN

    memoryless = keras.Sequential(
        [keras.Input((6, 1)), SimpleRNN(3, recurrent_initializer="zeros"), keras.layers.Dense(1)]
    )
    x = np.random.default_rng(0).normal(size=(8, 6, 1)).astype("float32")
    flow = make_gradient_flow(memoryless)(x, np.ones((8, 1), "float32"))
    assert flow.shape == (6,)
    assert flow[0] > 0 and np.all(flow[1:] == 0)  # k = 0 is the last step


def test_classification_score_matches_scikit_learn_and_the_memoryless_baseline():
    from scipy.special import softmax
    from sklearn.metrics import accuracy_score, log_loss

    from forecast.evaluation import classification_score
    from forecast.tasks import copy_memory, copy_memory_baseline

    _, train_labels, classes = copy_memory(8192, gap=20, seed=0)
    _, labels, _ = copy_memory(500, gap=20, seed=1)
    logits = np.random.default_rng(0).normal(size=(*labels.shape, classes))
    metrics = classification_score(logits, labels, train_labels, solved_ratio=0.1)

    flat_labels, flat_logits = labels.ravel(), logits.reshape(-1, classes)
    expected = log_loss(flat_labels, softmax(flat_logits, axis=-1), labels=range(classes))
    assert metrics["test_cross_entropy"] == pytest.approx(expected)
    assert metrics["test_accuracy"] == pytest.approx(
        accuracy_score(flat_labels, flat_logits.argmax(axis=-1))
    )
    # Per-step class frequencies of the training labels are the memoryless strategy: blanks
    # until the symbols are due, then a uniform guess over 8 symbols.
    assert metrics["baseline_cross_entropy"] == pytest.approx(copy_memory_baseline(20), rel=0.01)
    assert metrics["cross_entropy_ratio"] == pytest.approx(
        expected / metrics["baseline_cross_entropy"]
    )
    assert metrics["solved"] == 0.0

    # A model that knows the answer: its logits favour the right class by a wide margin.
    confident = np.where(np.eye(classes)[labels] > 0, 20.0, 0.0)
    solved = classification_score(confident, labels, train_labels, solved_ratio=0.1)
    assert solved["test_accuracy"] == 1.0 and solved["solved"] == 1.0


def test_summary_of_a_categorical_task_reads_its_cross_entropy_ratio():
    trials = pd.DataFrame(
        {
            "model": ["lstm", "lstm", "rnn", "rnn"],
            "gap": [50, 50, 50, 50],
            "seed": [0, 1, 0, 1],
            "params": [9, 9, 5, 5],
            "test_cross_entropy": [0.01, 0.03, 0.3, 0.31],
            "test_accuracy": [1.0, 0.99, 0.86, 0.86],
            "cross_entropy_ratio": [0.05, 0.1, 1.0, 1.02],
            "solved": [1.0, 1.0, 0.0, 0.0],
            "train_seconds": [1.0, 1.0, 1.0, 1.0],
        }
    )
    summary = summarize(trials)
    assert "test_mse" not in summary and "mse_ratio" not in summary
    assert list(summary["cross_entropy_ratio"]) == pytest.approx([0.075, 1.01])
    assert list(summary["solved"]) == ["2/2", "0/2"]
    assert "ratio_ci95" in summary
    assert max_solved_gap(trials) == {"lstm": 50, "rnn": -1}


def test_paired_by_fold_sets_each_model_against_the_others_on_the_same_folds():
    from forecast.evaluation import fold_means, paired_by_fold

    rows = []
    lstm = {0: [1.0, 2.0, 4.0], 1: [1.0, 2.0, 2.0]}  # per seed, the MSE of folds 0, 1, 2
    rnn = {0: [2.0, 2.0, 2.0], 1: [2.0, 2.0, 2.0]}
    persistence = [4.0, 4.0, 4.0]
    for model, errors in (("lstm", lstm), ("rnn", rnn)):
        for seed, per_fold in errors.items():
            for fold, mse in enumerate(per_fold):
                rows.append(
                    {
                        "model": model,
                        "point": "",
                        "gap": 0,
                        "seed": seed,
                        "fold": fold,
                        "test_mse": mse,
                        "baseline_mse": 8.0,
                        "persistence_mse": persistence[fold],
                    }
                )
    paired = paired_by_fold(pd.DataFrame(rows))
    assert list(zip(paired["model"], paired["versus"], strict=True)) == [
        ("lstm", "rnn"),
        ("lstm", "naive_mean"),
        ("lstm", "naive_persistence"),
        ("rnn", "naive_mean"),
        ("rnn", "naive_persistence"),
    ]
    first = paired.iloc[0]
    # Over seeds, the LSTM's folds score 1, 2, 3 against the RNN's 2, 2, 2.
    expected = np.array([1.0, 2.0, 3.0]) / 2.0
    assert first["mse_ratio"] == pytest.approx(expected.mean())
    assert first["ratio_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem(expected))
    assert first["better"] == "1/3" and first["folds"] == 3
    assert paired.iloc[2]["mse_ratio"] == pytest.approx(np.mean([1.0, 2.0, 3.0]) / 4.0)

    means = fold_means([{"test_mse": 1.0}, {"test_mse": 2.0}, {"test_mse": 6.0}])
    assert means["test_mse"] == pytest.approx(3.0)
    assert means["test_mse_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem([1, 2, 6]))


def test_a_panel_is_scored_pooled_and_series_by_series_as_each_alone():
    from sklearn.metrics import mean_absolute_error

    from forecast.config import ExperimentConfig
    from forecast.data import load_panel, panel_splits
    from forecast.trial import _test_metrics

    steps = np.arange(80.0)
    table = pd.concat(
        [
            pd.DataFrame({"id": "low", "y": 10 + np.sin(steps / 3)}),
            pd.DataFrame({"id": "high", "y": 500 + 40 * np.cos(steps / 5)}),
        ]
    )
    panel = load_panel(table, "id")
    window = {"input_width": 6, "horizon": 2, "season": 4}
    (data,) = panel_splits(panel, "id", **window)
    outputs = np.random.default_rng(0).normal(size=data.splits.y_test.shape)
    metrics, _ = _test_metrics(outputs, data.splits, data, ExperimentConfig())
    predictions = data.to_original_units(outputs)
    truth = data.to_original_units(np.asarray(data.splits.y_test))
    # Pooled: every window of both series, in original units.
    assert metrics["test_mse"] == pytest.approx(
        mean_squared_error(truth.reshape(-1), predictions.reshape(-1))
    )
    for name, frame in panel.items():
        alone = series_splits(frame, **window)
        own_outputs = outputs[data.test_windows[name]]
        own_truth = alone.to_original_units(np.asarray(alone.splits.y_test))
        own_predictions = alone.to_original_units(own_outputs)
        assert metrics[f"test_mse/{name}"] == pytest.approx(
            mean_squared_error(own_truth.reshape(-1), own_predictions.reshape(-1))
        )
        own_mae = mean_absolute_error(own_truth.reshape(-1), own_predictions.reshape(-1))
        assert metrics[f"test_mae/{name}"] == pytest.approx(own_mae)
        assert metrics[f"test_mase/{name}"] == pytest.approx(own_mae / alone.naive_scale[0])
        persistence = alone.naive_forecasts["persistence"]
        assert metrics[f"persistence_ratio/{name}"] == pytest.approx(
            metrics[f"test_mse/{name}"] / np.mean((persistence - own_truth) ** 2)
        )
    # Pooled MASE: each window's error scaled by its own series' in-sample naive error.
    scaled = [
        np.abs(predictions - truth)[data.test_windows[name]]
        / series_splits(frame, **window).naive_scale
        for name, frame in panel.items()
    ]
    assert metrics["test_mase"] == pytest.approx(np.mean(np.concatenate(scaled)))


def test_per_series_averages_each_series_metrics_over_seeds():
    from forecast.evaluation import per_series

    trials = pd.DataFrame(
        {
            "model": ["lstm", "lstm", "rnn"],
            "gap": [0, 0, 0],
            "seed": [0, 1, 0],
            "test_mse": [1.0, 2.0, 3.0],
            "test_mse/a": [1.0, 3.0, 5.0],
            "test_mse/b": [2.0, 4.0, 6.0],
            "arima_ratio/a": [1.0, 1.0, 1.0],
            "arima_ratio/b": [2.0, 2.0, 2.0],
            "persistence_ratio/a": [0.5, 0.7, 0.9],
            "persistence_ratio/b": [0.1, 0.3, 0.5],
        }
    )
    table = per_series(trials)
    assert list(table.columns) == [
        "series",
        "model",
        "gap",
        "test_mse",
        "vs_persistence",
        "vs_arima",
    ]
    assert table["vs_arima"].tolist() == [1.0, 1.0, 2.0, 2.0]
    assert table[["series", "model"]].values.tolist() == [
        ["a", "lstm"],
        ["a", "rnn"],
        ["b", "lstm"],
        ["b", "rnn"],
    ]
    assert table["test_mse"].tolist() == [2.0, 5.0, 3.0, 6.0]
    assert table["vs_persistence"].tolist() == pytest.approx([0.6, 0.9, 0.2, 0.5])
    assert per_series(trials.drop(columns=[c for c in trials if "/" in c])).empty
