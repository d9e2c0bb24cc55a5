import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error

from forecast.data import series_splits
from forecast.evaluation import max_solved_gap, score, score_forecasts, summarize


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


def score_rows(table: dict[tuple[str, str, str], dict[str, float]]) -> pd.DataFrame:
    """A scores table as forecast.evaluation.score_forecasts gives it (one fold), from
    ``{(trial, forecaster, series): {metric: value}}``."""
    return pd.DataFrame(
        [
            {"trial": t, "forecaster": f, "series": s, "fold": 0, "metric": m, "value": v}
            for (t, f, s), metrics in table.items()
            for m, v in metrics.items()
        ]
    )


def test_summary_and_max_solved_gap():
    trials = pd.DataFrame(
        {
            "point": [""] * 8,
            "model": ["rnn", "rnn", "rnn", "rnn", "lstm", "lstm", "lstm", "lstm"],
            "gap": [10, 10, 50, 50, 10, 10, 50, 50],
            "seed": [0, 1] * 4,
            "weights": [5] * 4 + [9] * 4,
            "test_mse": [0.1, 0.3, 1.0, 1.0, 0.1, 0.1, 0.2, 0.4],
            "mse_ratio": [0.05, 0.07, 1.0, 0.9, 0.01, 0.01, 0.05, 0.2],
            "solved": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],
            "train_seconds": [1.0, 3.0] * 4,
            "effective_memory": [1.0, 2.0, 3.0, np.nan, 10.0, 12.0, 40.0, 48.0],
        }
    )
    summary = summarize(trials)
    assert list(summary["model"]) == ["rnn", "rnn", "lstm", "lstm"]
    assert list(summary["solved"]) == ["2/2", "0/2", "2/2", "1/2"]
    assert summary["test_mse"].iloc[0] == pytest.approx(0.2)
    assert summary["train_seconds"].iloc[0] == pytest.approx(2.0)
    # A mean over the seeds that measured one (a failed trial has none).
    assert list(summary["effective_memory"]) == pytest.approx([1.5, 3.0, 11.0, 44.0])
    assert max_solved_gap(trials) == {"rnn": 10, "lstm": 10}
    # A sweep logged before effective memory was measured is summarised without it.
    assert "effective_memory" not in summarize(trials.drop(columns="effective_memory"))


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


def utilsforecast_metrics(forecast, truth, past, season, low=None, high=None, level=80):
    """utilsforecast's losses of one series' forecasts from several origins (its
    cross-validation layout: one cutoff per origin), averaged over cutoffs as ours pool them."""
    from utilsforecast import losses

    windows, horizon = truth.shape
    frame = pd.DataFrame(
        {
            "unique_id": "s",
            "cutoff": np.repeat(np.arange(windows) + len(past) - 1, horizon),
            "ds": (np.arange(windows)[:, None] + np.arange(horizon)[None, :] + len(past)).ravel(),
            "y": truth.ravel(),
            "model": forecast.ravel(),
        }
    )
    train = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(past)), "y": past})
    found = {
        name: getattr(losses, name)(frame, ["model"])["model"].mean()
        for name in ("mae", "rmse", "mse", "mape", "smape")
    }
    for name in ("mase", "rmsse"):
        scaled = getattr(losses, name)(frame, ["model"], seasonality=season, train_df=train)
        found[name] = scaled["model"].mean()
    if low is not None:
        frame[f"model-lo-{level}"], frame[f"model-hi-{level}"] = low.ravel(), high.ravel()
        found["coverage"] = losses.coverage(frame, ["model"], level=level)["model"].mean()
    return found


