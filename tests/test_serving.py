"""A series' logged model as a user meets it: loaded with pyfunc, and served over HTTP by
`mlflow models serve`, with the rows a user's CSV or JSON gives."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast import runner
from forecast.config import load_experiment
from forecast.paths import datasets_dir
from tests.test_experiment import SERIES_TINY

pytestmark = pytest.mark.slow


def logged_model(store: str, experiment: str, overrides: list[str], model: str) -> str:
    """Run ``experiment`` with ``overrides`` in this process; the model URI of its one trial
    of ``model``."""
    name, config = load_experiment(experiment, overrides)
    runner.run_experiment(name, config, log=lambda line: None, workers=1)
    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    (child,) = client.search_runs([found.experiment_id], f"tags.mlflow.runName LIKE '{model}%'")
    return f"runs:/{child.info.run_id}/model"


@pytest.fixture
def co2_model(tracking_store):
    """A tiny co2 LSTM, logged; returns its model URI."""
    overrides = [*SERIES_TINY, "log_models=true", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    return logged_model(tracking_store, "co2_forecast", overrides, "lstm")


def latest_rows(count: int = 10) -> pd.DataFrame:
    """co2's last rows as pd.read_csv gives them, the readings rounded to integers."""
    rows = pd.read_csv(datasets_dir() / "co2.csv").dropna().iloc[-count:]
    return rows.assign(co2=rows["co2"].round().astype("int64"))


def test_the_loaded_model_casts_integer_rows_and_refuses_bad_ones_in_one_line(co2_model):
    loaded = mlflow.pyfunc.load_model(co2_model)
    rows = latest_rows()
    forecast = loaded.predict(rows)
    assert len(forecast) == 2 and np.isfinite(forecast["co2"]).all()
    np.testing.assert_allclose(
        forecast["co2"], loaded.predict(rows.astype({"co2": "float32"}))["co2"], rtol=1e-5
    )
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"^input: row 1 \(.*\) is not"):
        loaded.predict(rows.iloc[::-1])


@pytest.mark.parametrize(
    "preprocessing", ["data.transform=boxcox", "data.deseasonalize=mstl"], ids=lambda key: key[5:]
)
def test_a_model_trained_on_a_transformed_target_forecasts_as_its_trial_did(
    tracking_store, preprocessing
):
    """data.transform: boxcox and data.deseasonalize: mstl, fitted on the train part, travel in
    the logged model: from the rows up to a test origin it forecasts what the trial forecast
    from that origin."""
    overrides = [preprocessing, "data.horizon=3", "data.input_width=12"]
    overrides += ["data.baselines=[]", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    overrides += ["seeds=[0]", "train.epochs=2", "train.refit=false", "log_models=true"]
    name, config = load_experiment("air_passengers", overrides)
    results = runner.run_experiment(name, config, log=lambda line: None, workers=1)
    forecasts = results.forecasts[results.forecasts["forecaster"] == "lstm"]
    origin = forecasts["origin"].iloc[0]
    expected = forecasts[forecasts["origin"] == origin].sort_values("step")["yhat"]
    rows = pd.read_csv(datasets_dir() / "air_passengers.csv")
    rows = rows[pd.to_datetime(rows["month"]) <= origin]
    (run_id,) = results.trials["run_id"]
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(rows)
    np.testing.assert_allclose(served["passengers"], expected, rtol=1e-4)


def test_the_seeds_ensemble_is_served_as_it_was_scored(tracking_store):
    """<model>_ensemble's run carries a model of its seeds' logged models (deseasonalised
    here too): from the rows up to a test origin, their combined forecast is the ensemble's
    in-process one, interval bounds included."""
    overrides = ["data.deseasonalize=mstl", "data.horizon=3", "data.input_width=12"]
    overrides += ["data.baselines=[]", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    overrides += ["seeds=[0, 1]", "train.epochs=2", "train.refit=false", "log_models=true"]
    name, config = load_experiment("air_passengers", overrides)
    results = runner.run_experiment(name, config, log=lambda line: None, workers=1)
    forecasts = results.forecasts[results.forecasts["forecaster"] == "lstm_ensemble"]
    origin = forecasts["origin"].iloc[0]
    expected = forecasts[forecasts["origin"] == origin].sort_values("step")
    rows = pd.read_csv(datasets_dir() / "air_passengers.csv")
    rows = rows[pd.to_datetime(rows["month"]) <= origin]
    client = MlflowClient(tracking_store)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id],
        f"tags.`forecast.role` = 'ensemble' and tags.mlflow.parentRunId = '{results.run_id}'",
    )
    assert run.data.params["members"] == "lstm-gap0-seed0, lstm-gap0-seed1"
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(rows)
    np.testing.assert_allclose(served["passengers"], expected["yhat"], rtol=1e-4)
    np.testing.assert_allclose(served["passengers_lo80"], expected["lo"], rtol=1e-4)
    np.testing.assert_allclose(served["passengers_hi80"], expected["hi"], rtol=1e-4)
    members = [
        mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(rows)["passengers"]
        for run_id in results.trials["run_id"]
    ]
    np.testing.assert_allclose(served["passengers"], np.mean(members, axis=0), rtol=1e-6)


