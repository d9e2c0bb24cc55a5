"""Training: compile and fit a model on its splits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras

from forecast.config import TrainConfig
from forecast.data import Splits, to_dataset


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list[float]]
    seconds: float


def train(
    model: keras.Model,
    splits: Splits,
    config: TrainConfig,
    seed: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Fit ``model`` with Adam and MSE loss; returns the per-epoch history and wall time.

    The training set is reshuffled every epoch (with ``seed``); validation is not shuffled.
    """
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer, loss="mse")
    train_data = to_dataset(
        splits.x_train, splits.y_train, config.batch_size, shuffle=True, seed=seed
    )
    val_data = to_dataset(splits.x_val, splits.y_val, config.batch_size)
    start = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        shuffle=False,  # the training dataset reshuffles itself each epoch
        callbacks=callbacks or [],
        verbose=config.verbose,
    )
    return TrainResult(history=history.history, seconds=time.perf_counter() - start)