@pytest.mark.parametrize("season", [1, 4])
def test_forecasting_metrics_match_utilsforecast(season):
    """One horizon per cutoff, as utilsforecast's cross-validation frames hold them: with equal
    horizons, the mean over cutoffs of its per-cutoff metrics is ours over every window, but
    for RMSE and RMSSE (roots of means) which are compared per window."""
    from forecast.evaluation import (
        insample_scale,
        interval_errors,
        interval_metrics,
        point_metrics,
        pointwise_errors,
    )

    rng = np.random.default_rng(season)
    past = 50 + np.cumsum(rng.normal(size=60))
    truth = 50 + rng.normal(size=(1, 6)) * 3
    forecast = truth + rng.normal(size=truth.shape)
    scale = insample_scale(past[:, None], season)
    errors = pointwise_errors(forecast[..., None], truth[..., None], scale)
    ours = point_metrics(errors)
    low, high = forecast - 1.0, forecast + 1.0
    ours.update(
        interval_metrics(
            interval_errors(low[..., None], high[..., None], truth[..., None], 0.8, scale)
        )
    )
    theirs = utilsforecast_metrics(forecast, truth, past, season, low, high)
    assert ours["mae"] == pytest.approx(theirs["mae"])
    assert ours["mse"] == pytest.approx(theirs["mse"])
    assert ours["rmse"] == pytest.approx(theirs["rmse"])
    assert ours["mape"] == pytest.approx(100 * theirs["mape"])  # utilsforecast's is a fraction
    assert ours["smape"] == pytest.approx(200 * theirs["smape"])  # its sMAPE is 0-1, ours 0-200
    assert ours["mase"] == pytest.approx(theirs["mase"])
    assert ours["rmsse"] == pytest.approx(theirs["rmsse"])
    assert ours["coverage"] == pytest.approx(theirs["coverage"])


def test_interval_metrics_by_hand_msis_and_wql():
    """MSIS (M4): mean of width + 2/alpha x the miss, over the in-sample naive MAE; WQL: the
    pinball losses summed over quantiles and windows over sum |y|, x 2 / quantiles."""
    from forecast.evaluation import interval_errors, interval_metrics

    truth = np.array([[[10.0]], [[20.0]]])  # two windows, one step, one target
    low, high = np.array([[[9.0]], [[21.0]]]), np.array([[[12.0]], [[23.0]]])
    scale = (np.array([2.0]), np.array([4.0]))
    quantiles = [0.1, 0.5, 0.9]
    forecasts = np.stack([low, (low + high) / 2, high], axis=-1)
    errors = interval_errors(low, high, truth, 0.8, scale, forecasts, quantiles)
    metrics = interval_metrics(errors, len(quantiles))
    assert metrics["coverage"] == 0.5  # 10 in [9, 12]; 20 below [21, 23]
    # Window 1: width 3; window 2: width 2 + 2 / 0.2 x 1 missed = 12; over scale 2.
    assert metrics["msis"] == pytest.approx(np.mean([3 / 2, 12 / 2]))
    pinball = [
        0.1 * 1 + 0.5 * 0.5 + 0.1 * 2,  # y=10 vs 9, 10.5, 12: q(y-f) or (1-q)(f-y)
        0.9 * 1 + 0.5 * 2 + 0.1 * 3,  # y=20 vs 21, 22, 23
    ]
    assert metrics["wql"] == pytest.approx(2 * sum(pinball) / 30 / 3)


def test_no_metric_is_nan_on_one_window_and_zeros_leave_mape_only_their_own_steps():
    from forecast.evaluation import insample_scale, point_metrics, pointwise_errors

    truth = np.array([[[0.0], [2.0]]])  # one window of two steps, the first truth zero
    forecast = np.array([[[1.0], [1.0]]])
    errors = pointwise_errors(forecast, truth, insample_scale(np.array([[1.0], [3.0]]), None))
    metrics = point_metrics(errors)
    assert not any(np.isnan(value) for value in metrics.values())
    assert metrics["mape"] == pytest.approx(50.0)  # |2 - 1| / 2; the zero truth left out
    assert metrics["mase"] == pytest.approx(0.5)  # MAE 1 over the in-sample naive MAE 2


