"""The trial boundary and the sweep's edges: what fails stays in its trial, signals end runs
KILLED, state travels explicitly, and the MLflow UI shows the sweep."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from forecast import progress, runner, tracking
from forecast import trial as trial_module
from forecast.cli import main
from forecast.config import load_experiment
from forecast.data import prepare
from forecast.evaluation import effective_memory
from forecast.mlflow_tracker import MLflowTracker, MLflowTrial
from forecast.plan import plan_trials
from forecast.progress import TrialTiming, eta_seconds, solved_line, trial_line
from forecast.results import sweep_trials
from forecast.tracker import TrialReport
from forecast.trial import Trial
from tests.test_experiment import SERIES_TINY, TINY
from tests.test_remote_tracking import free_port, wait_until_healthy
from tests.test_sweep import runs_in, set_args, wait_for_trials

FORECAST = str(Path(sys.executable).parent / "forecast")


# Each stage before training, and how to tell that its call is for a trial at gap 6.
AT_GAP_6 = {
    "make_folds": lambda config, gap, seed, prepared=None: gap == 6,
    "build_configured": lambda model, input_shape, *_: input_shape[0] == 26,
    "make_gradient_flow": lambda model, *_: model.input_shape[1] == 26,  # 20 + gap steps
}


@pytest.mark.parametrize("stage", ["make_folds", "build_configured", "make_gradient_flow"])
def test_a_failure_before_training_ends_only_its_trial(stage, tmp_path, monkeypatch):
    """Data, model and the first gradient flow fail inside the trial's boundary: the trial
    ends FAILED with the reason, the others run, the sweep finishes. The store is passed
    explicitly and the environment is left as it was."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'explicit.db'}"
    real = getattr(trial_module, stage)

    def fail_at_gap_6(*args, **kwargs):
        if AT_GAP_6[stage](*args, **kwargs):
            raise RuntimeError(f"{stage} broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, stage, fail_at_gap_6)
    trial_module._TRACED.clear()  # each shape's first trial makes its gradient flow
    lstm = "{name: lstm, layer: LSTM, units: 3}"
    name, config = load_experiment("sine_long_gap", [*TINY, f"models=[{lstm}]"])
    lines = []
    sweep = runner.run_experiment(name, config, log=lines.append, tracker=MLflowTracker(uri))
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert sum(f"FAILED: RuntimeError: {stage} broke" in line for line in lines) == 1
    runs = {r.info.run_name: r for r in runs_in(uri)}
    assert runs["sine_long_gap-sweep"].info.status == "FINISHED"
    assert runs["lstm-gap2-seed0"].info.status == "FINISHED"
    failed = runs["lstm-gap6-seed0"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failure_reason"] == f"RuntimeError: {stage} broke"
    assert list(sweep.summary()["test_mse"].isna()) == [False, True]


def test_a_reused_model_trains_as_a_fresh_one_would():
    """Trials of one shape share a traced model; each starts where a fresh model of its seed
    starts (weights, dropout's random state, the optimizer's state), so results match."""
    lstm = "{name: lstm, layer: LSTM, units: 3, options: {dropout: 0.3, recurrent_dropout: 0.2}}"
    overrides = [*TINY, "seeds=[0, 1]", "task.gaps=[6]", f"models=[{lstm}]"]
    first, second = plan_trials(load_experiment("sine_long_gap", overrides)[1])
    trial_module._TRACED.clear()
    seed_0 = trial_module.run_trial(first)
    reused = trial_module.run_trial(second)
    assert reused.model is seed_0.model
    trial_module._TRACED.clear()
    fresh = trial_module.run_trial(second)
    assert fresh.model is not reused.model
    timeless = [
        {k: v for k, v in o.metrics.items() if k != "train_seconds"} for o in (reused, fresh)
    ]
    assert timeless[0] == timeless[1]
    assert reused.history == fresh.history
    for when in ("at init", "trained"):
        np.testing.assert_array_equal(reused.flow[when], fresh.flow[when])


def test_a_trial_of_associative_recall_reports_the_effective_memory_of_its_trained_flow():
    """The recall task runs as a trial (planned, trained on cross-entropy, scored against its
    memoryless baseline), and the trial's effective memory is a lag within its input."""
    lstm = "{name: lstm, layer: LSTM, units: 3}"
    overrides = [
        *TINY,
        "task.name=associative_recall",
        "task.gaps=[2]",
        "task.params={n_pairs: 2, n_keys: 4, n_values: 4}",
        f"models=[{lstm}]",
    ]
    (trial,) = plan_trials(load_experiment("copy_memory", overrides)[1])
    outcome = trial_module.run_trial(trial)
    steps = 2 * 2 + 2 + 2  # the pairs, the gap, the queries
    assert outcome.flow["trained"].shape == (steps,)
    memory = outcome.metrics["effective_memory"]
    assert memory == effective_memory(outcome.flow["trained"])
    assert memory == int(memory) and 0 <= memory <= steps - 1
    assert {"baseline_cross_entropy", "cross_entropy_ratio"} <= set(outcome.metrics)


def interrupted_inside_a_library(real, on_call):
    """``real``, but its ``on_call``-th call is where a SIGTERM lands, and the interrupt comes out
    as a library's own exception, as it can from TensorFlow or MLflow (a handler that catches
    everything and raises its own error)."""
    calls = 0

    def wrapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == on_call:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)  # the handler raises KeyboardInterrupt here, in the main thread
            except KeyboardInterrupt as interrupt:
                raise RuntimeError("a library's own error") from interrupt
            raise AssertionError("the sweep's SIGTERM handler did not interrupt")
        return real(*args, **kwargs)

    return wrapped


# Where the interrupt lands in the second trial (lstm) of two: the function, and which call.
INTERRUPT_POINTS = {
    # Logging an epoch's losses to MLflow, inside training: the second trial's first epoch of 2.
    "training": (MLflowTrial, "log_epoch", 3),
    "evaluation": (trial_module, "_test_metrics", 2),
    "model logging": (tracking, "log_model", 2),
}


@pytest.mark.parametrize("point", INTERRUPT_POINTS)
def test_an_interrupt_that_comes_out_of_a_library_as_another_error_still_ends_killed(
    point, tracking_store, monkeypatch
):
    """Whatever exception the interrupt comes out as, once the sweep is stopped its running
    trial and the sweep end KILLED, never FAILED, and the same command resumes the sweep."""
    module, function, on_call = INTERRUPT_POINTS[point]
    real = getattr(module, function)
    monkeypatch.setattr(module, function, interrupted_inside_a_library(real, on_call))
    overrides = [*TINY, "task.gaps=[2]", "log_models=true"]
    name, config = load_experiment("sine_long_gap", overrides)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lambda line: None)
    statuses = {r.info.run_name: r.info.status for r in runs_in(tracking_store)}
    assert statuses == {
        "sine_long_gap-sweep": "KILLED",
        "rnn-gap2-seed0": "FINISHED",
        "lstm-gap2-seed0": "KILLED",
    }
    assert not any("failure_reason" in r.data.tags for r in runs_in(tracking_store))

    monkeypatch.setattr(module, function, real)
    lines = []
    sweep = runner.run_experiment(name, config, log=lines.append)
    assert any("(resuming run " in line and ": 1 finished)" in line for line in lines)
    assert list(sweep.summary()["model"]) == ["rnn", "lstm"]
    runs = runs_in(tracking_store)
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["FINISHED"]
    assert sorted(r.info.status for r in runs if r.info.run_name == "lstm-gap2-seed0") == [
        "FINISHED",
        "KILLED",
    ]


