"""Datasets: train / validation / test splits that every model of a comparison shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast.tasks import Task


@dataclass(frozen=True)
class Splits:
    """Chronologically or independently drawn splits, as (inputs, targets) numpy arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int]:
        """(time, features) of one sample."""
        return self.x_train.shape[1], self.x_train.shape[2]

    @property
    def output_size(self) -> int:
        return self.y_train.shape[-1]


def synthetic_splits(
    task: Task, gap: int, seed: int, n_train: int, n_val: int, n_test: int, **params: object
) -> Splits:
    """Draw one sample set of ``task`` with ``seed`` and cut it into disjoint splits."""
    inputs, targets = task(n_train + n_val + n_test, gap, seed, **params)
    val_end = n_train + n_val
    return Splits(
        inputs[:n_train],
        targets[:n_train],
        inputs[n_train:val_end],
        targets[n_train:val_end],
        inputs[val_end:],
        targets[val_end:],
    )
