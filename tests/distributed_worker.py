"""One worker of the multi-worker tests in test_distributed.py, run as its own process.

Usage: ``python tests/distributed_worker.py OUT_DIR`` with ``TF_CONFIG`` naming this worker.
First it runs a small sweep through the command line's ``main``, as ``forecast run`` with
``TF_CONFIG`` would (the runner must create the strategy before any other TensorFlow work;
the sweep logs to ``OUT_DIR/mlflow.db``, its printout goes to ``OUT_DIR/sweep-INDEX.txt``).
Then it trains several trials under that same strategy, with ``keras.backend.clear_session()``
before each. Every worker writes ``OUT_DIR/worker-INDEX.json`` (the sweep's exit status; per
trial: history, failure, validation MSE of the final weights, what the callbacks saw, seconds)
and ``OUT_DIR/TRIAL-INDEX.npz`` (the final weights). Importing this module creates no strategy:
the tests share its settings. One pair of processes serves every multi-worker test because
each start costs both workers several seconds of TensorFlow import on a busy machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from forecast.cli import main as cli_main
from forecast.config import TrainConfig
from forecast.data import Splits, synthetic_splits
from forecast.distributed import is_chief, make_strategy
from forecast.models import build_model
from forecast.tasks import TASKS
from forecast.training import train

N_TRAIN = 97  # 3 batches of 32 and one of 1: one replica gets nothing of the last batch
CONFIG = TrainConfig(epochs=2, batch_size=32, checkpoint=False)
# One batch per epoch, so the shuffle order cannot matter (the distributed dataset draws other
# orders than the plain one); plain SGD and a clipnorm that clips, so clipping shows in the
# weights: the result must equal the default path's.
ONE_BATCH_CONFIG = TrainConfig(
    optimizer="sgd", learning_rate=0.5, clipnorm=0.05, epochs=2, batch_size=128, checkpoint=False
)


SWEEP_OVERRIDES = [
    "seeds=[0]",
    "task.gaps=[3]",
    "task.n_train=64",
    "task.n_val=32",
    "task.n_test=32",
    "models.0.units=3",
    "models.1.units=3",
    "train.epochs=2",
    "train.batch_size=32",
    "train.strategy=multi_worker",
]


def splits() -> Splits:
    return synthetic_splits(TASKS["sine_long_gap"], 3, 0, N_TRAIN, 40, 20)


def copy_splits() -> Splits:
    """A categorical task: labels at every step, cross-entropy."""
    return synthetic_splits(TASKS["copy_memory"], 2, 0, N_TRAIN, 40, 20)


def build(data: Splits) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("LSTM", 4, data.input_shape, data.output_shape, per_step=data.per_step)


class Recorder(keras.callbacks.Callback):
    """Records what ``train`` tells its callbacks; raises KeyboardInterrupt after ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.events: list[str] = []
        self.logs: list[dict[str, float]] = []
        self.stop_after = stop_after

    def on_train_begin(self, logs=None):
        self.events.append("begin" if self.model is not None else "begin without a model")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))
        if epoch == self.stop_after:
            raise KeyboardInterrupt("killed")

    def on_train_end(self, logs=None):
        self.events.append("end")


def run_sweep(out: Path, index: int) -> int:
    """``forecast run sine_long_gap`` with :data:`SWEEP_OVERRIDES`, in this process."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlflow.db'}"
    arguments = ["run", "sine_long_gap"]
    arguments += [part for override in SWEEP_OVERRIDES for part in ("--set", override)]
    with (
        open(out / f"sweep-{index}.txt", "w") as printout,
        contextlib.redirect_stdout(printout),
    ):
        return cli_main(arguments)


def main(out: Path, index: int) -> None:
    sweep_exit = run_sweep(out, index)  # first: the runner makes the strategy
    strategy = make_strategy("multi_worker")  # the runner's: one per process

    def trial(name: str, data: Splits, config: TrainConfig, **kwargs) -> dict:
        start = time.perf_counter()
        keras.backend.clear_session()  # as the runner does before each trial
        with strategy.scope():
            model = build(data)
        recorder = Recorder()
        result = train(model, data, config, 0, [recorder], strategy=strategy, **kwargs)
        np.savez(out / f"{name}-{index}.npz", *model.get_weights())
        predictions = model.predict(data.x_val, verbose=0)
        return {
            "history": result.history,
            "failure": result.failure,
            "val_mse": float(np.mean((predictions - data.y_val) ** 2))
            if not data.classes
            else None,
            "events": recorder.events,
            "logs": recorder.logs,
            "seconds": time.perf_counter() - start,
        }

    def resume_trial(data: Splits, backup: Path) -> dict:
        config = TrainConfig(epochs=4, batch_size=32)
        keras.backend.clear_session()
        with strategy.scope():
            model = build(data)
        with contextlib.suppress(KeyboardInterrupt):
            train(model, data, config, 0, [Recorder(stop_after=1)], backup, strategy)
        saved = sorted(path.name for path in backup.iterdir()) if backup.exists() else []
        outcome = trial("resume", data, config, checkpoint_dir=backup)
        return {**outcome, "backup_after_interrupt": saved, "backup_at_end": backup.exists()}

    data = splits()
    poisoned = dataclasses.replace(data, y_train=np.full_like(data.y_train, np.nan))
    noise = np.random.default_rng(1).normal(size=data.y_val.shape).astype("float32")
    early_config = TrainConfig(epochs=40, batch_size=32, early_stopping_patience=2)
    report = {
        "sweep_exit": sweep_exit,
        "chief": is_chief(strategy),
        "should_checkpoint": strategy.extended.should_checkpoint,  # TF's own chief test
        "same_strategy": make_strategy("multi_worker") is strategy,
        "replicas": strategy.num_replicas_in_sync,
        "main": trial("main", data, CONFIG),
        "one_batch": trial("one_batch", data, ONE_BATCH_CONFIG),
        "categorical": trial("categorical", copy_splits(), ONE_BATCH_CONFIG),
        "nan": trial("nan", poisoned, dataclasses.replace(CONFIG, epochs=5)),
        "early": trial("early", dataclasses.replace(data, y_val=noise), early_config),
        "resume": resume_trial(data, out / "backup"),
    }
    (out / f"worker-{index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    main(Path(sys.argv[1]), task.get("index", 0))
