"""Training: compile and fit a model on its splits, with the usual safety nets.

Early stopping restores the best weights; a NaN loss stops the trial and reports it as failed
instead of crashing the sweep; with checkpointing, every epoch is backed up under
``checkpoint_dir`` so a trial killed mid-training resumes from its last finished epoch when the
experiment is run again (the backup is deleted once training completes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from forecast.config import TrainConfig
from forecast.data import Splits, to_dataset

OPTIMIZER_CLASSES = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list[float]]
    seconds: float
    failure: str | None = None  # why training could not finish, e.g. a NaN loss

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def train(
    model: keras.Model,
    splits: Splits,
    config: TrainConfig,
    seed: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Fit ``model`` on the MSE loss; returns the per-epoch history, wall time and failure.

    The training set is reshuffled every epoch (with ``seed``); validation is not shuffled.
    """
    optimizer = OPTIMIZER_CLASSES[config.optimizer](
        learning_rate=config.learning_rate, clipnorm=config.clipnorm
    )
    model.compile(optimizer=optimizer, loss="mse")
    train_data = to_dataset(
        splits.x_train, splits.y_train, config.batch_size, shuffle=True, seed=seed
    )
    val_data = to_dataset(splits.x_val, splits.y_val, config.batch_size)
    safety = [keras.callbacks.TerminateOnNaN()]
    if config.early_stopping_patience is not None:
        safety.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if config.checkpoint and checkpoint_dir is not None:
        safety.append(keras.callbacks.BackupAndRestore(str(checkpoint_dir)))
    start = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        shuffle=False,  # the training dataset reshuffles itself each epoch
        callbacks=[*safety, *(callbacks or [])],
        verbose=config.verbose,
    )
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    failure = None
    if any(not math.isfinite(loss) for loss in losses):
        failure = f"loss became {losses[-1]} at epoch {len(losses)}; training stopped"
    return TrainResult(history=history.history, seconds=seconds, failure=failure)