PROMO_TINY = [
    "seeds=[0]",
    "train.epochs=1",
    "data.horizon=3",
    "data.input_width=8",
    "data.calendar=[day_of_week]",
    "models.0.units=3",
]


@pytest.fixture
def promo_model(tracking_store):
    """A tiny LSTM of future_covariates (the promo flag and the weekday known ahead), logged;
    returns its model URI."""
    return logged_model(tracking_store, "future_covariates", PROMO_TINY, "lstm")


def test_the_loaded_model_forecasts_with_future_covariates_and_refuses_a_request_without(
    promo_model,
):
    loaded = mlflow.pyfunc.load_model(promo_model)
    history = pd.read_csv(datasets_dir() / "promo.csv").iloc[-8:]
    # The request: the history, then the horizon's rows, promo planned and sales unknown
    # (absent, so NaN once concatenated).
    future = pd.DataFrame({"date": ["2024-02-09", "2024-02-10", "2024-02-11"], "promo": [0, 1, 1]})
    forecast = loaded.predict(pd.concat([history, future], ignore_index=True))
    assert list(forecast.columns[:2]) == ["date", "sales"]
    assert [str(day.date()) for day in forecast["date"]] == list(future["date"])
    assert np.isfinite(forecast["sales"]).all()
    # The planned promotion moves the forecast: the model reads it.
    other = loaded.predict(pd.concat([history, future.assign(promo=0)], ignore_index=True))
    assert not np.allclose(forecast["sales"], other["sales"])
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"^input: 0 future rows .*'promo'"):
        loaded.predict(history)
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"^input: column 'promo' row 10"):
        loaded.predict(pd.concat([history, future.assign(promo=[0, 1, None])], ignore_index=True))


