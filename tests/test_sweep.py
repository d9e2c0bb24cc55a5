"""Sweeps: grid points, worker processes, Ray tasks, resume, and their bad input (Optuna's
searches: test_search.py)."""

import contextlib
import time

import keras
import mlflow
import pytest
from mlflow import MlflowClient

from forecast import execution, grid, parallel, runner
from forecast import trial as trial_module
from forecast.cli import main
from forecast.config import ConfigError, load_experiment
from forecast.plan import plan_trials
from forecast.results import sweep_trials
from forecast.sweep import sweep_points
from forecast.tracker import MemoryTracker

SMALL = [
    "seeds=[0]",
    "log_models=false",
    "task.gaps=[3]",
    "task.n_train=64",
    "task.n_val=16",
    "task.n_test=32",
    "models.0.units=3",
    "models.1.units=3",
    "train.epochs=1",
    "train.batch_size=32",
]
# Two points; sgd at a learning rate of 1e30 without clipping diverges: a trial that fails.
DIVERGING_GRID = [
    "train.optimizer=sgd",
    "train.clipnorm=null",
    "sweep={grid: {train.learning_rate: [0.01, 1.0e30]}}",
]


def set_args(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def runs_in(store, experiment="sine_long_gap"):
    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def wait_for_trials(store, process, ready, seconds=180):
    """Poll ``store`` until ``ready`` holds of its trial runs' statuses (a sorted list), while
    the sweep's ``process`` runs; fail with its output if it ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        statuses = sorted(
            r.info.status for r in runs_in(store) if r.data.tags.get("mlflow.parentRunId")
        )
        if ready(statuses):
            return
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.2)


def test_grid_points_resolve_every_key():
    grid = "{models.0.units: [2, 4], train.learning_rate: [0.001, 1]}"
    _, config = load_experiment("sine_long_gap", [*SMALL, f"sweep={{grid: {grid}}}"])
    points = sweep_points(config)
    assert [p.models[0].units for _, p in points] == [2, 2, 4, 4]
    assert [p.train.learning_rate for _, p in points] == [0.001, 1.0, 0.001, 1.0]
    overrides, point = points[1]
    assert overrides == {"models.0.units": 2, "train.learning_rate": 1.0}  # as the config reads
    assert point.sweep is None and point.models[1].units == 3


@pytest.mark.parametrize(
    "sweep, message",
    [
        ("sweep={grid: {train.lr: [1, 2]}}", "sweep train.lr: unknown config key 'train.lr'"),
        ("sweep={grid: {models.5.units: [1]}}", "no item '5' in a list of 2"),
        ("sweep={grid: {}}", "sweep.grid: empty; list the values to try under their keys"),
        ("sweep={grid: {train.epochs: []}}", "sweep.grid.train.epochs: expected a non-empty"),
        ("sweep={grid: {train.epochs: [0]}}", "train.epochs: must be positive, got 0"),
    ],
)
def test_a_bad_sweep_fails_in_one_line_before_any_run(tracking_store, capsys, sweep, message):
    assert main(["run", "sine_long_gap", *set_args([*SMALL, sweep])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    with pytest.raises(ConfigError):
        plan_trials(load_experiment("sine_long_gap", [sweep])[1])
    assert runs_in(tracking_store) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers: must be a number from 1 up, or auto; got 0"),
        (
            ["--backend", "ray", "--ray-address", "127.0.0.1:9"],
            "Ray cluster at 127.0.0.1:9 is not reachable",
        ),
        (["--backend", "ray", "--ray-address", "nowhere"], "--ray-address: expected HOST:PORT"),
    ],
)
def test_bad_backend_settings_fail_in_one_line_before_any_run(
    tracking_store, capsys, args, message
):
    assert main(["run", "sine_long_gap", *set_args(SMALL), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert runs_in(tracking_store) == []


def test_workers_is_a_number_or_auto(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", "sine_long_gap", "--workers", "many"])
    assert exit.value.code == 2
    assert "argument --workers: expected a number or auto, got 'many'" in capsys.readouterr().err


def test_auto_workers_fit_the_cores_the_trials_and_the_memory():
    gigabytes = 10**9
    assert parallel.auto_workers(36, cores=2, available=16 * gigabytes) == 2
    assert parallel.auto_workers(1, cores=2, available=16 * gigabytes) == 1
    assert parallel.auto_workers(36, cores=16, available=3 * gigabytes) == 2
    assert parallel.auto_workers(36, cores=1, available=16 * gigabytes) == 1
    assert parallel.auto_workers(36, cores=4, available=0) == 1


@pytest.mark.processes
def test_two_workers_run_the_sweep_and_a_failing_trial_does_not_stop_it(
    tracking_store, capsys, tmp_path, monkeypatch
):
    overrides = [*SMALL, *DIVERGING_GRID]
    monkeypatch.setattr(parallel, "cpu_count", lambda: 2)  # auto: 2 cores, 4 trials -> 2
    assert main(["run", "sine_long_gap", *set_args(overrides), "--workers", "auto"]) == 0
    out = capsys.readouterr().out
    assert "4 trials on 2 workers" in out
    runs = runs_in(tracking_store)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    status = {(r.data.params["model"], r.data.params["sweep_point"]): r for r in children}
    assert len(status) == 4
    for model in ("rnn", "lstm"):
        good = status[(model, "train.learning_rate=0.01")]
        bad = status[(model, "train.learning_rate=1e+30")]
        assert good.info.status == "FINISHED" and "train_loss" in good.data.metrics
        assert bad.info.status == "FAILED" and "loss became" in bad.data.tags["failure_reason"]
    # The same trials in this process give the same numbers (thread counts differ: round-off).
    name, config = load_experiment("sine_long_gap", overrides)
    trial = next(t for t in plan_trials(config) if t.point.endswith("0.01"))
    with MemoryTracker().sweep(name, config, {}, "", None) as sweep:
        local = execution.execute_trial(trial, execution.TrialContext(sweep, str(tmp_path)))
    worker = status[(trial.model.name, trial.point)].data.metrics
    assert local.row["test_mse"] == pytest.approx(worker["test_mse"], rel=1e-3)


def test_an_interrupted_sweep_resumes_where_it_stopped(tracking_store, monkeypatch):
    overrides = [*SMALL, "sweep={grid: {models.0.units: [2, 3]}}"]
    name, config = load_experiment("sine_long_gap", overrides)
    real_train = trial_module.train
    trained = []

    def train_then_interrupt(model, *args, **kwargs):
        if len(trained) == 3:
            raise KeyboardInterrupt
        trained.append(model.name)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lambda line: None)
    (parent,) = [r for r in runs_in(tracking_store) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"

    trained.clear()
    monkeypatch.setattr(trial_module, "train", lambda model, *a, **k: real_train(model, *a, **k))
    flow_labels = []
    real_figure = grid.plots.gradient_flow

    def record_flows(curves, title=""):
        if title.startswith("Gradient flow at gap"):  # the sweep's figure, not a trial's
            flow_labels.extend(curves)
        return real_figure(curves, title)

    monkeypatch.setattr(grid.plots, "gradient_flow", record_flows)
    lines = []
    summary = runner.run_experiment(name, config, log=lines.append).summary()
    # After the set-up's lines: the sweep's, then its trials'.
    sweep_line = next(index for index, line in enumerate(lines) if " trials on " in line)
    assert f"resuming run {parent.info.run_id}: 3 finished" in lines[sweep_line]
    assert "[1/1]" in lines[sweep_line + 1]  # only the trial the interruption stopped runs again
    assert len(summary) == 4 and summary["test_mse"].notna().all()
    # The trials finished before the interruption bring every metric and their gradient flows.
    trials_csv = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/trials.csv")
    assert "test_rmse" in trials_csv.splitlines()[0] and ",," not in trials_csv
    assert len(flow_labels) == 8  # 4 trials, "at init" and "trained"
    runs = runs_in(tracking_store)
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [
        parent.info.run_id
    ]
    assert mlflow.get_run(parent.info.run_id).info.status == "FINISHED"
    table = sweep_trials(tracking_store, parent.info.run_id)
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert len(sweep_trials(tracking_store, parent.info.run_id, latest_only=False)) == 5

    # Once finished, the same command starts a new sweep rather than skipping everything:
    # its sweep line says so before the first trial trains (stopped there, to save the time).
    lines.clear()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_module, "train", interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lines.append)
    assert any(" trials on " in line for line in lines)
    assert not any("resuming" in line for line in lines)


def test_a_trials_backup_resumes_only_under_the_sweep_that_wrote_it(tracking_store, monkeypatch):
    overrides = [*SMALL, "train.epochs=3", "models=[{name: lstm, layer: LSTM, units: 3}]"]
    name, config = load_experiment("sine_long_gap", overrides)
    real_train = trial_module.train
    begun = []

    class InterruptAfterTheFirstEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            begun.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # after the epoch's backup: the safety callbacks run first

    def interrupted(model, splits, config, seed, callbacks, *args, **kwargs):
        callbacks = [*callbacks, InterruptAfterTheFirstEpoch()]
        return real_train(model, splits, config, seed, callbacks, *args, **kwargs)

    def recorded(model, splits, config, seed, callbacks, *args, **kwargs):
        callbacks = [
            *callbacks,
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: begun.append(epoch)),
        ]
        return real_train(model, splits, config, seed, callbacks, *args, **kwargs)

    def run(train) -> str:
        """The sweep with ``train`` in place of ours; returns its parent run's id."""
        begun.clear()
        monkeypatch.setattr(trial_module, "train", train)
        with contextlib.suppress(KeyboardInterrupt):
            runner.run_experiment(name, config, log=lambda line: None)
        return next(r for r in runs_in(tracking_store) if "mlflow.parentRunId" not in r.data.tags)

    killed = run(interrupted)
    assert run(recorded).info.run_id == killed.info.run_id  # resumed, from the backup:
    assert begun == [1, 2]
    # Interrupted again (a new sweep, the last one finished), and that sweep deleted: the next
    # one is new, and the backup left behind is not its own.
    killed = run(interrupted)
    MlflowClient(tracking_store).delete_run(killed.info.run_id)
    assert run(recorded).info.run_id != killed.info.run_id
    assert begun == [0, 1, 2]


@pytest.mark.processes
def test_ray_backend_runs_the_sweep_on_a_local_ray(tracking_store, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with monkeypatch.context() as patch:  # a cluster of two nodes cannot reach mlflow.db
            patch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
            assert main(["run", "sine_long_gap", *set_args(SMALL), "--backend", "ray"]) == 2
            err = capsys.readouterr().err
            assert "the cluster has 2 nodes, but MLflow logs to sqlite:" in err
            # Ray's own logging shares stderr (its start-up lines, and a complaint when its
            # handler still holds an earlier test's captured stream), so look at our lines.
            ours = [line for line in err.splitlines() if line.startswith("forecast:")]
            assert len(ours) == 1 and ours[0].startswith("forecast: error: --backend ray")
            assert runs_in(tracking_store) == []
        assert main(["run", "sine_long_gap", *set_args(SMALL), "--backend", "ray"]) == 0
    finally:
        ray.shutdown()
    assert "2 trials on Ray" in capsys.readouterr().out
    runs = runs_in(tracking_store)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert set(children) == {"rnn-gap3-seed0", "lstm-gap3-seed0"}
    for child in children.values():
        assert child.info.status == "FINISHED", child.data.tags.get("failure_reason")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.metrics["test_mse"] > 0


def test_a_sweep_trains_under_a_mirrored_strategy(tracking_store, capsys):
    overrides = [*SMALL, "train.strategy=mirrored", "log_models=true"]
    assert main(["run", "sine_long_gap", *set_args(overrides)]) == 0
    children = [r for r in runs_in(tracking_store) if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.status for r in children} == {"FINISHED"} and len(children) == 2
    assert all(r.data.metrics["test_mse"] > 0 for r in children)
