"""Sweep throughput: trials per minute with 1 local worker and with N, on one tiny sweep.

Both sweeps are the same experiment (``sine_long_gap`` with small data, few epochs and a grid
over the learning rate) run through ``forecast.runner.run_experiment`` into a scratch MLflow
store, one after the other in this process, so the ratio compares like with like. One worker
runs in this process; N workers are spawned processes, so their start-up (importing
TensorFlow) is part of the measured time, as it is for a user.

Run ``python benchmarks/bench_sweep.py --help`` for the options.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import contextlib
import sys
import tempfile
import threading
import time

import psutil

SWEEP = [
    "seeds=[0, 1, 2, 3]",
    "log_models=false",
    "task.gaps=[5, 20]",
    "task.n_train=256",
    "task.n_val=64",
    "task.n_test=64",
    "models.0.units=8",
    "models.1.units=8",
    "train.epochs=3",
    "train.checkpoint=false",
    "sweep={grid: {train.learning_rate: [0.001, 0.003, 0.01]}}",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="the parallel run's workers")
    args = parser.parse_args(argv)

    from forecast.config import load_experiment
    from forecast.mlflow_tracker import MLflowTracker
    from forecast.runner import run_experiment

    name, config = load_experiment("sine_long_gap", SWEEP)
    rates, peak = {}, PeakWorkerMemory()
    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        for workers in (1, args.workers):
            # A distinct experiment per run, so the second never resumes the first.
            start = time.perf_counter()
            with peak if workers > 1 else contextlib.nullcontext():
                tracker = MLflowTracker(uri)
                sweep = run_experiment(f"bench-{workers}", config, lambda _: None, workers, tracker)
            summary = sweep.summary()
            seconds = time.perf_counter() - start
            trials = int(summary["seeds"].sum())
            rates[workers] = trials / seconds * 60
            print(
                f"{workers} worker(s): {trials} trials in {seconds:.1f} s, "
                f"{rates[workers]:.1f} trials/min",
                flush=True,
            )
    ratio = rates[args.workers] / rates[1]
    print(f"speed-up with {args.workers} workers on {os.cpu_count()} cores: {ratio:.2f}x")
    # What forecast.parallel.WORKER_MEMORY_BYTES budgets for each worker of `--workers auto`.
    print(f"peak resident memory of one worker process: {peak.bytes / 1e9:.2f} GB")
    return 0


class PeakWorkerMemory:
    """The largest resident set of any child process, sampled every 0.2 s while entered."""

    def __init__(self) -> None:
        self.bytes = 0
        self._done = threading.Event()

    def __enter__(self) -> PeakWorkerMemory:
        self._done.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.bytes = max(self.bytes, child.memory_info().rss)


if __name__ == "__main__":
    sys.exit(main())
