"""Evaluation: test errors against naive baselines, gradient flow, and the tables that compare
trials. Importing it loads no TensorFlow (only :func:`make_gradient_flow` needs it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # TensorFlow only where a model is evaluated: `forecast compare` needs none
    import keras


def regression_metrics(predictions: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE, sMAPE (in %, 0-200) and R² over all outputs and steps.

    R² is scikit-learn's ``r2_score`` over the flattened outputs (uniform average).
    """
    from sklearn.metrics import r2_score

    errors = predictions - truth
    mse = float(np.mean(errors**2))
    denominator = np.abs(truth) + np.abs(predictions)
    # sMAPE's 0/0 (both exactly zero) counts as a perfect forecast.
    ratios = np.divide(
        2 * np.abs(errors), denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    n = len(truth)
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(errors))),
        "smape": float(100 * np.mean(ratios)),
        "r2": float(r2_score(truth.reshape(n, -1), predictions.reshape(n, -1))),
    }


def score(
    predictions: np.ndarray,
    truth: np.ndarray,
    train_targets: np.ndarray,
    solved_ratio: float,
    naive_forecasts: dict[str, np.ndarray] | None = None,
    naive_scale: np.ndarray | None = None,
) -> dict[str, float]:
    """Test errors of a model's forecasts and of naive forecasts, all in original units.

    Returns ``test_mse``, ``test_rmse``, ``test_mae``, ``test_smape``, ``test_r2``; for
    multi-step targets ``test_mse.step1``, ``test_mse.step2``, ... per horizon step.

    The trivial baseline predicts the mean of ``train_targets`` (or ``naive_forecasts
    ["mean"]`` when given); ``mse_ratio`` is model MSE / that baseline's MSE (1 means the
    model learned nothing the mean did not know), and the test counts as ``solved`` when the
    ratio is at most ``solved_ratio``. Every other naive forecast given (``persistence``,
    ``seasonal``) adds its errors, ``<name>_mse`` and ``<name>_mae``, and the model's MSE over
    its MSE, ``<name>_ratio``. With ``persistence``, ``test_relmae`` is the model's MAE over
    persistence's on the same windows (the relative MAE of Hyndman & Koehler 2006).

    With ``naive_scale`` (per target: the in-sample MAE of the naive forecast on the train part),
    ``test_mase`` is the mean absolute scaled error (Hyndman & Koehler 2006), averaged over
    targets: below 1, the model's test errors are smaller than the naive forecast's errors
    within the training data.
    """
    naive = dict(naive_forecasts or {})
    naive.setdefault("mean", train_targets.mean(axis=0, keepdims=True))
    metrics = {
        f"test_{name}": value for name, value in regression_metrics(predictions, truth).items()
    }
    test_mse = metrics["test_mse"]
    if truth.ndim == 3 and truth.shape[1] > 1:
        step_mse = np.mean((predictions - truth) ** 2, axis=(0, 2))
        metrics.update({f"test_mse.step{h + 1}": float(v) for h, v in enumerate(step_mse)})
    mean_forecast = naive.pop("mean")
    baseline_mse = float(np.mean((mean_forecast - truth) ** 2))
    metrics.update(
        baseline_mse=baseline_mse,
        baseline_mae=float(np.mean(np.abs(mean_forecast - truth))),
        mse_ratio=test_mse / baseline_mse,
        solved=float(test_mse / baseline_mse <= solved_ratio),
    )
    for name, forecast in naive.items():
        naive_mse = float(np.mean((forecast - truth) ** 2))
        metrics[f"{name}_mse"] = naive_mse
        metrics[f"{name}_mae"] = float(np.mean(np.abs(forecast - truth)))
        metrics[f"{name}_ratio"] = test_mse / naive_mse
    if "persistence" in naive:
        metrics["test_relmae"] = metrics["test_mae"] / metrics["persistence_mae"]
    if naive_scale is not None:
        # (n, ..., targets) errors, each target scaled by its own in-sample naive MAE.
        metrics["test_mase"] = float(np.mean(np.abs(predictions - truth) / naive_scale))
    return metrics


