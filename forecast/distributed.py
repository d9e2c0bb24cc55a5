"""Data-parallel training with ``tf.distribute``: the strategies by name, and the training loop
that ``MultiWorkerMirroredStrategy`` needs.

``model.fit`` fails under ``MultiWorkerMirroredStrategy`` in Keras 3 ("Attempt to convert a value
(PerReplica...)", keras-team/keras#20585), so :func:`fit_multi_worker` runs its own step: each
replica's gradients, loss and window count are all-reduced together, clipped, and applied inside
the replica function. :func:`forecast.training.train` calls it; everything else about training
(optimizer, loss, safety callbacks) is set up there, once for both paths.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from forecast.data import Splits, to_dataset

# `train.strategy` names; "default" trains without tf.distribute.
STRATEGIES = {
    "default": None,
    "mirrored": tf.distribute.MirroredStrategy,
    "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,
}
# The strategy of each name this process has made. MultiWorkerMirroredStrategy configures
# collective ops for the whole process and cannot be created twice, so every trial of a process
# must share the first one: make_strategy hands it out again.
_process_strategies: dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The process-wide strategy called ``name`` (config ``train.strategy``); None for default.

    ``multi_worker`` reads the cluster from ``TF_CONFIG`` (no ``TF_CONFIG``: one local worker).
    Call it before any other TensorFlow work in the process, since collective ops can only be
    configured at start-up; later calls with the same name return the same object.

    Raises:
        ValueError: an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if STRATEGIES[name] is None:
        return None
    if name not in _process_strategies:
        _process_strategies[name] = STRATEGIES[name]()
    return _process_strategies[name]


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process should write shared output (MLflow runs, backups, files).

    True except on multi-worker non-chiefs; the chief is the task of type ``chief``, or worker 0
    when the cluster names no chief (TensorFlow's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:  # no strategy, mirrored or one local worker
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def fit_multi_worker(
    model: keras.Model,
    splits: Splits,
    strategy: tf.distribute.MultiWorkerMirroredStrategy,
    epochs: int,
    batch_size: int,
    seed: int,
    clipnorm: float | None,
    loss: keras.losses.Loss,
    callbacks: list[keras.callbacks.Callback],
    backup_dir: Path | None = None,
    verbose: int = 0,
    first_epoch: int = 0,
) -> dict[str, list[float]]:
    """``model.fit`` for MultiWorkerMirroredStrategy: returns the per-epoch history.

    ``loss`` is the compiled loss without reduction (per target: see
    :func:`forecast.training.make_loss`). ``model`` must be built and compiled (an optimizer
    without clipping) under ``strategy.scope()``: the clipping to ``clipnorm`` happens here,
    after the all-reduce, because a Keras optimizer clips each replica's partial gradient
    before they are summed, which is not the clipnorm of the whole batch.

    Every worker runs this with the same data and seed: each global batch of ``batch_size``
    windows is split across the replicas of all workers. Whatever decides control flow (NaN
    stop, early stopping, the epoch to resume from) comes from all-reduced values, identical on
    every worker, so the workers never disagree on how many collective steps to run. The
    ``callbacks`` (Keras' own safety callbacks among them) are driven as ``fit`` drives them.
    With ``backup_dir``, every epoch is backed up there and a rerun resumes from it.
    ``first_epoch`` numbers the ``epochs`` epochs from there, as ``fit``'s ``initial_epoch``.
    """
    optimizer = model.optimizer
    if not optimizer.built:  # train's compile_model builds it
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    options = tf.data.Options()
    # Every worker reads the whole (identically shuffled) set and keeps its share of each batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_data = to_dataset(
        splits.x_train, splits.y_train, batch_size, shuffle=True, seed=seed
    ).with_options(options)
    val_data = to_dataset(splits.x_val, splits.y_val, batch_size).with_options(options)
    train_batches = strategy.experimental_distribute_dataset(train_data)
    val_batches = strategy.experimental_distribute_dataset(val_data)
    train_steps = math.ceil(len(splits.x_train) / batch_size)
    val_steps = math.ceil(len(splits.x_val) / batch_size)
    train_step, val_step = _distributed_steps(model, optimizer, strategy, clipnorm, loss)

    backup = _Backup(Path(backup_dir), model, strategy) if backup_dir is not None else None
    restored = backup.restore() if backup else 0  # the epoch a backup got to, if any
    start = max(first_epoch, restored)
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_progbar=verbose > 0 and is_chief(strategy),
        model=model,
        verbose=verbose,
        epochs=first_epoch + epochs,
        steps=train_steps,
    )
    model.stop_training = False
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    callback_list.on_train_begin()
    for epoch in range(start, first_epoch + epochs):
        callback_list.on_epoch_begin(epoch)
        loss_sum = count = 0.0
        batches = iter(train_batches)
        for batch in range(train_steps):
            batch_loss, batch_count = (float(value) for value in train_step(batches))
            loss_sum, count = loss_sum + batch_loss * batch_count, count + batch_count
            callback_list.on_train_batch_end(batch, {"loss": loss_sum / count})  # as in fit
            if model.stop_training:  # TerminateOnNaN
                break
        batches = iter(val_batches)
        val_sum, val_count = sum(val_step(batches).numpy() for _ in range(val_steps))
        logs = {"loss": loss_sum / count, "val_loss": float(val_sum / val_count)}
        for key, value in logs.items():
            history[key].append(value)
        if backup:  # before the callbacks, as BackupAndRestore comes before them in fit
            backup.save(epoch + 1)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    if backup:
        backup.delete()
    return history


def _distributed_steps(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    clipnorm: float | None,
    loss: keras.losses.Loss,
) -> tuple[tf.types.experimental.GenericFunction, tf.types.experimental.GenericFunction]:
    """(train_step, val_step): each runs the next batch of a distributed iterator.

    Both are traced once per model: the iterator's element spec leaves the batch size open,
    whereas batches passed as arguments would retrace for each size of the replicas' shares.

    ``train_step`` returns (mean loss of the global batch, its size); ``val_step`` returns (sum
    of the per-window losses, number of windows); both identical on every worker. The loss is
    ``loss`` (unreduced) plus any regularisation losses, as in ``fit``.
    """
    replicas = strategy.num_replicas_in_sync
    total = tf.distribute.ReduceOp.SUM

    def window_losses(x: tf.Tensor, y: tf.Tensor, training: bool) -> tf.Tensor:
        per_target = tf.cast(loss(y, model(x, training=training)), tf.float32)
        # Mean over each window's targets, summed over windows (a share may hold no windows).
        per_window = tf.reduce_mean(per_target, axis=list(range(1, per_target.shape.rank)))
        return tf.reduce_sum(per_window)

    def regularization() -> tf.Tensor:
        return tf.add_n([tf.cast(loss, tf.float32) for loss in model.losses] or [0.0])

    def replica_train(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        count = tf.cast(tf.shape(y)[0], tf.float32)
        with tf.GradientTape() as tape:
            # This replica's part of the summed loss (regularisation once per window): the
            # shares of a batch can differ in size, so the mean is taken after the all-reduce.
            loss_sum = window_losses(x, y, True) + regularization() * count
        variables = model.trainable_variables
        # One all-reduce for the gradients, the loss and the window count together.
        *gradients, loss_sum, count = tf.distribute.get_replica_context().all_reduce(
            total, [*tape.gradient(loss_sum, variables), loss_sum, count]
        )
        gradients = [g / count for g in gradients]  # of the global batch's mean loss
        if clipnorm:  # clip the global batch's gradient, like clipnorm without a strategy
            gradients = [tf.clip_by_norm(g, clipnorm) for g in gradients]
        # The optimizer sums the gradients it gets over the replicas once more, so each replica
        # hands it an equal share of the already reduced gradient.
        optimizer.apply([g / replicas for g in gradients], variables)
        return tf.stack([loss_sum / count, count])

    def replica_val(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        count = tf.cast(tf.shape(y)[0], tf.float32)
        return tf.stack([window_losses(x, y, False) + regularization() * count, count])

    @tf.function
    def train_step(batches: tf.distribute.DistributedIterator) -> tf.Tensor:
        # Already all-reduced: every replica holds the same values, so take this worker's first.
        per_replica = strategy.run(replica_train, args=next(batches))
        return strategy.experimental_local_results(per_replica)[0]

    @tf.function
    def val_step(batches: tf.distribute.DistributedIterator) -> tf.Tensor:
        return strategy.reduce(total, strategy.run(replica_val, args=next(batches)), axis=None)

    return train_step, val_step


class _Backup:
    """Per-epoch backup of the multi-worker loop, in the files of BackupAndRestore.

    Every worker saves, but only the chief into ``directory``; the others write into a
    temporary directory they delete at once (TensorFlow's convention for multi-worker
    checkpoints, where saving may need every worker). Every worker restores from ``directory``,
    so it must be readable by all of them (a shared or local filesystem). Saving and deleting
    end with a barrier, so no worker reads the backup while the chief is still writing it.
    """

    def __init__(
        self, directory: Path, model: keras.Model, strategy: tf.distribute.Strategy
    ) -> None:
        self.directory = directory
        self.model = model
        self.strategy = strategy
        self.chief = is_chief(strategy)

    def restore(self) -> int:
        """Load the last backup, if any; returns the epoch to start from."""
        weights = self.directory / "latest.weights.h5"
        metadata = self.directory / "training_metadata.json"
        epoch = 0
        if weights.is_file() and metadata.is_file():
            self.model.load_weights(weights)
            epoch = int(json.loads(metadata.read_text())["epoch"])
        # A worker that cannot see the chief's backup would run more epochs than the others and
        # hang in their collectives: fail on every worker instead.
        epochs = self._synchronize(epoch)
        if len(epochs) > 1:
            raise RuntimeError(
                f"the workers found backups of different epochs ({sorted(epochs)}) in "
                f"{self.directory}; every worker must be able to read it"
            )
        return epoch

    def save(self, epochs_done: int) -> None:
        directory = self.directory if self.chief else Path(tempfile.mkdtemp())
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(directory / "latest.weights.h5", overwrite=True)
        metadata = {"epoch": epochs_done, "batch": 0}
        (directory / "training_metadata.json").write_text(json.dumps(metadata))
        if not self.chief:
            shutil.rmtree(directory, ignore_errors=True)
        self._synchronize(epochs_done)

    def delete(self) -> None:
        """Training completed: drop the backup (the chief's; the others keep none)."""
        if self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._synchronize(0)

    def _synchronize(self, epoch: int) -> set[int]:
        """Wait for every worker; returns the set of their ``epoch`` values."""
        return set(self._gather(tf.constant([epoch])).numpy().tolist())

    @tf.function
    def _gather(self, value: tf.Tensor) -> tf.Tensor:
        """``value`` of every replica, in replica order (identical on every worker)."""
        return self.strategy.gather(self.strategy.run(lambda: tf.identity(value)), axis=0)
