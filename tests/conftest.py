import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `forecast run` picks its worker processes itself; the suite's tiny sweeps run in the test's
# own process (a worker costs more to start than they take), and the tests of workers ask.
os.environ.setdefault("FORECAST_WORKERS", "1")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite MLflow store with its tables made, once per test process: MLflow migrates a
    new store's schema on first use, about 1.5 s that a copy of this file skips."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_store(tmp_path, monkeypatch, empty_store):
    """A fresh sqlite MLflow store for one test; returns its URI."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