def class_frequencies(train_labels: np.ndarray, classes: int) -> np.ndarray:
    """The best guess that ignores the inputs: for each target position, how often each class
    occurs there in ``train_labels`` (n, ...), shaped (..., classes). Add-one (Laplace)
    smoothed, so a class never seen at a position in training is unlikely, not impossible."""
    counts = np.stack([(train_labels == c).sum(axis=0) for c in range(classes)], axis=-1)
    return (counts + 1.0) / (len(train_labels) + classes)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability, in nats, of ``labels`` (n, ...) under
    ``probabilities`` (n or 1, ..., classes): over every sample and position."""
    probabilities = np.broadcast_to(probabilities, (*labels.shape, probabilities.shape[-1]))
    chosen = np.take_along_axis(probabilities, labels[..., None], axis=-1)
    return float(-np.mean(np.log(chosen)))


def trivial_loss(
    train_targets: np.ndarray,
    targets: np.ndarray,
    classes: int | None,
    quantiles: list[float] | None = None,
) -> float:
    """The loss on ``targets`` of the trivial baseline fitted to ``train_targets``: the MSE of
    their mean; for labels of ``classes`` classes the cross-entropy of their per-position
    frequencies (:func:`class_frequencies`); with ``quantiles``, the pinball loss of their
    per-position quantiles."""
    if classes is not None:
        return cross_entropy(class_frequencies(train_targets, classes), targets)
    if quantiles is not None:
        constant = np.moveaxis(np.quantile(train_targets, quantiles, axis=0), 0, -1)
        return pinball_loss(
            np.broadcast_to(constant, (*targets.shape, len(quantiles))), targets, quantiles
        )
    return float(np.mean((targets - train_targets.mean(axis=0)) ** 2))


def pinball_loss(forecasts: np.ndarray, truth: np.ndarray, quantiles: list[float]) -> float:
    """The pinball loss of quantile ``forecasts`` (``truth``'s shape plus one axis of
    ``quantiles``), averaged over quantiles and every target: for quantile q and error
    e = truth - forecast, ``max(q e, (q - 1) e)``."""
    levels = np.asarray(quantiles)
    errors = truth[..., None] - forecasts
    return float(np.mean(np.maximum(levels * errors, (levels - 1) * errors)))


def interval_score(
    forecasts: np.ndarray, truth: np.ndarray, quantiles: list[float]
) -> dict[str, float]:
    """A quantile forecast's own metrics: ``test_pinball`` (:func:`pinball_loss`), and the
    empirical ``test_coverage`` of its outer interval (lowest to highest quantile) beside the
    ``nominal_coverage`` it should have."""
    inside = (forecasts[..., 0] <= truth) & (truth <= forecasts[..., -1])
    return {
        "test_pinball": pinball_loss(forecasts, truth, quantiles),
        "test_coverage": float(np.mean(inside)),
        "nominal_coverage": quantiles[-1] - quantiles[0],
    }


def classification_score(
    logits: np.ndarray,
    labels: np.ndarray,
    train_labels: np.ndarray,
    solved_ratio: float,
) -> dict[str, float]:
    """Test errors of a categorical task's model, from its ``logits`` (n, ..., classes).

    Returns ``test_cross_entropy`` (mean over samples and positions, in nats) and
    ``test_accuracy`` (of the most likely class), the same for the trivial baseline
    (``baseline_cross_entropy``, ``baseline_accuracy``: :func:`class_frequencies` of
    ``train_labels``), and ``cross_entropy_ratio``, the model's over the baseline's: ``solved``
    when at most ``solved_ratio``.
    """
    from scipy.special import log_softmax

    classes = logits.shape[-1]
    log_probabilities = log_softmax(logits.astype(np.float64), axis=-1)
    model_loss = float(-np.mean(np.take_along_axis(log_probabilities, labels[..., None], -1)))
    frequencies = class_frequencies(train_labels, classes)
    baseline_loss = cross_entropy(frequencies, labels)
    return {
        "test_cross_entropy": model_loss,
        "test_accuracy": float(np.mean(logits.argmax(axis=-1) == labels)),
        "baseline_cross_entropy": baseline_loss,
        "baseline_accuracy": float(np.mean(frequencies.argmax(axis=-1) == labels)),
        "cross_entropy_ratio": model_loss / baseline_loss,
        "solved": float(model_loss / baseline_loss <= solved_ratio),
    }


def ratio_column(trials: pd.DataFrame) -> str:
    """The column holding each trial's loss over its trivial baseline's: ``mse_ratio``, or
    ``cross_entropy_ratio`` for a categorical task."""
    return "cross_entropy_ratio" if "cross_entropy_ratio" in trials else "mse_ratio"


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, gap), means over seeds.

    For a synthetic task: ``mse_ratio`` (to the trivial baseline), its 95% interval half-width
    ``ratio_ci95`` over several seeds, and ``solved`` (seeds at or under the threshold); for a
    categorical task ``test_cross_entropy``, ``test_accuracy`` and ``cross_entropy_ratio``
    instead of ``test_mse`` and ``mse_ratio``. For a series, where the mean is a strawman:
    ``test_mae`` and ``vs_persistence``, the model's MSE over persistence's (below 1 the model
    beats "the next steps look like the last one"), and for a quantile model the ``coverage``
    of its outer interval.
    """
    series = "persistence_ratio" in trials
    ratio = ratio_column(trials)
    columns = {"seeds": ("seed", "count")}
    if ratio == "cross_entropy_ratio":
        columns["test_cross_entropy"] = ("test_cross_entropy", "mean")
        columns["test_accuracy"] = ("test_accuracy", "mean")
    else:
        columns["test_mse"] = ("test_mse", "mean")
    if series:
        columns["test_mae"] = ("test_mae", "mean")
        columns["vs_persistence"] = ("persistence_ratio", "mean")
        if "test_coverage" in trials:  # a quantile model's outer interval
            columns["coverage"] = ("test_coverage", "mean")
    else:
        columns[ratio] = (ratio, "mean")
        columns["solved"] = ("solved", "sum")
    columns.update(params=("params", "first"), train_seconds=("train_seconds", "mean"))
    summary = trials.groupby(["model", "gap"], sort=False).agg(**columns).reset_index()
    if series:
        return summary
    if summary["seeds"].max() > 1:
        intervals = seed_intervals(trials)
        position = summary.columns.get_loc(ratio) + 1
        summary.insert(position, "ratio_ci95", (intervals["high"] - intervals["mean_ratio"]).values)
    summary["solved"] = [
        f"{int(n)}/{total}" for n, total in zip(summary["solved"], summary["seeds"], strict=True)
    ]
    return summary


