"""Served latency: one forecast from a series' logged model behind `mlflow models serve`, called
over HTTP, against the same forecast from the model loaded in this process.

A tiny co2 LSTM is trained and logged into a scratch MLflow store, served by MLflow's own
scoring server (uvicorn, one worker, `--env-manager local`), and asked for one forecast from
the latest rows (as JSON, `dataframe_split`) ``--requests`` times after a few warm-up calls;
the in-process reference is ``mlflow.pyfunc.load_model(...).predict`` on the same rows. The
ratio says what serving adds (HTTP, JSON, the server's schema checks) to the model's own time.

Run ``python benchmarks/bench_serving.py --help`` for the options.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

MODEL = [
    "data.backtest.folds=1",
    "data.baselines=[]",
    "train.loss=mse",
    "models=[{name: lstm, layer: LSTM, units: 32}]",
    "train.epochs=1",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed calls of each kind")
    args = parser.parse_args(argv)

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from forecast.config import load_experiment
    from forecast.mlflow_tracker import MLflowTracker
    from forecast.paths import datasets_dir
    from forecast.runner import run_experiment

    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{scratch}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        name, config = load_experiment("co2_forecast", MODEL)
        run_experiment(name, config, log=lambda line: None, workers=1, tracker=MLflowTracker(uri))
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        (run,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'lstm%'")
        model_uri = f"runs:/{run.info.run_id}/model"
        rows = pd.read_csv(datasets_dir() / "co2.csv").dropna().iloc[-config.data.input_width :]

        loaded = mlflow.pyfunc.load_model(model_uri)
        in_process = timed(lambda: loaded.predict(rows), args.requests)

        body = json.dumps(
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        ).encode()
        port = free_port()
        server = serve(model_uri, port, Path(scratch) / "serve.log")
        try:
            wait_until_up(port, server)
            start = time.perf_counter()
            post(port, body)
            first = 1000 * (time.perf_counter() - start)
            served = timed(lambda: post(port, body), args.requests)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    print(
        f"one forecast of {config.data.horizon} weeks from {len(rows)} rows, {args.requests} calls"
    )
    print(f"  in process (pyfunc predict): median {in_process:.1f} ms")
    print(
        f"  served over HTTP:            median {served:.1f} ms (the first request {first:.0f} ms)"
    )
    print(f"  served / in process:         {served / in_process:.2f}x")
    return 0


def timed(call, requests: int, warm_up: int = 5) -> float:
    """The median wall time of ``call``, in milliseconds, after ``warm_up`` untimed calls."""
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(model_uri: str, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    # MLflow starts `uvicorn` by name, from the environment's scripts.
    path = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    with open(log, "w") as output:
        return subprocess.Popen(
            command,
            env={**os.environ, "PATH": path},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_up(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow models serve did not start") from None
            time.sleep(0.5)


def post(port: int, body: bytes) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


if __name__ == "__main__":
    sys.exit(main())