def test_split_conformal_covers_at_least_the_level_on_exchangeable_errors():
    from forecast.evaluation import split_conformal

    rng = np.random.default_rng(0)
    val_truth, test_truth = rng.normal(size=(200, 3, 1)), rng.normal(size=(5000, 3, 1))
    below, above = split_conformal(np.zeros_like(val_truth), val_truth, 0.8)
    assert below.shape == (3, 1)
    inside = (-below <= test_truth) & (test_truth <= above)
    assert 0.77 < inside.mean() < 0.85  # ~N(0, 1): the 0.9 quantile of |e| is 1.645
    # A quantile model's interval: widened by how far the truth fell outside it.
    band = np.stack([np.full_like(val_truth, -0.1), np.full_like(val_truth, 0.1)], axis=-1)
    below_band, _ = split_conformal(band, val_truth, 0.8)
    np.testing.assert_allclose(below_band, below - 0.1)


def test_comparison_table_gives_each_sweep_point_its_own_baseline_rows():
    """A sweep over data keys: each point's baselines are scored on its own windows, and every
    row, model or baseline, has the same metrics."""
    trials = pd.DataFrame(
        {
            "trial": ["t8", "t12"],
            "model": ["lstm [w=8]", "lstm [w=12]"],
            "network": ["lstm", "lstm"],
            "point": ["w=8", "w=12"],
            "gap": [0, 0],
            "seed": [0, 0],
            "weights": [9, 9],
            "train_seconds": [1.0, 1.0],
            "spec.ets": ["ETS(A,N,N)", "ETS(M,A,M)"],
        }
    )
    scores = score_rows(
        {
            ("t8", "lstm", ""): {"mse": 1.0, "mae": 0.8, "mase": 0.5},
            ("t8", "mean", ""): {"mse": 10.0, "mae": 3.0, "mase": 2.0},
            ("t8", "naive", ""): {"mse": 2.0, "mae": 1.0, "mase": 1.0},
            ("t8", "ets", ""): {"mse": 1.5, "mae": 0.9, "mase": 0.7},
            ("t12", "lstm", ""): {"mse": 2.0, "mae": 1.1, "mase": 0.6},
            ("t12", "mean", ""): {"mse": 20.0, "mae": 4.0, "mase": 3.0},
            ("t12", "naive", ""): {"mse": 4.0, "mae": 1.5, "mase": 1.0},
            ("t12", "ets", ""): {"mse": 2.5, "mae": 1.2, "mase": 0.8},
        }
    )
    table = summarize(trials, scores)
    assert list(table["model"]) == [
        "lstm [w=8]",
        "lstm [w=12]",
        "mean [w=8]",
        "naive [w=8]",
        "ets [w=8]",
        "mean [w=12]",
        "naive [w=12]",
        "ets [w=12]",
    ]
    assert list(table.columns) == [
        "model",
        "gap",
        "seeds",
        "mae",
        "mase",
        "vs_naive",
        "weights",
        "train_seconds",
        "specification",
    ]
    rows = table.set_index("model")
    assert rows.loc["mean [w=12]", "mae"] == 4.0
    assert rows.loc["mean [w=8]", "vs_naive"] == pytest.approx(5.0)
    assert rows.loc["lstm [w=12]", "vs_naive"] == pytest.approx(0.5)
    assert rows.loc["ets [w=12]", "specification"] == "ETS(M,A,M)"
    assert rows.loc["lstm [w=8]", "specification"] == ""


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


@pytest.mark.parametrize(
    "curve, expected",
    [
        ([5.0, 0.0, 0.0, 0.0], 0),  # all at the last step
        ([0.0, 0.0, 0.0, 2.0], 3),  # all at the first
        ([0.1] * 10, 8),  # flat: ceil(0.9 T) - 1, the 90% point reached exactly
        ([1.0] * 20, 17),
        ([1.0] * 21, 18),  # ceil(18.9) - 1
        ([0.0, 1.0, 0.0, 1.0], 3),
    ],
)
def test_effective_memory_is_the_lag_by_which_90_percent_has_accumulated(curve, expected):
    from forecast.evaluation import effective_memory

    assert effective_memory(np.array(curve)) == expected


