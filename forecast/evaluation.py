"""Evaluation: test error against the trivial baseline, and the sweep's summary table."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from forecast.data import Splits


def evaluate(model: keras.Model, splits: Splits, solved_ratio: float) -> dict[str, float]:
    """Test MSE of ``model`` and of the trivial baseline (the train-target mean).

    ``mse_ratio`` is model MSE / baseline MSE: 1 means the model learned nothing the mean did
    not know; the task counts as ``solved`` when the ratio is at most ``solved_ratio``.
    """
    predictions = model.predict(splits.x_test, verbose=0, batch_size=1024)
    test_mse = float(np.mean((predictions - splits.y_test) ** 2))
    baseline = splits.y_train.mean(axis=0, keepdims=True)
    baseline_mse = float(np.mean((baseline - splits.y_test) ** 2))
    ratio = test_mse / baseline_mse
    return {
        "test_mse": test_mse,
        "baseline_mse": baseline_mse,
        "mse_ratio": ratio,
        "solved": float(ratio <= solved_ratio),
    }


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, gap): means over seeds, and how many seeds solved the task."""
    grouped = trials.groupby(["model", "gap"], sort=False)
    summary = grouped.agg(
        seeds=("seed", "count"),
        test_mse=("test_mse", "mean"),
        mse_ratio=("mse_ratio", "mean"),
        solved=("solved", "sum"),
        params=("params", "first"),
        train_seconds=("train_seconds", "mean"),
    ).reset_index()
    summary["solved"] = [
        f"{int(n)}/{total}" for n, total in zip(summary["solved"], summary["seeds"], strict=True)
    ]
    return summary


def max_solved_gap(trials: pd.DataFrame) -> dict[str, int]:
    """Per model, the largest gap that every seed solved (-1 when none)."""
    solved_by_all = trials.groupby(["model", "gap"])["solved"].min().reset_index()
    result = {}
    for model, rows in solved_by_all.groupby("model", sort=False):
        gaps = rows.loc[rows["solved"] > 0, "gap"]
        result[str(model)] = int(gaps.max()) if len(gaps) else -1
    return result