@pytest.mark.processes
def test_sigterm_ends_the_sweep_killed_and_a_rerun_resumes_it(tracking_store, tmp_path, capsys):
    slow = [*TINY, "task.gaps=[2]", "train.epochs=40"]  # 2 trials of a few seconds each
    command = [FORECAST, "run", "sine_long_gap", *set_args(slow)]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # Wait until one trial has finished and the next is running, then stop it as `kill` does.
    wait_for_trials(tracking_store, process, lambda s: "FINISHED" in s and "RUNNING" in s)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    runs = runs_in(tracking_store)
    statuses = {r.info.run_name: r.info.status for r in runs}
    assert "RUNNING" not in statuses.values(), statuses
    assert statuses["sine_long_gap-sweep"] == "KILLED"
    assert "KILLED" in [s for name, s in statuses.items() if name != "sine_long_gap-sweep"]

    assert main(command[1:]) == 0  # the rerun, in this process: the same command
    rerun = capsys.readouterr().out
    finished = sum(status == "FINISHED" for status in statuses.values())
    assert "(resuming run " in rerun and f": {finished} finished)" in rerun
    parents = [r for r in runs_in(tracking_store) if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.status for p in parents] == ["FINISHED"]


@pytest.mark.processes
def test_sigterm_stops_worker_processes_and_ends_their_runs_killed(tracking_store, tmp_path):
    import psutil

    slow = [*TINY, "train.epochs=40"]
    command = [FORECAST, "run", "sine_long_gap", *set_args(slow), "--workers", "2"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_for_trials(tracking_store, process, lambda statuses: "RUNNING" in statuses)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers
    process.send_signal(signal.SIGTERM)  # to the sweep's process only, as `kill PID` does
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    statuses = {r.info.run_name: r.info.status for r in runs_in(tracking_store)}
    assert "RUNNING" not in statuses.values() and "FAILED" not in statuses.values(), statuses
    assert statuses["sine_long_gap-sweep"] == "KILLED"
    assert "KILLED" in [s for name, s in statuses.items() if name != "sine_long_gap-sweep"]


@pytest.mark.processes
@pytest.mark.parametrize("where", [["--workers", "2"], ["--backend", "ray"]], ids=" ".join)
def test_ctrl_c_stops_trials_elsewhere_and_ends_their_runs_killed(where, tracking_store, tmp_path):
    """Ctrl-C at a terminal reaches the sweep's whole process group; the sweep's process stops
    the trials running elsewhere, and each ends KILLED, none FAILED."""
    if "ray" in where:
        pytest.importorskip("ray")
    slow = [*TINY, "train.epochs=40"]
    command = [FORECAST, "run", "sine_long_gap", *set_args(slow), *where]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job has
    )
    wait_for_trials(tracking_store, process, lambda statuses: "RUNNING" in statuses, 240)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    statuses = {r.info.run_name: r.info.status for r in runs_in(tracking_store)}
    assert "RUNNING" not in statuses.values() and "FAILED" not in statuses.values(), statuses
    assert statuses["sine_long_gap-sweep"] == "KILLED"
    assert "KILLED" in [s for name, s in statuses.items() if name != "sine_long_gap-sweep"]


