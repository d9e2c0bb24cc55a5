"""What a user sees in MLflow's UI after a series experiment, read from the page that headless
Chromium renders at the addresses `forecast ui` prints (the UI is a JavaScript application:
only a browser shows what it draws)."""

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from forecast.cli import main
from tests.test_remote_tracking import FORECAST, free_port, wait_until_healthy
from tests.test_sweep import set_args

pytestmark = pytest.mark.processes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As a root process on a machine with no network beyond the registries runs it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1900,900",
    "--virtual-time-budget=30000",  # the page's scripts run and fetch the runs first
]


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        if os.environ.get("FORECAST_REQUIRE_BROWSER"):  # CI installs it: never skip there
            pytest.fail("no chromium on PATH, and FORECAST_REQUIRE_BROWSER is set")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return CHROMIUM


def page_text(chromium: str, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The text of the page at ``url`` once its scripts have drawn it (and a screenshot)."""
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    if screenshot is not None:
        command[-2:] = [f"--screenshot={screenshot}", url]
        subprocess.run(command, capture_output=True, timeout=180, check=True)
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_the_printed_address_ranks_networks_and_baselines_side_by_side(
    tracking_store, chromium, tmp_path, capsys
):
    overrides = [
        "train.epochs=2",
        "seeds=[0]",
        "models=[{name: lstm, layer: LSTM, units: 4}]",
        "data.baselines=[theta]",
    ]
    assert main(["run", "air_passengers", "--workers", "1", *set_args(overrides)]) == 0
    capsys.readouterr()
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("air_passengers")
    runs = client.search_runs([experiment.experiment_id], order_by=["metrics.test_mase ASC"])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    ranked = [run for run in runs if run is not parent]
    port = free_port()
    ui = subprocess.Popen(
        [FORECAST, "ui", "air_passengers", "--port", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the UI's server and its workers stop with it
    )
    try:
        ui.stdout.readline()  # the experiment's runs
        address = ui.stdout.readline().removeprefix("its latest sweep, ranked:").strip()
        assert wait_until_healthy(f"http://127.0.0.1:{port}", ui)
        text = page_text(chromium, address, tmp_path / "profile", tmp_path / "ranked.png")
        # The classic runs table of this sweep alone, ranked by MASE, the metrics as columns.
        assert "Sort: test_mase" in text
        assert f"{len(ranked)} matching runs" in text
        for column in ("test_mase", "test_mape", "test_coverage"):
            assert column in text
        names = [run.info.run_name for run in ranked]
        assert {"lstm-gap0-seed0", "naive-gap0", "seasonal_naive-gap0", "theta-gap0"} <= set(names)
        shown = re.findall(r"\b(\w+-gap0(?:-seed0)?)\b", text)
        assert list(dict.fromkeys(shown)) == names  # best first
        for run in ranked:  # each row's MAPE, as the store holds it
            assert repr(run.data.metrics["test_mape"]) in text
        # The sweep's own page lists every forecaster's metrics.
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/"
        text = page_text(chromium, page + parent.info.run_id, tmp_path / "profile")
        assert "air_passengers-sweep" in text and "Metrics (0)" not in text
        assert "theta.mape" in text and "lstm.mape" in text
    finally:
        ui.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=30)
