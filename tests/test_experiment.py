"""A tiny sweep end to end, read back from the MLflow store."""

import json
import re
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from scipy import stats

import forecast
from forecast import runner
from forecast import trial as trial_module
from forecast.cli import main
from forecast.config import load_experiment
from forecast.training import TrainResult
from tests.test_sweep import set_args


def summary_lines(out: str) -> list[str]:
    """The summary table a `forecast run` printed, line by line (its header first; a series'
    line naming the best, after it, left out)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["model"])
    table = "\n".join(lines[start:]).split("\n\n")[0].splitlines()
    return [line for line in table if not line.startswith("Best by ")]


TINY = [
    "seeds=[0]",
    "log_models=false",
    "task.gaps=[2, 6]",
    "task.n_train=64",
    "task.n_val=16",
    "task.n_test=32",
    "models.0.units=3",
    "models.1.units=3",
    "train.epochs=2",
    "train.batch_size=32",
]


def test_tiny_sweep_lands_in_mlflow(tracking_store, capsys):
    overrides = [*TINY, "log_models=true"]
    assert main(["run", "sine_long_gap", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    table = summary_lines(out)
    assert table[0].split() == [
        "model",
        "gap",
        "seeds",
        "test_mse",
        "mse_ratio",
        "solved",
        "effective_memory",
        "weights",
        "train_seconds",
    ]
    assert [row.split()[:2] for row in table[1:]] == [
        ["rnn", "2"],
        ["lstm", "2"],
        ["rnn", "6"],
        ["lstm", "6"],
    ]

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.info.run_name for c in children) == [
        "lstm-gap2-seed0",
        "lstm-gap6-seed0",
        "rnn-gap2-seed0",
        "rnn-gap6-seed0",
    ]
    rnn = next(c for c in children if c.info.run_name == "rnn-gap6-seed0")
    assert rnn.data.params["model"] == "rnn" and rnn.data.params["gap"] == "6"
    assert rnn.data.params["units"] == "3" and rnn.data.params["seed"] == "0"
    assert {c.data.params["variant"] for c in children} == {"standard", "chrono_init=400"}
    assert len({frozenset(c.data.params) for c in children}) == 1  # same keys everywhere
    assert int(rnn.data.params["parameters"]) == 3 + 9 + 3 + 3 + 1  # W, U, b, dense
    logged = {"test_mse", "baseline_mse", "mse_ratio", "solved", "train_seconds"}
    assert logged | {"effective_memory"} <= set(rnn.data.metrics)
    assert 0 <= rnn.data.metrics["effective_memory"] <= 20 + 6 - 1  # a lag within the input
    history = client.get_metric_history(rnn.info.run_id, "train_loss")
    assert [m.step for m in history] == [0, 1]
    assert len(client.get_metric_history(rnn.info.run_id, "val_loss")) == 2

    child_artifacts = {a.path for a in client.list_artifacts(rnn.info.run_id)}
    assert {"config.yaml", "gradient_flow.png", "forecast.png"} <= child_artifacts
    lstm = next(c for c in children if c.info.run_name == "lstm-gap6-seed0")
    assert "gates.png" in {a.path for a in client.list_artifacts(lstm.info.run_id)}
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "trials.csv", "summary.csv"} <= parent_artifacts
    assert {"ratio_vs_gap.png", "gradient_flow.png", "effective_memory.png"} <= parent_artifacts
    assert parent.data.tags["forecast.experiment"] == "sine_long_gap"
    assert parent.data.tags["version.tensorflow"].startswith("2.")
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40
    inputs = client.get_run(rnn.info.run_id).inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"sine_long_gap-gap6-seed0"}
    contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"training", "validation", "testing"}
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/config.yaml"))
    assert config["task"]["gaps"] == [2, 6] and config["train"]["epochs"] == 2
    assert "max_solved_gap.lstm" in parent.data.metrics

    # After the fact, from the store alone: the sweep is listed and its table rebuilt.
    assert main(["runs"]) == 0
    assert parent.info.run_id in capsys.readouterr().out
    assert main(["compare", "sine_long_gap", "--format", "csv"]) == 0
    rebuilt = capsys.readouterr().out.splitlines()
    assert rebuilt[0] == (
        "model,gap,seeds,test_mse,mse_ratio,solved,effective_memory,weights,train_seconds"
    )
    assert [line.split(",")[:3] for line in rebuilt[1:]] == [
        [row.split()[0], row.split()[1], row.split()[2]] for row in table[1:]
    ]
    assert main(["compare", "--run", "no-such-run"]) == 2
    assert "no sweep or experiment 'no-such-run'" in capsys.readouterr().err

    # The sweep's addresses in the UI (the classic view, not GenAI): its runs ranked by the
    # ratio, through the view it saved on the experiment, and the compare view of its trials.
    lines = out.splitlines()
    assert lines[-4].startswith("Its runs in the MLflow UI, ranked by mse_ratio")
    ranked = lines[-3].strip()
    assert ranked == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={parent.info.run_id}"
    )
    tags = client.get_experiment(experiment.experiment_id).tags
    view = json.loads(tags[f"mlflow.sharedViewState.{parent.info.run_id}"])
    assert view["searchFilter"] == f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    assert view["orderByKey"] == "metrics.`mse_ratio`" and view["orderByAsc"] is True
    assert "metrics.`effective_memory`" in view["selectedColumns"]
    address = lines[-1].strip()
    assert address.startswith("http://127.0.0.1:5000/#/compare-runs?runs=")
    query = urllib.parse.parse_qs(address.split("?", 1)[1])
    assert set(json.loads(query["runs"][0])) == {c.info.run_id for c in children}
    assert json.loads(query["experiments"][0]) == [experiment.experiment_id]

    # MLflow 3: the test metrics are linked to the logged model, so the UI's model list
    # compares trained models by them, and to the test dataset they were measured on.
    models = client.search_logged_models([experiment.experiment_id])
    (model,) = [m for m in models if m.source_run_id == rnn.info.run_id]
    linked = {m.key: m for m in model.metrics}
    assert linked["test_mse"].value == rnn.data.metrics["test_mse"]
    assert linked["test_mse"].dataset_name == "sine_long_gap-gap6-seed0"


def test_a_crashing_trial_is_recorded_failed_and_the_sweep_finishes(tracking_store, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(trial_module, "train", explode)
    name, config = load_experiment("sine_long_gap", TINY)
    lines = []
    summary = runner.run_experiment(name, config, log=lines.append).summary()
    assert summary["test_mse"].isna().all()
    assert sum("FAILED: RuntimeError: boom" in line for line in lines) == 4
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    assert {r.info.status for r in children} == {"FAILED"}
    assert {r.data.tags["failure_reason"] for r in children} == {"RuntimeError: boom"}
    assert {r.info.status for r in runs if r not in children} == {"FINISHED"}


def test_bad_layer_option_fails_before_any_run(tracking_store, capsys):
    code = main(["run", "sine_long_gap", "--set", "models.1.options.chrono_init=1"])
    assert code == 2
    assert "models.1: Argument `chrono_init`" in capsys.readouterr().err
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


SERIES_TINY = [
    "data.backtest.folds=1",  # co2_forecast's own: 3 folds, statistical baselines, quantiles
    "data.baselines=[]",
    "train.loss=mse",
    "data.input_width=8",
    "data.horizon=2",
    "data.season=4",
    "models.0.units=3",
    "models.1.units=3",
    "train.epochs=1",
    "train.batch_size=256",
    "log_models=false",  # the tests of the logged model ask for it
    "train.refit=false",  # test_series_experiment_compares_models_with_naive_forecasts refits
]


def test_a_categorical_task_is_scored_on_cross_entropy_against_its_memoryless_baseline(
    tracking_store, capsys
):
    # 512 sequences: the baseline's add-one smoothing costs little more than the formula's.
    overrides = [*TINY, "log_models=true", "models.2.units=3", "task.gaps=[2]", "task.n_train=512"]
    assert main(["run", "copy_memory", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    table = summary_lines(out)
    assert table[0].split() == [
        "model",
        "gap",
        "seeds",
        "test_cross_entropy",
        "test_accuracy",
        "cross_entropy_ratio",
        "solved",
        "effective_memory",
        "weights",
        "train_seconds",
    ]
    assert [row.split()[0] for row in table[1:]] == ["rnn", "lstm", "lstm_chrono"]

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("copy_memory")
    (child,) = client.search_runs(
        [experiment.experiment_id], "tags.mlflow.runName = 'lstm-gap2-seed0'"
    )
    metrics = child.data.metrics
    # T = 2: 22 steps, the symbols' 10 of them a uniform guess over 8 for the memoryless model.
    assert metrics["baseline_cross_entropy"] == pytest.approx(10 * np.log(8) / 22, rel=0.03)
    assert metrics["cross_entropy_ratio"] == pytest.approx(
        metrics["test_cross_entropy"] / metrics["baseline_cross_entropy"]
    )
    assert 0 <= metrics["test_accuracy"] <= 1 and "test_mse" not in metrics
    assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 2
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"gradient_flow.png", "gates.png"} <= artifacts and "forecast.png" not in artifacts
    # The logged model answers in logits, one row of classes per step.
    loaded = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    inputs = np.eye(10, dtype="float32")[np.zeros((1, 22), int)]
    assert loaded.predict(inputs).shape == (1, 22, 9)
    assert main(["compare", "copy_memory", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(
        "model,gap,seeds,test_cross_entropy,test_accuracy,cross_entropy_ratio,solved,"
    )


def test_series_experiment_compares_models_with_naive_forecasts(tracking_store, capsys):
    assert main(["run", "co2_forecast", *set_args([*SERIES_TINY, "train.refit=true"])]) == 0
    out = capsys.readouterr().out
    table = summary_lines(out)
    header = table[0].split()
    # One gap and one seed: no columns that would say so on every row.
    assert header[:7] == ["model", "mae", "rmse", "mape", "smape", "mase", "coverage"]
    assert "vs_seasonal_naive" in header
    names = [row.split()[0] for row in table[1:]]
    assert sorted(names) == sorted(["rnn", "lstm", "naive", "seasonal_naive", "mean", "drift"])
    # Best first by MASE, and named below the table.
    mase = [float(row.split()[5]) for row in table[1:]]
    assert mase == sorted(mase)
    assert f"Best by mase: {names[0]}" in out
    # Every row has its MAPE, sMAPE and MASE, and its conformal interval's coverage.
    for row in table[1:]:
        cells = row.split()
        assert all(np.isfinite(float(cell)) for cell in cells[1:6])
        assert 0 <= float(cells[6]) <= 1
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    child = client.search_runs(
        [experiment.experiment_id], "tags.mlflow.runName = 'lstm-gap0-seed0'"
    )[0]
    assert child.data.params["source"] == "co2"
    metric_names = ("mae", "rmse", "mse", "mape", "smape", "mase", "rmsse")
    expected = {f"test_{name}" for name in (*metric_names, "coverage", "msis")}
    expected |= {"test_mse.step1", "test_mse.step2", "nominal_coverage"}
    assert expected <= set(child.data.metrics)
    # The trial's run holds its network's metrics; the baselines are scored beside it in the
    # sweep's own run, every forecaster's headline metrics as the printed table has them.
    assert not any(key.startswith(("naive.", "drift.")) for key in child.data.metrics)
    assert child.data.metrics["nominal_coverage"] == 0.8  # evaluation.interval
    # Trained again on train + validation for the one epoch it trained (train.refit).
    assert child.data.metrics["refit_epochs"] == 1
    (parent,) = client.search_runs(
        [experiment.experiment_id], "tags.mlflow.runName = 'co2_forecast-sweep'"
    )
    printed = {row.split()[0]: row.split() for row in table[1:]}
    for model in ("lstm", "naive", "seasonal_naive", "drift"):
        for column, metric in ((1, "mae"), (3, "mape"), (5, "mase"), (6, "coverage")):
            value = parent.data.metrics[f"{model}.{metric}"]
            assert value == pytest.approx(float(printed[model][column]), rel=1e-3, abs=5e-3)
    # Errors are in ppmv: a persistence forecast of weekly CO2 is off by about a ppmv.
    assert 0.1 < parent.data.metrics["naive.mae"] < 3
    # Each baseline is a run beside the trials, its metrics named as a network's, so that the
    # runs table ranks them together; the sweep's run names the best by MASE.
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    roles = {run.info.run_name: run.data.tags["forecast.role"] for run in children}
    assert roles == {
        "rnn-gap0-seed0": "network",
        "lstm-gap0-seed0": "network",
        **{f"{name}-gap0": "baseline" for name in ("naive", "seasonal_naive", "mean", "drift")},
    }
    by_name = {run.info.run_name: run for run in children}
    for name in ("naive", "seasonal_naive", "mean", "drift"):
        baseline = by_name[f"{name}-gap0"]
        assert baseline.data.params["model"] == name
        for metric in ("mape", "mase", "coverage"):
            expected = parent.data.metrics[f"{name}.{metric}"]
            assert baseline.data.metrics[f"test_{metric}"] == pytest.approx(expected)
    mase = {model: parent.data.metrics[f"{model}.mase"] for model in printed}
    assert parent.data.tags["forecast.best_forecaster"] == min(mase, key=mase.get)
    # Loaded back, the sweep's trials are the networks' alone.
    assert list(forecast.load(parent.info.run_id).trials["trial"]) == [
        "rnn-gap0-seed0",
        "lstm-gap0-seed0",
    ]


def test_a_backtest_logs_each_fold_as_a_step_and_compares_models_fold_by_fold(
    tracking_store, capsys
):
    overrides = [*SERIES_TINY, "data.backtest.folds=3", "train.epochs=2"]
    assert main(["run", "co2_forecast", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    paired = out[out.index("Paired by backtest fold") :].split("\n\n")[0].splitlines()[1:]
    assert paired[0].split() == [
        "model",
        "versus",
        "gap",
        "folds",
        "mse_ratio",
        "ratio_ci95",
        "better",
    ]
    assert [row.split()[:2] for row in paired[1:]] == [
        ["rnn", "lstm"],
        *[["rnn", name] for name in ("naive", "seasonal_naive", "mean", "drift")],
        *[["lstm", name] for name in ("naive", "seasonal_naive", "mean", "drift")],
    ]

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    lstm = runs["lstm-gap0-seed0"]
    history = client.get_metric_history(lstm.info.run_id, "test_mse")
    per_fold = [m.value for m in sorted(history, key=lambda m: m.step) if m.step < 3]
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    # The headline (the value at the last step) is the mean over folds, with its interval.
    assert lstm.data.metrics["test_mse"] == pytest.approx(np.mean(per_fold))
    half = stats.t.ppf(0.975, 2) * stats.sem(per_fold)
    assert lstm.data.metrics["test_mse_ci95"] == pytest.approx(half)
    # The folds continue each other's epochs: three trainings of two epochs.
    epochs = client.get_metric_history(lstm.info.run_id, "train_loss")
    assert sorted(m.step for m in epochs) == [0, 1, 2, 3, 4, 5]
    # The pairs are each fold's MSE over the naive forecast's, from the stored forecasts.
    forecasts = forecast.load(experiment.name, tracking_store).forecasts
    lstm_rows = forecasts[forecasts["trial"] == "lstm-gap0-seed0"]
    squared = (lstm_rows["yhat"] - lstm_rows["y"]) ** 2
    by_fold = squared.groupby([lstm_rows["forecaster"], lstm_rows["fold"]]).mean()
    assert by_fold["lstm"].tolist() == pytest.approx(per_fold)
    ratios = by_fold["lstm"] / by_fold["naive"]
    row = next(r.split() for r in paired if r.split()[:2] == ["lstm", "naive"])
    assert float(row[4]) == pytest.approx(np.mean(ratios), abs=5e-4)

    # `forecast compare` reads the folds back from the runs' metric histories.
    assert main(["compare", "co2_forecast", "--format", "csv"]) == 0
    compared = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert compared[0] == "model,versus,gap,folds,mse_ratio,ratio_ci95,better"
    lstm_row = next(line for line in compared if line.startswith("lstm,naive,"))
    assert float(lstm_row.split(",")[4]) == pytest.approx(np.mean(ratios))


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.fillna=null", "co2.csv: column 'co2' has missing values (59 in all, first at line"),
        ("data.series_column=site", "co2.csv: no column 'site'; columns are: date, co2"),
        (
            "data={source: nox, series_column: site, time_column: date}",
            "nox.csv: series 'ad': column 'nox' has missing values (12 in all, first at line 8)",
        ),
        ("data.baselines=[prophet]", "data.baselines: unknown forecaster 'prophet'; choose from"),
        (
            "data={source: co2, time_column: date, fillna: ffill, baselines: [seasonal_naive]}",
            "data.baselines: seasonal_naive needs data.season",
        ),
        ("evaluation.metrics=[mae, r2]", "evaluation.metrics: unknown metric 'r2'; choose from"),
        ("evaluation.interval=1.5", "evaluation.interval: must lie in (0, 1), got 1.5"),
    ],
)
def test_bad_series_fails_before_any_run(tracking_store, capsys, override, message):
    assert main(["run", "co2_forecast", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(tracking_store, monkeypatch, capsys):
    real_train = trial_module.train

    def nan_for_rnn(model, *args, **kwargs):
        result = real_train(model, *args, **kwargs)
        if model.name == "simplernn":
            return TrainResult(result.history, result.seconds, failure="loss became nan")
        return result

    monkeypatch.setattr(trial_module, "train", nan_for_rnn)
    assert main(["run", "sine_long_gap", *[arg for o in TINY for arg in ("--set", o)]]) == 0
    out = capsys.readouterr().out
    assert "rnn-gap2-seed0: FAILED: TrainingDiverged: loss became nan" in out
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert runs["rnn-gap2-seed0"].info.status == "FAILED"
    reason = runs["rnn-gap2-seed0"].data.tags["failure_reason"]
    assert reason == "TrainingDiverged: loss became nan"
    assert runs["lstm-gap6-seed0"].info.status == "FINISHED"
    assert runs["sine_long_gap-sweep"].info.status == "FINISHED"


def test_an_interrupted_sweep_leaves_its_runs_killed(tracking_store, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_module, "train", interrupt)
    name, config = load_experiment("sine_long_gap", TINY)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lambda line: None)
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    statuses = {
        r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses == {"sine_long_gap-sweep": "KILLED", "rnn-gap2-seed0": "KILLED"}


def test_an_unreachable_tracking_server_fails_before_training(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on 9
    assert main(["run", "sine_long_gap", *[arg for o in TINY for arg in ("--set", o)]]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("forecast: error: MLflow tracking server http://127.0.0.1:9")
    assert "is not reachable" in captured.err and captured.err.count("\n") == 1
    assert "training" not in captured.out


@pytest.mark.processes
def test_logged_models_load_in_a_fresh_process(tracking_store, tmp_path):
    """`mlflow.pyfunc.load_model` works without importing or registering anything first."""
    import subprocess
    import sys

    import numpy as np

    overrides = [
        *TINY,
        "log_models=true",
        "task.gaps=[6]",
        "models=[{name: lstm, layer: LSTM, units: 3}]",
    ]
    name, config = load_experiment("sine_long_gap", overrides)
    runner.run_experiment(name, config, log=lambda line: None)
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sine_long_gap")
    child = client.search_runs(
        [experiment.experiment_id], "tags.mlflow.runName = 'lstm-gap6-seed0'"
    )[0]
    model_uri = f"runs:/{child.info.run_id}/model"
    x = np.random.default_rng(0).normal(size=(3, 26, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    x_path, y_path = str(tmp_path / "x.npy"), str(tmp_path / "y.npy")
    script = (
        "import sys, mlflow, numpy as np\n"
        "assert 'forecast' not in sys.modules\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        f"np.save({y_path!r}, model.predict(np.load({x_path!r})))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=240)
    in_process = mlflow.pyfunc.load_model(model_uri).predict(x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), in_process, atol=1e-6)
    assert in_process.shape == (3, 1)


@pytest.mark.processes
def test_a_series_model_forecasts_raw_rows_in_original_units_in_a_fresh_process(
    tracking_store, tmp_path
):
    import subprocess
    import sys

    overrides = [*SERIES_TINY, "log_models=true", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    name, config = load_experiment("co2_forecast", overrides)
    runner.run_experiment(name, config, log=lambda line: None)
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    (child,) = client.search_runs([experiment.experiment_id], "tags.`forecast.role` = 'network'")
    model_uri = f"runs:/{child.info.run_id}/model"
    # A user's raw rows: the CSV's own columns, the latest last, dates as text.
    from forecast.paths import datasets_dir

    raw = pd.read_csv(datasets_dir() / "co2.csv").iloc[-20:]
    raw.to_csv(tmp_path / "latest.csv", index=False)
    script = (
        "import sys, mlflow, pandas as pd\n"
        "assert 'forecast' not in sys.modules\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        f"rows = pd.read_csv({str(tmp_path / 'latest.csv')!r}, parse_dates=['date'])\n"
        f"model.predict(rows).to_csv({str(tmp_path / 'forecast.csv')!r}, index=False)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, timeout=240, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # Loading the model did not fill the caller's stderr with TensorFlow's C++ log lines.
    assert not re.search(r"^[IWE]\d{4} ", done.stderr, flags=re.M), done.stderr
    forecast = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["date"])
    # The forecast, its calibrated 80% interval (evaluation.interval), and how many values
    # of the rows were missing and filled as training filled them (co2's fillna).
    interval = ["co2_lo80", "co2_hi80"]
    assert list(forecast.columns) == ["date", "co2", *interval, "filled_values"]
    assert (forecast["filled_values"] == raw["co2"].isna().sum()).all()
    assert (forecast["co2_lo80"] < forecast["co2"]).all()
    assert (forecast["co2"] < forecast["co2_hi80"]).all()
    assert list(forecast["date"]) == list(pd.to_datetime(["2002-01-05", "2002-01-12"]))
    # In ppmv, near the last weeks' 371.5 (relative: a change from the last week, unscaled).
    assert forecast["co2"].between(365, 378).all()

    loaded = mlflow.pyfunc.load_model(model_uri)
    signature = loaded.metadata.signature
    # The rows it reads are shown by its input example; no input schema, which would make
    # MLflow refuse integer counts for a double, and every CSV body when served.
    assert signature.inputs is None and list(loaded.input_example.columns) == ["date", "co2"]
    assert signature.outputs.input_names() == ["date", "co2", *interval, "filled_values"]
    # As `mlflow models serve` answers a CSV body and a JSON one: the same forecast.
    from mlflow.pyfunc.scoring_server import invocations

    body = raw.to_csv(index=False)
    as_csv = invocations(body, "text/csv", loaded, loaded.metadata.get_input_schema())
    split = json.loads(raw.to_json(orient="split", index=False))
    request = json.dumps({"dataframe_split": split})
    as_json = invocations(request, "application/json", loaded, None)
    assert as_csv.status == as_json.status == 200
    assert json.loads(as_csv.response) == json.loads(as_json.response)
    answered = pd.DataFrame(json.loads(as_csv.response)["predictions"])
    np.testing.assert_allclose(answered["co2"], forecast["co2"], rtol=1e-6)
    rows = raw.assign(date=pd.to_datetime(raw["date"])).ffill()
    # A gap in the window the model reads is filled (interpolated, as training did).
    holed = rows.assign(co2=[*rows["co2"].iloc[:-3], None, *rows["co2"].iloc[-2:]])
    gapped = loaded.predict(holed)
    assert len(gapped) == 2 and gapped["filled_values"].tolist() == [1, 1]
    assert gapped["co2"].between(365, 378).all()
    for bad, message in [
        (rows.iloc[-3:], "input: 3 rows; the model reads the last 8"),
        (rows.assign(co2=[*rows["co2"].iloc[:-1], "n/a"]), "column 'co2' row 19: non-numeric"),
    ]:
        with pytest.raises(Exception, match=message) as error:
            loaded.predict(bad)
        assert "\n" not in str(error.value)


def test_a_quantile_model_reports_its_interval_and_forecasts_each_quantile(tracking_store):

    overrides = [*SERIES_TINY, "log_models=true", "train.loss=quantile", "train.epochs=3"]
    overrides += ["models=[{name: lstm, layer: LSTM, units: 3}]"]
    name, config = load_experiment("co2_forecast", overrides)
    runner.run_experiment(name, config, log=lambda line: None)
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    (child,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'lstm%'")
    metrics = child.data.metrics
    assert {"test_wql", "test_coverage", "test_msis", "test_mse"} <= set(metrics)
    assert "refit_epochs" not in metrics
    assert metrics["nominal_coverage"] == pytest.approx(0.8)
    assert 0 <= metrics["test_coverage"] <= 1
    loaded = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    from forecast.paths import datasets_dir

    rows = pd.read_csv(datasets_dir() / "co2.csv", parse_dates=["date"]).iloc[-8:]
    forecast = loaded.predict(rows)
    assert list(forecast.columns) == [
        "date",
        "co2",
        "co2_q0.1",
        "co2_q0.5",
        "co2_q0.9",
        "co2_lo80",
        "co2_hi80",
        "filled_values",
    ]
    np.testing.assert_allclose(forecast["co2"], forecast["co2_q0.5"])
    # The calibrated interval: the outer quantiles moved by the conformal half-widths.
    assert (forecast["co2_lo80"] < forecast["co2_hi80"]).all()


def test_statistical_baselines_are_rows_beside_the_models_on_every_fold(tracking_store, capsys):
    pytest.importorskip("statsforecast")
    overrides = [
        "data={source: sunspots, time_column: year, input_width: 10, horizon: 2, "
        "baselines: [ets, theta, arima], backtest: {folds: 2}}",
        "models=[{name: lstm, layer: LSTM, units: 3}]",
        "train.epochs=1",
        "train.refit=false",
        "log_models=false",
    ]
    assert main(["run", "co2_forecast", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    table = summary_lines(out)
    names = ["naive", "mean", "drift", "ets", "theta", "arima"]  # no season: no seasonal naive
    assert sorted(row.split()[0] for row in table[1:]) == sorted(["lstm", *names])
    # Each automatic model's choice is in the table (sunspots: no season given here).
    assert table[0].split()[-1] == "specification"
    rows = {row.split()[0]: row for row in table[1:]}
    assert "ETS(" in rows["ets"] and "ARIMA(" in rows["arima"] and "Theta(" in rows["theta"]
    paired = out[out.index("Paired by backtest fold") :].split("\n\n")[0].splitlines()[2:]
    assert [row.split()[1] for row in paired] == names
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    (child,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'lstm%'")
    assert child.data.params["spec.ets"].startswith("ETS(")
    (parent,) = client.search_runs(
        [experiment.experiment_id], "tags.mlflow.runName LIKE 'co2_forecast-sweep'"
    )
    assert {"ets.mape", "theta.mase", "arima.mae", "lstm.mape"} <= set(parent.data.metrics)


QUANTILE_COLUMNS = ["sales_q0.1", "sales_q0.5", "sales_q0.9"]


def sales_panel(folder: Path) -> list[str]:
    """Two series of a user's long table (``folder/sales.csv``), levels 100 apart, the rows of
    one after the other's; returns the overrides that forecast them with a tiny LSTM, logged."""
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    wave = np.sin(np.arange(120) / 4)
    table = pd.concat(
        [
            pd.DataFrame({"store": "north", "day": days, "sales": 10 + wave}),
            pd.DataFrame({"store": "south", "day": days, "sales": 110 + 5 * wave}),
        ]
    )
    table.to_csv(folder / "sales.csv", index=False)
    return [
        f"data={{source: {folder / 'sales.csv'}, series_column: store, time_column: day, "
        "input_width: 8, horizon: 2, season: 7, test_fraction: 0.3, backtest: {folds: 2}}",
        "models=[{name: lstm, layer: LSTM, units: 3}]",
        "train.epochs=1",
        "train.refit=false",
        "log_models=true",
    ]


