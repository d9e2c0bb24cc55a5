"""Two experiments logging into one new sqlite store at the same time lose nothing."""

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.test_experiment import TINY


def test_two_processes_share_one_new_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    command = [str(Path(sys.executable).parent / "forecast"), "run"]
    overrides = [arg for o in TINY for arg in ("--set", o)]
    processes = [
        subprocess.Popen(
            [*command, name, *overrides],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("sine_long_gap", "adding")
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]

    client = MlflowClient(uri)
    for name in ("sine_long_gap", "adding"):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}, name
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        for run in runs:
            if run is not parent:
                assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
                assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
