"""Training: compile and fit a model on its splits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras

from forecast.config import TrainConfig
from forecast.data import Splits


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list[float]]
    seconds: float


def train(
    model: keras.Model,
    splits: Splits,
    config: TrainConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Fit ``model`` with Adam and MSE loss; returns the per-epoch history and wall time."""
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer, loss="mse")
    start = time.perf_counter()
    history = model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=callbacks or [],
        verbose=config.verbose,
    )
    return TrainResult(history=history.history, seconds=time.perf_counter() - start)