def test_a_series_sweep_scores_each_point_against_its_own_naive_forecasts(
    tracking_store, capsys, monkeypatch
):
    shaded = []
    real_gates = trial_module.plots.gates

    def record_gates(activations, memory_steps=0, **kwargs):
        shaded.append(memory_steps)
        return real_gates(activations, memory_steps, **kwargs)

    monkeypatch.setattr(trial_module.plots, "gates", record_gates)
    overrides = [*SERIES_TINY, "sweep={grid: {data.horizon: [1, 3]}}"]
    assert main(["run", "co2_forecast", *set_args(overrides)]) == 0
    out = capsys.readouterr().out
    # Before the first trial's line, each step of the set-up as it starts (and, on a machine
    # slow enough, how far the sweep is while its first trial runs).
    setup = [line for line in out.split("\n[1/")[0].splitlines() if "trials done" not in line]
    assert setup == [
        "co2_forecast: loading TensorFlow and MLflow",
        "co2_forecast: checking sweep point 1/2 (data.horizon=1): its data and models",
        "co2_forecast: checking sweep point 2/2 (data.horizon=3): its data and models",
        f"co2_forecast: opening MLflow at {tracking_store}",
        f"co2_forecast: 4 trials on 1 process -> MLflow at {tracking_store}",
    ]
    # A series' trial shows its forecasting errors, not a task's ratio to the mean.
    trial_lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(trial_lines) == 4
    assert all(": test MAE " in line and "ratio" not in line for line in trial_lines)
    table = out.split("\n\n")[1].splitlines()
    rows = [line.strip() for line in table]
    names = ("naive", "seasonal_naive", "mean", "drift")
    naive = {line.split("]")[0] + "]": line for line in rows if line.startswith(names)}
    assert set(naive) == {
        f"{name} [data.horizon={horizon}]" for name in names for horizon in (1, 3)
    }
    # Different windows, different naive errors: each point has its own.
    mae = {key: float(line.split("]")[1].split()[0]) for key, line in naive.items()}
    assert mae["naive [data.horizon=1]"] < mae["naive [data.horizon=3]"]
    # A series' gap lies after its input window: nothing inside the input is shaded as gap.
    assert shaded == [0, 0]