def check_panel_forecast(forecast: pd.DataFrame) -> None:
    """The sales panel's forecast of its last rows: both stores, two days, in their units."""
    interval = ["sales_lo80", "sales_hi80"]
    assert list(forecast.columns) == ["store", "day", "sales", *QUANTILE_COLUMNS, *interval]
    assert list(forecast["store"]) == ["north", "north", "south", "south"]
    days = pd.to_datetime(forecast["day"])
    assert list(days) == list(pd.to_datetime(["2024-04-30", "2024-05-01"])) * 2
    north, south = forecast["sales"][:2], forecast["sales"][2:]
    assert north.between(5, 15).all() and south.between(95, 125).all()


def test_a_panel_trains_one_model_and_reports_each_series_and_the_pool(
    tracking_store, tmp_path, capsys
):
    overrides = sales_panel(tmp_path)
    assert main(["run", "co2_forecast", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    assert sorted(row.split()[0] for row in summary_lines(out)[1:]) == [
        "drift",
        "lstm",
        "mean",
        "naive",
        "seasonal_naive",
    ]
    each = out[out.index("Each series of the panel") :].split("\n\n")[0].splitlines()[1:]
    assert each[0].split() == [
        "series",
        "model",
        "gap",
        "mae",
        "rmse",
        "mape",
        "smape",
        "mase",
        "coverage",  # co2_forecast's model forecasts quantiles: its interval, series by series
        "vs_seasonal_naive",
    ]
    baselines = ["naive", "seasonal_naive", "mean", "drift"]
    assert [row.split()[:2] for row in each[1:]] == [
        [series, model] for series in ("north", "south") for model in ("lstm", *baselines)
    ]

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("co2_forecast")
    (child,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'lstm%'")
    metrics = child.data.metrics
    assert {"test_mse/north", "test_mase/south"} <= set(metrics)
    # Means over the backtest's folds; an interval for the pooled metrics only.
    assert "test_mse_ci95" in metrics and not any("/" in key for key in metrics if "ci95" in key)
    history = client.get_metric_history(child.info.run_id, "test_mse/south")
    assert [entry.step for entry in history] == [0, 1, 2]
    assert history[2].value == pytest.approx((history[0].value + history[1].value) / 2)
    # Both series' windows, pooled: the mean of the two series' MSEs (as many windows each).
    assert metrics["test_mse"] == pytest.approx(
        (metrics["test_mse/north"] + metrics["test_mse/south"]) / 2
    )
    figures = {a.path for a in client.list_artifacts(child.info.run_id, "forecast")}
    assert figures == {"forecast/north.png", "forecast/south.png"}

    # The logged model forecasts each series named in a raw table, in its own units
    # (test_a_panel_model_forecasts_in_a_fresh_process: where this package was not imported).
    loaded = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    assert list(loaded.input_example.columns) == ["store", "day", "sales"]
    rows = pd.read_csv(tmp_path / "sales.csv", parse_dates=["day"])
    check_panel_forecast(loaded.predict(rows.groupby("store").tail(10)))

    # `forecast compare` reads the same table back from the runs, and any metric on asking.
    assert main(["compare", "co2_forecast", "--metrics", "rmsse,msis,wql"]) == 0
    compared = capsys.readouterr().out
    compared = compared[compared.index("Each series") :].split("\n\n")[0].splitlines()[1:]
    assert {"rmsse", "msis", "wql"} <= set(compared[0].split())
    assert [row.split()[:2] for row in compared[1:]] == [row.split()[:2] for row in each[1:]]


@pytest.mark.processes
def test_a_panel_model_forecasts_in_a_fresh_process(tracking_store, tmp_path):
    """The panel's logged model, loaded in a process that has not imported this package."""
    import subprocess
    import sys

    name, config = load_experiment("co2_forecast", sales_panel(tmp_path))
    sweep = runner.run_experiment(name, config, log=lambda line: None)
    (run_id,) = sweep.trials["run_id"]
    model_uri = f"runs:/{run_id}/model"
    script = (
        "import sys, mlflow, pandas as pd\n"
        "assert 'forecast' not in sys.modules\n"
        f"rows = pd.read_csv({str(tmp_path / 'sales.csv')!r}, parse_dates=['day'])\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        "forecast = model.predict(rows.groupby('store').tail(10))\n"
        f"forecast.to_csv({str(tmp_path / 'forecast.csv')!r}, index=False)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=240)
    check_panel_forecast(pd.read_csv(tmp_path / "forecast.csv"))
