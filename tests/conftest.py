import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `forecast run` picks its worker processes itself; the suite's tiny sweeps run in the test's
# own process (a worker costs more to start than they take), and the tests of workers ask.
os.environ.setdefault("FORECAST_WORKERS", "1")

import pytest  # noqa: E402


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for one test; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