def comparison_table(trials: pd.DataFrame) -> pd.DataFrame:
    """The table a sweep is read by, for the runner's summary and ``forecast compare`` alike.

    One row per (model, gap) from :func:`summarize`; for a series, the naive forecasts of every
    (sweep point, gap) follow, each scored on that point's own test windows.
    """
    summary = summarize(trials)
    if "persistence_mse" not in trials:
        return summary
    finished = trials.dropna(subset=["persistence_mse"])
    naive = [
        baseline_rows(group.iloc[0].to_dict(), gap, point)
        for (point, gap), group in finished.groupby(["point", "gap"], sort=False)
    ]
    return pd.concat([summary, *naive], ignore_index=True)


# The rows of the naive forecasts and statistical baselines (forecast.statistical) in
# comparisons, and the metric holding each one's test MSE.
NAIVE_ERRORS = {
    "naive_mean": "baseline_mse",
    "naive_persistence": "persistence_mse",
    "naive_seasonal": "seasonal_mse",
    "ets": "ets_mse",
    "theta": "theta_mse",
    "arima": "arima_mse",
}


def baseline_rows(metrics: dict[str, float], gap: int, point: str = "") -> pd.DataFrame:
    """Summary rows for the naive forecasts and statistical baselines of a series, to read
    beside the models'."""
    errors = {}
    for name, column in NAIVE_ERRORS.items():
        if column in metrics and pd.notna(metrics[column]):
            mae = metrics[column.removesuffix("_mse") + "_mae"]
            errors[name] = (metrics[column], mae)
    rows = [
        {
            "model": f"{name} [{point}]" if point else name,
            "gap": gap,
            "seeds": 0,
            "test_mse": mse,
            "test_mae": mae,
            "vs_persistence": mse / metrics["persistence_mse"],
            "params": 0,
            "train_seconds": 0.0,
        }
        for name, (mse, mae) in errors.items()
    ]
    return pd.DataFrame(rows)