@pytest.mark.processes
def test_a_model_with_future_covariates_forecasts_in_a_fresh_process(promo_model, tmp_path):
    """Loaded where nothing of ours was imported, from the rows a user's CSV gives: the
    history, then the planned days with sales left empty."""
    rows = pd.read_csv(datasets_dir() / "promo.csv").iloc[-8:]
    future = pd.DataFrame({"date": ["2024-02-09", "2024-02-10", "2024-02-11"], "promo": [0, 1, 1]})
    pd.concat([rows, future], ignore_index=True).to_csv(tmp_path / "request.csv", index=False)
    script = (
        "import sys, mlflow, pandas as pd\n"
        "assert 'forecast' not in sys.modules\n"
        f"model = mlflow.pyfunc.load_model({promo_model!r})\n"
        f"rows = pd.read_csv({str(tmp_path / 'request.csv')!r})\n"
        f"model.predict(rows).to_csv({str(tmp_path / 'forecast.csv')!r}, index=False)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=240)
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    in_process = mlflow.pyfunc.load_model(promo_model).predict(
        pd.read_csv(tmp_path / "request.csv")
    )
    assert list(forecast["date"].str[:10]) == list(future["date"])
    np.testing.assert_allclose(forecast["sales"], in_process["sales"], rtol=1e-5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, rows: pd.DataFrame, as_csv: bool = False) -> tuple[int, dict]:
    """Send ``rows`` as a JSON body (``dataframe_split``) or a CSV one; the status and answer."""
    if as_csv:
        body, kind = rows.to_csv(index=False).encode(), "text/csv"
    else:
        split = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        body, kind = json.dumps(split).encode(), "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": kind}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.processes
def test_the_served_model_answers_a_bad_request_400_with_our_one_line(co2_model, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed with the server)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            co2_model,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # MLflow starts `uvicorn` by name: the environment's scripts must be on the PATH, as
        # in an activated virtual environment.
        env={**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                output = (tmp_path / "serve.log").read_text()
                assert server.poll() is None, f"mlflow models serve exited: {output[-2000:]}"
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(1)
        rows = latest_rows()
        status, answer = post(port, rows)
        assert status == 200, answer
        assert len(answer["predictions"]) == 2
        status, answer = post(port, rows.iloc[-3:])
        assert (status, answer["message"]) == (400, "input: 3 rows; the model reads the last 8")
        status, answer = post(port, rows.iloc[::-1])
        assert status == 400 and answer["message"].startswith("input: row 1 (")
        # A CSV body is answered as the JSON one is.
        assert post(port, rows, as_csv=True) == post(port, rows)
        # co2_forecast fills missing weeks (fillna: interpolate): a request's gap is filled
        # alike and counted; a value that is no number is refused in one line.
        missing = rows.astype({"co2": "float64"})
        missing.iloc[-2, missing.columns.get_loc("co2")] = np.nan
        status, answer = post(port, missing)
        assert status == 200 and [row["filled_values"] for row in answer["predictions"]] == [1, 1]
        bad = rows.astype({"co2": "object"})
        bad.iloc[-1, bad.columns.get_loc("co2")] = "n/a"
        status, answer = post(port, bad)
        message = "input: column 'co2' row 9: non-numeric value 'n/a'"
        assert (status, answer["message"]) == (400, message)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def static_model(tracking_store):
    """A tiny RNN of static_covariates (16 AR(1) series, each's persistence a static column),
    logged; returns its model URI."""
    overrides = ["seeds=[0]", "train.epochs=1", "models.0.units=3", "log_models=true"]
    return logged_model(tracking_store, "static_covariates", overrides, "rnn")


def test_the_loaded_model_forecasts_a_panel_with_static_covariates(static_model):
    loaded = mlflow.pyfunc.load_model(static_model)
    table = pd.read_csv(datasets_dir() / "persistence.csv")
    rows = pd.concat([table[table["series"] == name].iloc[-8:] for name in ("s03", "s12")])
    forecast = loaded.predict(rows)
    assert list(forecast["series"]) == ["s03", "s03", "s12", "s12"]
    assert np.isfinite(forecast["y"]).all()
    # Left out, the statics are the series' own, as trained; given, they are read.
    np.testing.assert_allclose(loaded.predict(rows.drop(columns="phi"))["y"], forecast["y"])
    other = loaded.predict(rows.assign(phi=0.0))
    assert not np.allclose(other["y"], forecast["y"])
    # A series never trained on is forecast from its statics; without them, refused.
    new = rows[rows["series"] == "s03"].assign(series="new")
    assert np.isfinite(loaded.predict(new)["y"]).all()
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"^series 'new': input: no value"):
        loaded.predict(new.drop(columns="phi"))
