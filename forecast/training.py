"""Training: compile and fit a model on its splits, with the usual safety nets.

Early stopping restores the best weights; a NaN loss stops the trial and reports it as failed
instead of crashing the sweep; with a ``checkpoint_dir``, every epoch is backed up there so a
trial killed mid-training resumes from its last finished epoch when the experiment is run again
(the backup is deleted once training completes).

Data-parallel training goes through ``tf.distribute``: the caller builds the model under
``strategy.scope()`` (see :func:`forecast.distributed.make_strategy`) and passes the strategy
here. ``MirroredStrategy`` trains with ``model.fit``; ``MultiWorkerMirroredStrategy`` with the
loop of :func:`forecast.distributed.fit_multi_worker`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from forecast.config import TrainConfig
from forecast.data import Splits, to_dataset
from forecast.distributed import fit_multi_worker
from forecast.evaluation import trivial_loss


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list[float]]
    seconds: float
    failure: str | None = None  # why training could not finish, e.g. a NaN loss
    pruned_at: int | None = None  # the epoch (counted from 1) after which a pruner stopped it

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def make_optimizer(
    name: str, learning_rate: float, clipnorm: float | None
) -> keras.optimizers.Optimizer:
    """A Keras optimizer by the name ``keras.optimizers.get`` knows (``adam``, ``sgd``, ...).

    Raises:
        ValueError: a name Keras does not know.
    """
    config = {"learning_rate": learning_rate, "clipnorm": clipnorm}
    return keras.optimizers.get({"class_name": name, "config": config})


def make_loss(
    config: TrainConfig, classes: int | None, reduction: str | None = "sum_over_batch_size"
) -> keras.losses.Loss:
    """The training loss: for a categorical task of ``classes`` classes the sparse categorical
    cross-entropy of the model's logits; else MSE, or with ``config.loss: quantile`` the
    pinball loss of ``config.quantiles``. ``reduction=None`` gives it per target."""
    if classes is not None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)
    if config.loss == "quantile":
        return PinballLoss(config.quantiles, reduction=reduction)
    return keras.losses.MeanSquaredError(reduction=reduction)


class PinballLoss(keras.losses.Loss):
    """The pinball (quantile) loss, averaged over ``quantiles``: for quantile q and error
    e = truth - forecast, ``max(q e, (q - 1) e)``. Minimised, each output becomes its
    quantile of the target's distribution given the inputs (Koenker & Bassett 1978).

    ``y_pred`` holds one forecast per quantile on its last axis: ``y_true``'s shape plus
    ``len(quantiles)``.
    """

    def __init__(
        self,
        quantiles: list[float],
        reduction: str | None = "sum_over_batch_size",
        name: str = "pinball",
    ) -> None:
        super().__init__(reduction=reduction, name=name)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true, y_pred):
        quantiles = keras.ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        error = keras.ops.expand_dims(keras.ops.cast(y_true, y_pred.dtype), -1) - y_pred
        pinball = keras.ops.maximum(quantiles * error, (quantiles - 1.0) * error)
        return keras.ops.mean(pinball, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "quantiles": self.quantiles}


def model_output_shape(target_shape: tuple[int, ...], config: TrainConfig) -> tuple[int, ...]:
    """What a model outputs for targets of ``target_shape`` (one sample's): the same, or with
    a quantile loss one forecast per quantile on a last axis."""
    if config.loss == "quantile":
        return (*target_shape, len(config.quantiles))
    return tuple(target_shape)


def compile_model(
    model: keras.Model,
    config: TrainConfig,
    strategy: tf.distribute.Strategy | None = None,
    classes: int | None = None,
) -> None:
    """Compile ``model`` for :func:`train` (:func:`make_loss` and the configured optimizer; with
    ``classes``, accuracy too) and build the optimizer's variables now, so that its starting
    state can be read before the first step."""
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    # The optimizer's variables must be created under the scope to be mirrored like the model's.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # The multi-worker loop clips the all-reduced gradient itself.
        clipnorm = None if multi_worker else config.clipnorm
        optimizer = make_optimizer(config.optimizer, config.learning_rate, clipnorm)
        metrics = ["accuracy"] if classes is not None else None
        model.compile(optimizer=optimizer, loss=make_loss(config, classes), metrics=metrics)
        optimizer.build(model.trainable_variables)


# A pruner as training asks it after each epoch with validation: (the epoch, counted from 0,
# its logs with val_ratio) -> whether to stop the trial there.
Pruner = Callable[[int, dict[str, float]], bool]


def train(
    model: keras.Model,
    splits: Splits,
    config: TrainConfig,
    seed: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    checkpoint_dir: Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
    compiled: bool = False,
    first_epoch: int = 0,
    pruner: Pruner | None = None,
) -> TrainResult:
    """Fit ``model`` on :func:`make_loss`; returns the per-epoch history, wall time and failure.

    The training set is reshuffled every epoch (with ``seed``); validation is not shuffled.
    ``callbacks`` (a per-epoch logger, say) run after the safety callbacks. With a
    ``strategy``, ``model`` must have been built under ``strategy.scope()``;
    ``config.batch_size`` is then the global batch, split across all replicas. (Under a
    MirroredStrategy with several devices, ``fit`` clips each replica's share of the gradient
    before summing them, as Keras does; the multi-worker loop clips the summed gradient.)
    ``compiled``: ``model`` comes compiled by :func:`compile_model`, its optimizer in the
    state training should start from; otherwise it is compiled here. ``first_epoch`` numbers
    the epochs from there (``config.epochs`` of them), as Keras' ``initial_epoch`` does: a
    backtest's folds continue one another's epochs.

    Each epoch with validation data logs ``val_ratio``: its ``val_loss`` over the trivial
    baseline's (:func:`forecast.evaluation.trivial_loss`), 1 for a model that learned nothing.
    After it, ``pruner`` (an Optuna trial's, see forecast.search) or, without one, the give-up
    rule of ``config.give_up_epoch`` (:class:`GiveUp`) may stop training: the result's
    ``pruned_at`` says after which epoch.
    """
    if strategy is not None and model.distribute_strategy is not strategy:
        raise ValueError("with a strategy, build the model under `strategy.scope()`")
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not compiled:
        compile_model(model, config, strategy, splits.classes)
    backup_dir = checkpoint_dir if config.checkpoint else None
    safety = _safety_callbacks(config)
    pruning = None
    if len(splits.x_val):  # not in a refit on train + validation
        quantiles = config.quantiles if config.loss == "quantile" else None
        # Targets only (horizon steps a window, not input_width): small enough to gather whole.
        train_targets, val_targets = np.asarray(splits.y_train), np.asarray(splits.y_val)
        baseline = trivial_loss(train_targets, val_targets, splits.classes, quantiles)
        # First, so that every callback after it, and fit's history, see the ratio.
        ratio = _ValidationRatio(baseline)
        safety.insert(0, ratio)
        if pruner is None and config.give_up_epoch is not None:
            pruner = GiveUp(first_epoch + config.give_up_epoch, config.give_up_ratio)
        if pruner is not None:
            pruning = _Pruning(pruner)
            safety.append(pruning)
    start = time.perf_counter()
    if multi_worker:
        history = fit_multi_worker(
            model,
            splits,
            strategy,
            config.epochs,
            config.batch_size,
            seed,
            config.clipnorm,
            make_loss(config, splits.classes, reduction=None),
            [*safety, *(callbacks or [])],
            backup_dir,
            config.verbose,
            first_epoch,
        )
    else:
        if backup_dir is not None:
            safety.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
        callbacks = [*safety, *(callbacks or [])]
        history = _fit(model, splits, config, seed, callbacks, first_epoch)
    seconds = time.perf_counter() - start
    if len(splits.x_val):  # the multi-worker loop's history holds the losses alone
        history.setdefault("val_ratio", ratio.ratios)
    losses = history.get("loss", [])
    failure = None
    if any(not math.isfinite(loss) for loss in losses):
        failure = f"loss became {losses[-1]} at epoch {len(losses)}; training stopped"
    pruned_at = pruning.stopped_after if pruning is not None else None
    return TrainResult(history, seconds, failure, pruned_at)


def _fit(
    model: keras.Model,
    splits: Splits,
    config: TrainConfig,
    seed: int,
    callbacks: list[keras.callbacks.Callback],
    first_epoch: int,
) -> dict[str, list[float]]:
    """Keras' ``fit`` on the splits' datasets, epochs ``first_epoch`` on; its history."""
    train_data = to_dataset(
        splits.x_train, splits.y_train, config.batch_size, shuffle=True, seed=seed
    )
    # Keras' BackupAndRestore leaves the restored epoch on the model (`_initial_epoch`, no
    # public way to clear it), and every later `fit` of that model starts there: a model
    # reused for the next trial (forecast.trial) would skip that trial's first epochs.
    model._initial_epoch = None
    return model.fit(
        train_data,
        validation_data=(
            to_dataset(splits.x_val, splits.y_val, config.batch_size)
            if len(splits.x_val)
            else None  # a refit on train + validation
        ),
        initial_epoch=first_epoch,
        epochs=first_epoch + config.epochs,
        shuffle=False,  # the training dataset reshuffles itself each epoch
        callbacks=callbacks,
        verbose=config.verbose,
    ).history


class GiveUp:
    """The give-up rule, a :data:`Pruner`: stop after epoch ``epoch`` (counted from 1; the
    pruner hears ``epoch - 1``) if the best ``val_ratio`` so far is still above ``ratio``: a
    trial that has learned nothing by then is hopeless.

    Unlike patience, it ignores how long the loss has been flat: on long gaps an LSTM's loss
    stays flat for several epochs before it falls, so only a late look can tell the plateau
    from a trial that never learns (measured on sine_long_gap: docs/time-to-result.md).
    In an Optuna search it is the ``give_up`` pruner (forecast.search).
    """

    def __init__(self, epoch: int, ratio: float) -> None:
        self.epoch, self.ratio = epoch, ratio
        self.best = math.inf

    def __call__(self, epoch: int, logs: dict[str, float]) -> bool:
        self.best = min(self.best, logs["val_ratio"])
        return self.stops(epoch, self.best)

    def stops(self, epoch: int, best_ratio: float) -> bool:
        """Whether a trial whose best validation ratio up to ``epoch`` (from 0) is
        ``best_ratio`` gives up there."""
        return epoch + 1 == self.epoch and best_ratio > self.ratio


class _ValidationRatio(keras.callbacks.Callback):
    """Adds ``val_ratio``, ``val_loss`` over the trivial baseline's, to each epoch's logs."""

    def __init__(self, baseline: float) -> None:
        super().__init__()
        self.baseline = baseline
        self.ratios: list[float] = []  # for a history that is not fit's (see train)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and "val_loss" in logs:
            logs["val_ratio"] = logs["val_loss"] / self.baseline
            self.ratios.append(logs["val_ratio"])


class _Pruning(keras.callbacks.Callback):
    """Asks ``pruner`` after each epoch; stops training when it says so."""

    def __init__(self, pruner: Pruner) -> None:
        super().__init__()
        self.pruner = pruner
        self.stopped_after: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if "val_ratio" in logs and math.isfinite(logs["val_loss"]) and self.pruner(epoch, logs):
            self.model.stop_training = True
            self.stopped_after = epoch + 1


def _safety_callbacks(config: TrainConfig) -> list[keras.callbacks.Callback]:
    """Stop on a NaN loss; early stopping that restores the best weights, if configured."""
    safety = [keras.callbacks.TerminateOnNaN()]
    if config.early_stopping_patience is not None:
        safety.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return safety