@pytest.mark.parametrize("ratio, steps", [(0.5, 50), (0.9, 100), (0.99, 30)])
@pytest.mark.parametrize("share", [0.9, 0.5])
def test_effective_memory_of_a_geometric_decay_matches_its_closed_form(ratio, steps, share):
    from forecast.evaluation import effective_memory

    curve = ratio ** np.arange(steps)
    # Summed to lag k: (1 - r^(k+1)) / (1 - r) of (1 - r^T) / (1 - r) in all.
    expected = np.ceil(np.log(1 - share * (1 - ratio**steps)) / np.log(ratio)) - 1
    assert effective_memory(curve, share) == expected
    assert effective_memory(3.0 * curve, share) == expected  # the gradients' scale is no matter


def test_effective_memory_is_nan_without_attribution_and_refuses_what_is_no_flow():
    from forecast.evaluation import effective_memory

    for curve in (np.zeros(5), np.array([]), np.array([1.0, np.nan]), np.array([np.inf, 1.0])):
        assert np.isnan(effective_memory(curve))
    for curve, share, message in (
        (np.ones(3), 0.0, "share"),
        (np.ones(3), 1.5, "share"),
        (np.ones((2, 3)), 0.9, "one-dimensional"),
        (np.array([1.0, -1.0]), 0.9, "negative"),
    ):
        with pytest.raises(ValueError, match=message):
            effective_memory(curve, share)
    assert effective_memory(np.array([1.0, 0.0, 1e-9]), share=1.0) == 2


def test_effective_memory_tells_a_model_that_reads_the_last_step_from_one_that_reads_the_first():
    import keras

    from forecast.evaluation import effective_memory, make_gradient_flow
    from forecast.layers import SimpleRNN

    steps = 10
    fixed = {"kernel_initializer": "ones", "use_bias": False}
    readers = {
        # No recurrence: the output is the last step's.
        "last": [SimpleRNN(1, recurrent_initializer="zeros", **fixed)],
        # A running sum (h_t = h_(t-1) + x_t): every step counts the same.
        "all": [SimpleRNN(1, activation="linear", recurrent_initializer="identity", **fixed)],
        "first": [keras.layers.Cropping1D((0, steps - 1)), keras.layers.Flatten()],
    }
    x = np.random.default_rng(0).normal(size=(16, steps, 1)).astype("float32")
    memories = {}
    for name, layers in readers.items():
        model = keras.Sequential([keras.Input((steps, 1)), *layers, keras.layers.Dense(1, **fixed)])
        flow = make_gradient_flow(model)(x, np.zeros((16, 1), "float32"))
        memories[name] = effective_memory(flow)
    assert memories == {"last": 0, "all": np.ceil(0.9 * steps) - 1, "first": steps - 1}


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
            "weights": [9, 9, 5, 5],
            "test_cross_entropy": [0.01, 0.03, 0.3, 0.31],
            "test_accuracy": [1.0, 0.99, 0.86, 0.86],
            "cross_entropy_ratio": [0.05, 0.1, 1.0, 1.02],
            "solved": [1.0, 1.0, 0.0, 0.0],
            "train_seconds": [1.0, 1.0, 1.0, 1.0],
        }
    )
    summary = summarize(trials, ratio="cross_entropy_ratio")
    assert "test_mse" not in summary and "mse_ratio" not in summary
    assert list(summary["cross_entropy_ratio"]) == pytest.approx([0.075, 1.01])
    assert list(summary["solved"]) == ["2/2", "0/2"]
    assert "ratio_ci95" in summary
    assert max_solved_gap(trials, ratio="cross_entropy_ratio") == {"lstm": 50, "rnn": -1}


