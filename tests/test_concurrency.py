"""Two experiments logging into one new sqlite store at the same time lose nothing."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecast import tracking
from forecast.data import Splits
from tests.test_experiment import TINY


@pytest.mark.processes
def test_two_processes_share_one_new_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    command = [str(Path(sys.executable).parent / "forecast"), "run"]
    overrides = [arg for o in [*TINY, "task.gaps=[2]"] for arg in ("--set", o)]
    processes = [
        subprocess.Popen(
            [*command, name, *overrides],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("sine_long_gap", "adding_hochreiter")
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]

    client = MlflowClient(uri)
    for name in ("sine_long_gap", "adding_hochreiter"):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}, name
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        for run in runs:
            if run is not parent:
                assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
                assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2


def test_a_dataset_logged_by_a_concurrent_trial_first_is_linked_not_fatal(
    tracking_store, monkeypatch
):
    # Two processes logging one dataset at once: MLflow checks for it, then inserts it, so the
    # slower one fails on the unique key (reproduced with two bare MLflow processes: 13 of 30
    # calls failed). Here the other process wins the race just before our first insert.
    log_inputs = MlflowClient.log_inputs
    failures = []

    def lose_the_race_once(client, run_id, datasets):
        if not failures:
            failures.append(datasets[0].dataset.name)
            other = client.create_run(experiment_id).info.run_id  # another trial, just before
            log_inputs(client, other, datasets)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets")
        return log_inputs(client, run_id, datasets)

    monkeypatch.setattr(MlflowClient, "log_inputs", lose_the_race_once)
    experiment_id = tracking.use_experiment(tracking_store, "datasets")
    client = MlflowClient(tracking_store)
    run = tracking.RunRef(client, experiment_id, client.create_run(experiment_id).info.run_id)
    parts = [(np.full((8, 4, 1), value), np.full((8, 1), value)) for value in (0.0, 1.0, 2.0)]
    tracking.log_datasets(run, Splits(*parts[0], *parts[1], *parts[2]), "task", "shared")
    assert failures == ["shared"]
    inputs = client.get_run(run.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["shared"] * 3


def test_a_local_store_lets_readers_and_the_sweep_work_at_once(tmp_path):
    """Write-ahead logging: a reader (the UI, `forecast compare`) never holds up a write."""
    import sqlite3

    database = tmp_path / "mlflow.db"
    tracking.use_experiment(f"sqlite:///{database}", "readers")
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # A read transaction held open, and a write from another connection still commits.
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM experiments").fetchone()
        with sqlite3.connect(database, timeout=0.5) as writer:
            writer.execute("UPDATE experiments SET name = 'renamed' WHERE name = 'readers'")