def test_every_sweep_point_of_a_series_is_checked_before_any_run(tracking_store, capsys):
    overrides = [*SERIES_TINY, "sweep={grid: {data.input_width: [8, 5000]}}"]
    assert main(["run", "co2_forecast", *set_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forecast: error: sweep point data.input_width=5000: train part")
    assert err.count("\n") == 1
    assert runs_in(tracking_store, "co2_forecast") == []


def test_system_metrics_are_sampled_onto_the_sweep_run(tracking_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    tiny = [*TINY, "task.gaps=[2]"]  # two trials: a few seconds of samples
    assert main(["run", "sine_long_gap", *set_args(tiny), "--system-metrics"]) == 0
    (parent,) = [r for r in runs_in(tracking_store) if "mlflow.parentRunId" not in r.data.tags]
    assert "system/cpu_utilization_percentage" in parent.data.metrics


def _fake_sweep(uri):
    """A finished sweep written straight to the store, as `forecast run` leaves one."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("fake")
    parent = client.create_run(experiment_id, tags={"forecast.experiment": "fake"})
    config = {"task": {"name": "sine_long_gap", "gaps": [10]}, "seeds": [0]}
    client.log_dict(parent.info.run_id, config, "config.yaml")
    for model, mse in (("rnn", 0.5), ("lstm", 0.01)):
        child = client.create_run(
            experiment_id,
            tags={"mlflow.parentRunId": parent.info.run_id, "forecast.trial_hash": model},
        )
        for key, value in {"model": model, "gap": 10, "seed": 0, "parameters": 7}.items():
            client.log_param(child.info.run_id, key, value)
        for key, value in {"test_mse": mse, "test_rmse": mse**0.5, "mse_ratio": mse}.items():
            client.log_metric(child.info.run_id, key, value)
        client.log_metric(child.info.run_id, "solved", float(mse < 0.1))
        client.log_metric(child.info.run_id, "train_seconds", 1.0)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return experiment_id, parent.info.run_id


@pytest.mark.processes
def test_compare_reads_every_logged_metric_without_tensorflow(tracking_store):
    uri = tracking_store
    _, run_id = _fake_sweep(uri)
    script = (
        "import sys\n"
        "from forecast.cli import main\n"
        "code = main(['compare', 'fake', '--format', 'csv'])\n"
        "assert 'tensorflow' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("model,gap,seeds,test_mse,mse_ratio")
    assert result.stderr == ""
    # The read side takes every metric a trial logged, not a hand-kept list.
    assert "test_rmse" in sweep_trials(uri, run_id)


@pytest.mark.processes
@pytest.mark.parametrize(
    "stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda stop: stop.name
)
def test_forecast_ui_serves_the_local_store_and_a_signal_stops_all_of_it(stop, tracking_store):
    """`forecast ui` prints the runs' address and serves them; a signal to it alone (`kill`, a
    closed terminal, Ctrl-C) ends it and every process of its `mlflow ui` server, whose port
    closes."""
    import psutil

    uri = tracking_store
    experiment_id, run_id = _fake_sweep(uri)
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    ui = subprocess.Popen(
        [FORECAST, "ui", "fake", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # As a terminal starts it, even where these tests run under `nohup` (which ignores
        # SIGHUP, and `forecast ui` then leaves it ignored).
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    server: list[psutil.Process] = []
    try:
        first = ui.stdout.readline()
        assert first.strip() == (
            f"runs of fake: http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning"
        )
        assert ui.stdout.readline().startswith("its latest sweep, ranked: http://127.0.0.1:")
        assert "/#/compare-runs?runs=%5B%22" in ui.stdout.readline()
        assert wait_until_healthy(f"http://127.0.0.1:{port}", ui, seconds=120)
        server = psutil.Process(ui.pid).children(recursive=True)  # mlflow ui and uvicorn
        assert server

        ui.send_signal(stop)
        assert ui.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(server, timeout=60)
        assert alive == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        ui.stdout.close()
        if ui.poll() is None:
            ui.kill()
        for process in server:  # what a failed stop left
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        ui.wait(timeout=30)


def test_a_backtest_whose_every_trial_fails_still_finishes_its_sweep(tracking_store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("training broke")

    monkeypatch.setattr(trial_module, "train", broken)
    name, config = load_experiment("co2_forecast", [*SERIES_TINY, "data.backtest.folds=2"])
    sweep = runner.run_experiment(
        name, config, log=lambda line: None, tracker=MLflowTracker(tracking_store)
    )
    assert not len(sweep.paired())  # no finished trial, nothing to pair
    statuses = {r.info.run_name: r.info.status for r in runs_in(tracking_store, name)}
    assert statuses["co2_forecast-sweep"] == "FINISHED"
    assert {s for run, s in statuses.items() if run != "co2_forecast-sweep"} == {"FAILED"}


def test_the_eta_has_no_basis_until_a_process_runs_its_second_trial():
    """A process's first trial pays its one-off costs (here 40 s against 5 s); the ETA waits
    for a later trial and then goes by the trials' own durations, shared by the processes."""
    firsts = [TrialTiming(100, 40.0, True), TrialTiming(100, 40.0, True)]
    assert eta_seconds(firsts, [100, 100, 100], processes=2) is None
    steady = [*firsts, TrialTiming(100, 5.0, False), TrialTiming(300, 15.0, False)]
    # 0.05 s a unit of work: 300 units shared by 2 processes.
    assert eta_seconds(steady, [100, 100, 100], processes=2) == pytest.approx(7.5)
    assert eta_seconds(steady, [100, 100, 100], processes=1) == pytest.approx(15.0)
    # No sooner than the longest remaining trial alone, however many processes.
    assert eta_seconds(steady, [1000, 10], processes=4) == pytest.approx(50.0)
    assert eta_seconds(steady, [], processes=2) == 0.0
    # Extrapolating the wall time from the first trials would have said 40 s a trial: 60 s.
    assert eta_seconds(steady, [100, 100, 100], processes=2) < 60 / 4


def test_a_trial_line_shows_the_errors_of_its_kind_and_an_eta_only_with_a_basis():
    task = {"test_mse": 0.0123, "mse_ratio": 0.0456, "train_seconds": 3.21}
    series = {"test_mae": 0.51, "test_mase": 0.4, "test_mse": 0.3, "mse_ratio": 0.0}
    classes = {"test_cross_entropy": 0.7, "cross_entropy_ratio": 0.9, "train_seconds": 1}

    def line(row, eta=12.3, last=False, ratio="mse_ratio"):
        return trial_line("[2/5] a", TrialReport(row, {}, "id"), 40.4, eta, last, ratio)

    assert line(task) == "[2/5] a: test MSE 0.0123, ratio 0.046, 3.2s (elapsed 40s, ETA 12s)"
    series_line = line({**series, "train_seconds": 2.0}, ratio="test_mase")
    assert series_line.startswith("[2/5] a: test MAE 0.51, MASE 0.400")
    classes_line = line(classes, ratio="cross_entropy_ratio")
    assert classes_line.startswith("[2/5] a: test cross-entropy 0.7, ratio 0.900, 1.0s")
    assert line(task, eta=None).endswith("(elapsed 40s, ETA after the first trials)")
    assert line(task, last=True).endswith("3.2s (elapsed 40s)")
    failed = TrialReport({}, {}, "id", failure="RuntimeError: broke")
    assert trial_line("[2/5] a", failed, 40.4, None) == "[2/5] a: FAILED: RuntimeError: broke"


def test_a_model_that_solved_no_gap_says_none():
    assert solved_line({"rnn": -1, "lstm": 400}) == "largest solved gap: rnn none, lstm 400"


def test_a_series_with_fitted_baselines_says_its_first_trials_fit_them():
    _, config = load_experiment("co2_forecast", [*SERIES_TINY, "data.baselines=[ets, theta]"])
    trials = [Trial(config, model, 0, 0) for model in config.models]
    assert progress.first_trial_note(trials) == (
        "the first trial in each process also fits ets, theta on the series, which can take "
        "minutes; the trials after it reuse those forecasts"
    )
    _, config = load_experiment("co2_forecast", SERIES_TINY)  # naive forecasts only
    assert progress.first_trial_note([Trial(config, config.models[0], 0, 0)]) is None


def test_a_sweep_silent_for_a_while_says_how_far_it_is():
    said, lines = threading.Event(), []

    def status():
        said.set()
        return "0/2 trials done"

    with progress.heartbeat(lines.append, status, every=0.05) as log:
        assert said.wait(timeout=60)
        log("[1/2] a trial's line")
    count = len(lines)
    assert "0/2 trials done" in lines and "[1/2] a trial's line" in lines
    said.clear()
    assert not said.wait(timeout=0.2) and len(lines) == count  # silent once the sweep ends


def test_a_series_is_read_and_split_once_per_sweep(tracking_store, monkeypatch):
    """The plan prepares a series' folds once; every trial of its data section uses them."""
    reads = []
    real = prepare.load_series

    def counted(*args, **kwargs):
        reads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, "load_series", counted)
    assert main(["run", "co2_forecast", *set_args(SERIES_TINY)]) == 0
    runs = runs_in(tracking_store, "co2_forecast")
    trials = [run for run in runs if run.data.tags.get("forecast.role") == "network"]
    assert len(trials) == 2 and {run.info.status for run in trials} == {"FINISHED"}
    assert reads == ["co2"]
