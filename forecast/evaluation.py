"""Evaluation: test error against naive baselines, and the sweep's summary tables."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pandas as pd

from forecast.data import Splits


def evaluate(
    model: keras.Model,
    splits: Splits,
    solved_ratio: float,
    to_original_units: Callable[[np.ndarray], np.ndarray] | None = None,
    naive_forecasts: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Test errors of ``model`` and of naive forecasts, in the targets' original units.

    The trivial baseline predicts the mean target of the train split (or ``naive_forecasts
    ["mean"]`` when given); ``mse_ratio`` is model MSE / that baseline's MSE (1 means the
    model learned nothing the mean did not know), and the test counts as ``solved`` when the
    ratio is at most ``solved_ratio``. Every other naive forecast given (such as
    ``persistence``) adds its MSE, ``<name>_mse``, and the model's ratio to it,
    ``<name>_ratio``.

    Args:
        to_original_units: Maps test-split arrays from model units (scaled, possibly relative)
            to original units; identity by default.
        naive_forecasts: Forecasts of the test windows in original units, by name.
    """
    convert = to_original_units or (lambda values: values)
    predictions = convert(model.predict(splits.x_test, verbose=0, batch_size=1024))
    truth = convert(np.asarray(splits.y_test))
    naive = dict(naive_forecasts or {})
    naive.setdefault("mean", np.asarray(splits.y_train).mean(axis=0, keepdims=True))
    test_mse = float(np.mean((predictions - truth) ** 2))
    baseline_mse = float(np.mean((naive.pop("mean") - truth) ** 2))
    metrics = {
        "test_mse": test_mse,
        "test_mae": float(np.mean(np.abs(predictions - truth))),
        "baseline_mse": baseline_mse,
        "mse_ratio": test_mse / baseline_mse,
        "solved": float(test_mse / baseline_mse <= solved_ratio),
    }
    for name, forecast in naive.items():
        naive_mse = float(np.mean((forecast - truth) ** 2))
        metrics[f"{name}_mse"] = naive_mse
        metrics[f"{name}_ratio"] = test_mse / naive_mse
    return metrics


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, gap): means over seeds, and how many seeds solved the task.

    With a persistence forecast (series), ``vs_persistence`` is the model's MSE over
    persistence's: below 1 the model beats "tomorrow looks like today".
    """
    columns = {
        "seeds": ("seed", "count"),
        "test_mse": ("test_mse", "mean"),
        "mse_ratio": ("mse_ratio", "mean"),
    }
    if "persistence_ratio" in trials:
        columns["vs_persistence"] = ("persistence_ratio", "mean")
    columns.update(
        solved=("solved", "sum"),
        params=("params", "first"),
        train_seconds=("train_seconds", "mean"),
    )
    summary = trials.groupby(["model", "gap"], sort=False).agg(**columns).reset_index()
    summary["solved"] = [
        f"{int(n)}/{total}" for n, total in zip(summary["solved"], summary["seeds"], strict=True)
    ]
    return summary


def baseline_rows(metrics: dict[str, float], gap: int) -> pd.DataFrame:
    """Summary rows for the naive forecasts of a series, to read beside the models'."""
    naive = {"naive_mean": metrics["baseline_mse"]}
    if "persistence_mse" in metrics:
        naive["naive_persistence"] = metrics["persistence_mse"]
    rows = []
    for name, mse in naive.items():
        row = {"model": name, "gap": gap, "seeds": 0, "test_mse": mse}
        row["mse_ratio"] = mse / metrics["baseline_mse"]
        if "persistence_mse" in metrics:
            row["vs_persistence"] = mse / metrics["persistence_mse"]
        rows.append({**row, "solved": "-", "params": 0, "train_seconds": 0.0})
    return pd.DataFrame(rows)


def max_solved_gap(trials: pd.DataFrame) -> dict[str, int]:
    """Per model, the largest gap that every seed solved (-1 when none)."""
    solved_by_all = trials.groupby(["model", "gap"])["solved"].min().reset_index()
    result = {}
    for model, rows in solved_by_all.groupby("model", sort=False):
        gaps = rows.loc[rows["solved"] > 0, "gap"]
        result[str(model)] = int(gaps.max()) if len(gaps) else -1
    return result