def t_half_width(values: np.ndarray, confidence: float = 0.95) -> float:
    """Half the width of the Student-t confidence interval of the mean of ``values`` (0 for
    fewer than two)."""
    # The Student t quantile; scipy.special loads in a third of scipy.stats' time.
    from scipy.special import stdtrit

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return 0.0
    t = stdtrit(len(values) - 1, 0.5 + confidence / 2)
    return float(t * values.std(ddof=1) / np.sqrt(len(values)))


def fold_means(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """A backtest's headline metrics: each metric's mean over the folds, and its 95% Student-t
    interval half-width over them as ``<metric>_ci95``; a panel's per-series metrics
    (``<metric>/<series>``) get means only, not an interval each."""
    keys = list(fold_metrics[0])
    values = {key: np.array([metrics[key] for metrics in fold_metrics]) for key in keys}
    means = {key: float(values[key].mean()) for key in keys}
    pooled = [key for key in keys if "/" not in key]
    return {**means, **{f"{key}_ci95": t_half_width(values[key]) for key in pooled}}


# The metrics a panel's trial also reports for each series, as `<metric>/<series id>`: its
# errors, and its MSE over each naive forecast's and statistical baseline's on the series.
PER_SERIES_METRICS = (
    "test_mse",
    "test_mae",
    "test_mase",
    "persistence_ratio",
    "seasonal_ratio",
    "ets_ratio",
    "theta_ratio",
    "arima_ratio",
    "test_coverage",
)


def per_series(trials: pd.DataFrame) -> pd.DataFrame:
    """A panel's models series by series: one row per (series, model, gap), each metric of
    ``PER_SERIES_METRICS`` its trials logged for the series, averaged over seeds (``<name>_ratio``
    as ``vs_<name>``, ``test_coverage`` as ``coverage``). Empty for trials of one series."""
    keys = [key for key in trials.columns if "/" in key and key.split("/")[0] in PER_SERIES_METRICS]
    if not keys:
        return pd.DataFrame()
    long = trials.melt(id_vars=["model", "gap"], value_vars=keys, var_name="key").dropna()
    long[["metric", "series"]] = long["key"].str.split("/", n=1, expand=True)
    table = long.pivot_table(
        index=["series", "model", "gap"], columns="metric", values="value", sort=False
    )
    order = [metric for metric in PER_SERIES_METRICS if metric in table.columns]

    def label(metric: str) -> str:
        if metric.endswith("_ratio"):
            return "vs_" + metric.removesuffix("_ratio")
        return "coverage" if metric == "test_coverage" else metric

    return table[order].rename(columns=label).reset_index().rename_axis(columns=None)


def paired_by_fold(folds: pd.DataFrame) -> pd.DataFrame:
    """A backtest's models compared fold by fold, with each other and with the naive
    forecasts scored on the same windows.

    ``folds`` holds one row per (trial, fold): ``model``, ``point``, ``gap``, ``seed``,
    ``fold``, ``test_mse`` and the naive forecasts' MSEs (``baseline_mse``,
    ``persistence_mse``, ``seasonal_mse``). Per sweep point and gap, each model's MSE is
    averaged over seeds fold by fold, then set against every later model and every naive
    forecast on the same fold: ``mse_ratio`` is the mean over folds of model MSE / other MSE,
    ``ratio_ci95`` its Student-t interval half-width (over folds, so it measures how
    consistently one beats the other), ``better`` the folds where the model's MSE is lower.
    """
    rows = []
    for (_, gap), group in folds.groupby(["point", "gap"], sort=False):
        errors = group.groupby(["model", "fold"], sort=False)["test_mse"].mean().unstack("fold")
        per_fold = {str(model): errors.loc[model].to_numpy() for model in errors.index}
        models = list(per_fold)
        first_trial = group[group["model"] == models[0]].groupby("fold").first()
        for name, column in NAIVE_ERRORS.items():
            if column in first_trial and first_trial[column].notna().all():
                per_fold[name] = first_trial[column].to_numpy()
        others = list(per_fold)
        for index, model in enumerate(models):
            for other in others[index + 1 :]:
                ratios = per_fold[model] / per_fold[other]
                better = int(np.sum(per_fold[model] < per_fold[other]))
                rows.append(
                    {
                        "model": model,
                        "versus": other,
                        "gap": gap,
                        "folds": len(ratios),
                        "mse_ratio": float(ratios.mean()),
                        "ratio_ci95": t_half_width(ratios),
                        "better": f"{better}/{len(ratios)}",
                    }
                )
    return pd.DataFrame(rows)


def seed_intervals(trials: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (model, gap): mean ratio to the trivial baseline (:func:`ratio_column`) over seeds
    and its Student-t confidence interval.

    Columns ``model``, ``gap``, ``seeds``, ``mean_ratio``, ``low``, ``high`` (the interval;
    equal to the mean for a single seed). Failed trials (NaN ratios) are left out.
    """
    rows = []
    ratio = ratio_column(trials)
    for (model, gap), group in trials.groupby(["model", "gap"], sort=False):
        ratios = group[ratio].dropna().to_numpy()
        mean = float(ratios.mean()) if len(ratios) else float("nan")
        half = t_half_width(ratios, confidence)
        rows.append(
            {
                "model": model,
                "gap": gap,
                "seeds": len(ratios),
                "mean_ratio": mean,
                "low": mean - half,
                "high": mean + half,
            }
        )
    return pd.DataFrame(rows)


def max_solved_gap(trials: pd.DataFrame, solved_ratio: float = 0.1) -> dict[str, int]:
    """Per model, the largest gap whose mean ratio to the trivial baseline over seeds is at most
    ``solved_ratio`` (-1 when none)."""
    intervals = seed_intervals(trials)
    result = {}
    for model, rows in intervals.groupby("model", sort=False):
        gaps = rows.loc[rows["mean_ratio"] <= solved_ratio, "gap"]
        result[str(model)] = int(gaps.max()) if len(gaps) else -1
    return result


def make_gradient_flow(
    model: keras.Model, loss: Callable | None = None
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function of ``(inputs, targets)`` that measures how much the ``loss`` (a Keras loss,
    MSE by default) still "hears" each input step of ``model``: ``mean_batch ||dL/dx_{T-1-k}||``
    for k = 0 (the last step) to T - 1 (the first).

    A vanilla RNN's curve falls exponentially in k (vanishing gradients, Hochreiter 1991;
    Bengio et al. 1994); an LSTM's stays flat along its cell state.

    The gradient runs as one traced graph, so measuring the same model before and after
    training traces once: for an LSTM over 420 steps, 0.9 s to trace and 0.2 s a call, where
    eager execution took 2.6 s a call.
    """
    import keras
    import tensorflow as tf

    loss = loss or keras.losses.MeanSquaredError()

    @tf.function
    def input_gradient(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, model(x, training=False))
        return tape.gradient(value, x)

    def gradient_flow(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        x = tf.convert_to_tensor(inputs, dtype=tf.float32)
        labels = np.issubdtype(np.asarray(targets).dtype, np.integer)
        y = tf.convert_to_tensor(targets, dtype=tf.int32 if labels else tf.float32)
        gradient = input_gradient(x, y).numpy()  # (batch, time, features)
        return np.linalg.norm(gradient, axis=-1).mean(axis=0)[::-1]

    return gradient_flow
