"""Data-parallel training: MirroredStrategy in this process, MultiWorkerMirroredStrategy as two
worker processes on 127.0.0.1.

A multi-worker strategy must configure collective ops before any other TensorFlow work, which
this process has long done by then, so every multi-worker check runs in the workers of
``distributed_worker.py``: one run of both workers (a fixture) serves all those tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import tensorflow as tf

from forecast.distributed import STRATEGIES, is_chief, make_strategy
from forecast.training import train
from tests.distributed_worker import CONFIG, ONE_BATCH_CONFIG, build, copy_splits, splits

WORKER_SCRIPT = Path(__file__).with_name("distributed_worker.py")
# Seconds for both workers together: ~40 s on 2 busy cores, several times that on a loaded one.
WORKERS_TIMEOUT = 600


def test_every_configurable_strategy_can_be_made():
    assert set(STRATEGIES) == {"default", "mirrored", "multi_worker"}
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


def test_strategies_are_made_once_per_process():
    assert make_strategy("default") is None
    mirrored = make_strategy("mirrored")
    assert make_strategy("mirrored") is mirrored
    assert is_chief(None) and is_chief(mirrored)


@pytest.mark.parametrize(
    "cluster, task, chief",
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
        ({}, {}, True),  # no cluster: one local worker
    ],
)
def test_the_chief_is_the_chief_task_or_else_worker_0(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert is_chief(SimpleNamespace(cluster_resolver=resolver)) is chief


def test_a_model_built_outside_the_strategy_scope_is_refused():
    data = splits()
    with pytest.raises(ValueError, match=r"strategy\.scope\(\)"):
        train(build(data), data, CONFIG, strategy=make_strategy("mirrored"))


def test_mirrored_training_lowers_the_loss():
    strategy, data = make_strategy("mirrored"), splits()
    with strategy.scope():
        model = build(data)
    result = train(model, data, CONFIG, strategy=strategy)
    assert result.failure is None and set(result.history) == {"loss", "val_loss", "val_ratio"}
    assert result.epochs_run == 2 and result.history["loss"][1] < result.history["loss"][0]


def test_mirrored_on_one_device_matches_the_default_path_when_order_cannot_matter():
    # With several batches per epoch the weights differ (~1e-2 after 3 epochs): the dataset
    # that tf.distribute rewrites draws other shuffle orders than the plain one, same seed or
    # not. With one batch per epoch only the summation order inside the batch can differ.
    data, weights = splits(), {}
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = build(data)
        train(model, data, ONE_BATCH_CONFIG, strategy=strategy)
        weights[name] = model.get_weights()
    for default, mirrored in zip(weights["default"], weights["mirrored"], strict=True):
        np.testing.assert_allclose(mirrored, default, rtol=0, atol=1e-6)


@dataclass
class WorkerRun:
    out: Path
    reports: list[dict]  # worker-INDEX.json of each worker
    logs: str  # both workers' exit codes and stderr, for assertion messages

    def weights(self, trial: str, index: int) -> list[np.ndarray]:
        with np.load(self.out / f"{trial}-{index}.npz") as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture(scope="session")
def workers(tmp_path_factory, worker_id) -> WorkerRun:
    """Both workers of a 2-worker cluster, run to the end once per test session; fails with
    their stderr. Under pytest-xdist the first test process to ask runs them, holding a file
    lock, and the others read what they wrote."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's, not a process's
    out = shared / "two_worker_cluster"
    with open(shared / "two_worker_cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / "logs.txt").exists():
            out.mkdir(exist_ok=True)
            codes, logs = run_both_workers(out)
            (out / "logs.txt").write_text(logs)
            (out / "exit_codes.json").write_text(json.dumps(codes))
    logs = (out / "logs.txt").read_text()
    assert json.loads((out / "exit_codes.json").read_text()) == [0, 0], logs
    reports = [json.loads((out / f"worker-{i}.json").read_text()) for i in range(2)]
    return WorkerRun(out, reports, logs)


def run_both_workers(out: Path) -> tuple[list[int | None], str]:
    """Run ``distributed_worker.py`` as both workers of a cluster on 127.0.0.1, writing into
    ``out``; returns their exit codes and their stderr."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    root = str(Path(__file__).resolve().parent.parent)
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT), str(out)],
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + WORKERS_TIMEOUT
    errors = ["", ""]
    for index, process in enumerate(processes):
        try:
            errors[index] = process.communicate(timeout=max(1, deadline - time.monotonic()))[1]
        except subprocess.TimeoutExpired:
            errors[index] = f"(timed out after {WORKERS_TIMEOUT} s)\n"
            break
    for index, process in enumerate(processes):
        if process.returncode is None:  # timed out: stop our own workers, keep their stderr
            process.kill()
            errors[index] += process.communicate()[1]
    logs = "\n".join(
        f"--- worker {index} (exit {process.returncode}) stderr:\n{error[-4000:]}"
        for index, (process, error) in enumerate(zip(processes, errors, strict=True))
    )
    return [process.returncode for process in processes], logs


TRIALS = ("main", "one_batch", "categorical", "nan", "early", "resume")


@pytest.mark.processes
def test_two_workers_train_to_identical_weights(workers):
    first, second = workers.reports
    assert [first["chief"], second["chief"]] == [True, False], workers.logs
    for report in workers.reports:
        assert report["chief"] == report["should_checkpoint"]  # agrees with TF's own test
        assert report["same_strategy"] and report["replicas"] == 2
    for trial in TRIALS:
        assert first[trial]["history"] == second[trial]["history"], trial
        for mine, theirs in zip(workers.weights(trial, 0), workers.weights(trial, 1), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-7, err_msg=trial)
    history = first["main"]["history"]
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert all(math.isfinite(value) for values in history.values() for value in values)
    assert history["loss"][1] < history["loss"][0]


@pytest.mark.processes
def test_multi_worker_callbacks_see_what_fit_would_show(workers):
    main = workers.reports[1]["main"]
    assert main["events"] == ["begin", "epoch 0", "epoch 1", "end"]
    # The epoch's losses, and the validation ratio the pruners read, as fit's history holds.
    history = main["history"]
    assert set(history) == {"loss", "val_loss", "val_ratio"}
    assert main["logs"] == [
        {key: values[epoch] for key, values in history.items()}
        for epoch in range(len(history["loss"]))
    ]
    assert main["val_mse"] == pytest.approx(main["history"]["val_loss"][-1], rel=1e-5)


@pytest.mark.processes
def test_multi_worker_matches_the_default_path_with_clipping_after_the_all_reduce(workers):
    # One batch per epoch, so the shuffle order cannot matter. The clipnorm clips: had each
    # worker clipped its own half of the gradient before the sum (what the Keras optimizer does
    # under a strategy), the weights would be off by ~0.05, as with twice the clipnorm.
    data = splits()
    model = build(data)
    train(model, data, ONE_BATCH_CONFIG)
    for default, distributed in zip(
        model.get_weights(), workers.weights("one_batch", 0), strict=True
    ):
        np.testing.assert_allclose(distributed, default, rtol=0, atol=1e-6)


@pytest.mark.processes
def test_multi_worker_trains_a_categorical_task_on_cross_entropy_as_the_default_path(workers):
    data = copy_splits()
    model = build(data)
    result = train(model, data, ONE_BATCH_CONFIG)
    report = workers.reports[0]["categorical"]
    assert report["history"]["loss"] == pytest.approx(result.history["loss"], rel=1e-5)
    for default, distributed in zip(
        model.get_weights(), workers.weights("categorical", 0), strict=True
    ):
        np.testing.assert_allclose(distributed, default, rtol=0, atol=1e-6)


@pytest.mark.processes
def test_the_cached_strategy_survives_clear_session(workers):
    # Each trial calls keras.backend.clear_session() first; the same seed gives the same losses.
    for report in workers.reports:
        assert report["early"]["history"]["loss"][:2] == report["main"]["history"]["loss"]


@pytest.mark.processes
def test_a_nan_loss_stops_multi_worker_training_and_is_reported(workers):
    for report in workers.reports:
        nan = report["nan"]
        assert nan["failure"] is not None and "nan" in nan["failure"].lower()
        assert len(nan["history"]["loss"]) == 1 and nan["events"][-1] == "end"


@pytest.mark.processes
def test_multi_worker_early_stopping_restores_the_best_weights(workers):
    for report in workers.reports:
        early = report["early"]
        assert early["failure"] is None and len(early["history"]["loss"]) < 40
        assert early["val_mse"] == pytest.approx(min(early["history"]["val_loss"]), rel=1e-5)


@pytest.mark.processes
def test_an_interrupted_multi_worker_training_resumes_from_its_last_epoch(workers):
    for report in workers.reports:
        resume = report["resume"]
        assert resume["backup_after_interrupt"] == ["latest.weights.h5", "training_metadata.json"]
        assert resume["events"] == ["begin", "epoch 2", "epoch 3", "end"]
        assert len(resume["history"]["loss"]) == 2 and resume["failure"] is None
        assert not resume["backup_at_end"]  # the chief removed it once training completed


@pytest.mark.processes
def test_a_multi_worker_sweep_is_recorded_by_the_chief_only(workers):
    for index, report in enumerate(workers.reports):  # both trained every trial, printed
        assert report["sweep_exit"] == 0, workers.logs
        printout = (workers.out / f"sweep-{index}.txt").read_text()
        assert "largest solved gap" in printout and "lstm    3" in printout

    store = f"sqlite:///{workers.out / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2, "only the chief records runs"
    assert {r.info.status for r in runs} == {"FINISHED"}
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 2