def test_paired_by_fold_sets_each_model_against_the_others_on_the_same_folds():
    from forecast.evaluation import fold_means, paired_by_fold

    rows = []
    lstm = {0: [1.0, 2.0, 4.0], 1: [1.0, 2.0, 2.0]}  # per seed, the MSE of folds 0, 1, 2
    rnn = {0: [2.0, 2.0, 2.0], 1: [2.0, 2.0, 2.0]}
    persistence = [4.0, 4.0, 4.0]
    for model, errors in (("lstm", lstm), ("rnn", rnn)):
        for seed, per_fold in errors.items():
            trial = {"trial": f"{model}{seed}", "model": model, "network": model}
            trial.update({"point": "", "gap": 0, "seed": seed})
            for fold, mse in enumerate(per_fold):
                own = {model: mse, "mean": 8.0, "naive": persistence[fold]}
                for forecaster, value in own.items():
                    rows.append({**trial, "fold": fold, "forecaster": forecaster, "mse": value})
    paired = paired_by_fold(pd.DataFrame(rows))
    assert list(zip(paired["model"], paired["versus"], strict=True)) == [
        ("lstm", "rnn"),
        ("lstm", "mean"),
        ("lstm", "naive"),
        ("rnn", "mean"),
        ("rnn", "naive"),
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

    from forecast.config import DataConfig, ExperimentConfig
    from forecast.data import load_panel, panel_splits
    from forecast.evaluation import insample_scale
    from forecast.trial import score_series

    steps = np.arange(80.0)
    table = pd.concat(
        [
            pd.DataFrame({"id": "low", "y": 10 + np.sin(steps / 3)}),
            pd.DataFrame({"id": "high", "y": 500 + 40 * np.cos(steps / 5)}),
        ]
    )
    panel = load_panel(table, "id")
    window = {"input_width": 6, "horizon": 2}
    (data,) = panel_splits(panel, "id", **window)
    config = ExperimentConfig(data=DataConfig(source="x", season=4, **window))
    outputs = np.random.default_rng(0).normal(size=data.splits.y_test.shape)
    tested = score_series(outputs, None, data.splits, data, config, "lstm")
    metrics = tested.metrics
    # The baselines' scores, from the same forecasts table (as forecast.results.Results has it).
    by_series = score_forecasts(tested.forecasts, tested.scales, ["forecaster", "series"])
    baseline_scores = by_series.set_index(["forecaster", "series", "metric"])["value"]
    assert set(by_series["forecaster"]) == {"lstm", "naive", "seasonal_naive", "mean", "drift"}
    predictions = data.to_original_units(outputs)
    truth = data.to_original_units(np.asarray(data.splits.y_test))
    # Pooled: every window of both series, in original units.
    assert metrics["test_mse"] == pytest.approx(
        mean_squared_error(truth.reshape(-1), predictions.reshape(-1))
    )
    scaled = []
    for name, frame in panel.items():
        alone = series_splits(frame, **window)
        own_outputs = outputs[data.windows("test")[name]]
        own_truth = alone.to_original_units(np.asarray(alone.splits.y_test))
        own_predictions = alone.to_original_units(own_outputs)
        assert metrics[f"test_mse/{name}"] == pytest.approx(
            mean_squared_error(own_truth.reshape(-1), own_predictions.reshape(-1))
        )
        own_mae = mean_absolute_error(own_truth.reshape(-1), own_predictions.reshape(-1))
        assert metrics[f"test_mae/{name}"] == pytest.approx(own_mae)
        # Scaled by the series' own in-sample seasonal naive error, over its past (train + val).
        past = alone.values[: alone.fit_end]
        own_scale = np.mean(np.abs(past[4:] - past[:-4]))
        assert metrics[f"test_mase/{name}"] == pytest.approx(own_mae / own_scale)
        persistence = np.repeat(alone.values[alone.origins["test"]][:, None], 2, axis=1)
        assert baseline_scores["naive", name, "mse"] == pytest.approx(
            np.mean((persistence - own_truth) ** 2)
        )
        scaled.append(np.abs(own_predictions - own_truth) / insample_scale(past, 4)[0])
    # Pooled MASE: each window's error scaled by its own series' in-sample naive error.
    assert metrics["test_mase"] == pytest.approx(np.mean(np.concatenate(scaled)))


def test_per_series_averages_each_series_metrics_over_seeds():
    from forecast.evaluation import per_series

    trials = pd.DataFrame(
        {
            "trial": ["lstm0", "lstm1", "rnn0"],
            "model": ["lstm", "lstm", "rnn"],
            "network": ["lstm", "lstm", "rnn"],
            "point": ["", "", ""],
            "gap": [0, 0, 0],
            "seed": [0, 1, 0],
        }
    )
    pooled = {"lstm0": 1.0, "lstm1": 2.0, "rnn0": 3.0}
    own = {  # (mse, mae) on series a and b
        "lstm0": ((1.0, 1.0), (2.0, 2.0)),
        "lstm1": ((3.0, 1.0), (4.0, 2.0)),
        "rnn0": ((5.0, 2.0), (6.0, 2.0)),
    }
    table = {}
    for trial, network in zip(trials["trial"], trials["network"], strict=True):
        table[(trial, network, "")] = {"mse": pooled[trial], "mase": pooled[trial]}
        for series, (mse, mae) in zip("ab", own[trial], strict=True):
            table[(trial, network, series)] = {"mse": mse, "mae": mae}
        table[(trial, "naive", "a")] = {"mse": 2.0, "mae": 1.5}
        table[(trial, "naive", "b")] = {"mse": 4.0, "mae": 1.0}
    scores = score_rows(table)
    table = per_series(trials, scores)
    assert list(table.columns) == ["series", "model", "gap", "mae", "vs_naive"]
    assert table[["series", "model"]].values.tolist() == [
        ["a", "lstm"],
        ["a", "rnn"],
        ["a", "naive"],
        ["b", "lstm"],
        ["b", "rnn"],
        ["b", "naive"],
    ]
    assert table["mae"].tolist() == [1.0, 2.0, 1.5, 2.0, 2.0, 1.0]
    # Per trial: its MSE over naive's on the series, then the mean over seeds.
    assert table["vs_naive"].tolist() == pytest.approx([1.0, 2.5, 1.0, 0.75, 1.5, 1.0])
    assert per_series(trials, scores[scores["series"] == ""]).empty


def test_every_baseline_gets_an_interval_calibrated_on_the_validation_windows():
    """On y = 2t, persistence errs by exactly 2h at step h: its conformal half-widths on the
    validation windows are 2 and 4, so the test interval reaches the truth exactly (coverage 1)
    and its MSIS is the mean width over the in-sample naive MAE, (4 + 8) / 2 / 2 = 3."""
    from forecast.config import DataConfig, ExperimentConfig
    from forecast.trial import conformal_widths, score_series

    frame = pd.DataFrame({"y": 2.0 * np.arange(120)})
    window = {"input_width": 6, "horizon": 2}
    data = series_splits(frame, **window)
    config = ExperimentConfig(data=DataConfig(source="x", **window))
    outputs = np.zeros_like(data.splits.y_test)
    val_outputs = np.zeros_like(data.splits.y_val)
    interval = conformal_widths(val_outputs, data.splits, data, config)
    tested = score_series(outputs, interval, data.splits, data, config, "lstm")
    metrics, drawn = tested.metrics, tested.drawn
    scored = score_forecasts(tested.forecasts, tested.scales, ["forecaster"])
    scored = scored.set_index(["forecaster", "metric"])["value"]
    assert scored["naive", "coverage"] == 1.0
    assert scored["naive", "msis"] == pytest.approx(3.0)
    assert metrics["nominal_coverage"] == 0.8  # evaluation.interval, for every row alike
    assert {"test_coverage", "test_msis"} <= set(metrics)
    assert {("drift", "coverage"), ("mean", "msis")} <= set(scored.index)
    assert drawn["band"].shape == (*data.splits.y_test.shape, 2)
