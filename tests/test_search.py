"""Optuna searches (``sweep.search: optuna``): the space, samplers and pruners, pruned trials
in MLflow, the study beside the store, resuming, and their bad input."""

import dataclasses
import math
import os
import signal
import subprocess
import sys

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import forecast
from forecast import runner, search
from forecast import trial as trial_module
from forecast.cli import main
from forecast.config import ConfigError, load_experiment
from forecast.plan import plan_trials
from forecast.results import sweep_trials
from forecast.sweep import Dimension, probe_overrides, search_space, sweep_points
from forecast.training import GiveUp
from tests.test_sweep import SMALL as SWEEP_SMALL
from tests.test_sweep import runs_in, wait_for_trials

FORECAST = os.path.join(os.path.dirname(sys.executable), "forecast")
# test_sweep's small task, with one model (a search trains one) and no give-up rule (which
# would be the search's pruner).
SMALL = [
    *SWEEP_SMALL,
    "models=[{name: lstm, layer: LSTM, units: 3}]",
    "train.epochs=3",
    "train.give_up_epoch=null",
]
SPACE = (
    "{train.learning_rate: {loguniform: [0.001, 0.1]}, models.0.units: {randint: [2, 9], step: 2}}"
)


def search_args(*settings: str, space: str = SPACE) -> list[str]:
    sweep = ", ".join(["search: optuna", *settings, f"space: {space}"])
    return [arg for override in [*SMALL, f"sweep={{{sweep}}}"] for arg in ("--set", override)]


def parent_and_children(store):
    return parent_and_children_of(store, "sine_long_gap")


def parent_and_children_of(store, experiment):
    runs = runs_in(store, experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if r is not parent]


def study_of(store, parent):
    storage = f"sqlite:///{store.removeprefix('sqlite:///').rsplit('/', 1)[0]}/optuna.db"
    assert parent.data.params["study_storage"] == storage  # beside mlflow.db
    return optuna.load_study(study_name=parent.data.params["study"], storage=storage)


def test_a_resumed_study_takes_what_the_record_finished_and_retries_the_rest():
    """A process killed after its trial's run ended but before it told the study leaves the
    trial RUNNING there: a resume tells the study what the run recorded, and retries only the
    trials that were really stopped."""
    study = optuna.create_study(storage="sqlite:///:memory:")
    told, recorded_only, stopped = study.ask(), study.ask(), study.ask()
    study.tell(told, 0.3)
    searched = search.resume(study, {recorded_only.number: ("complete", 0.5)})
    trials = study.get_trials(deepcopy=False)
    assert trials[recorded_only.number].state == TrialState.COMPLETE
    assert trials[recorded_only.number].value == 0.5
    assert trials[stopped.number].state == TrialState.FAIL
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.user_attrs["retries"] for t in retries] == [stopped.number]
    assert searched == 2  # told and recorded; the stopped one is asked again


def test_a_space_reads_optunas_step_and_log_and_its_probes_span_it():
    space = (
        "{train.learning_rate: {uniform: [0.001, 0.01], log: true}, models.0.units: "
        "{randint: [8, 70], step: 8}, train.clipnorm: {uniform: [0.5, 2.0], step: 0.4}, "
        "train.optimizer: {choice: [adam, rmsprop, sgd]}}"
    )
    _, config = load_experiment(
        "sine_long_gap", [*SMALL, f"sweep={{search: optuna, space: {space}}}"]
    )
    dimensions = search_space(config)
    assert dimensions["train.learning_rate"] == Dimension("uniform", [0.001, 0.01], None, True)
    assert dimensions["models.0.units"].highest == 64  # 8 + 7 steps of 8, below 70
    assert dimensions["train.clipnorm"].highest == pytest.approx(1.7)
    probes = probe_overrides(dimensions)
    assert probes[0] == {}
    assert [p["models.0.units"] for p in probes[1:3]] == [8, 64]
    assert [p["train.optimizer"] for p in probes[1:]] == ["adam", "sgd", "rmsprop"]
    # The plan checks every probe, but plans one trial: the template each search trial samples.
    (trial,) = plan_trials(config)
    assert trial.point == "" and trial.model.units == 3
    assert len(sweep_points(config)) == 4


def test_samples_follow_the_space_and_the_seed():
    _, config = load_experiment(
        "sine_long_gap",
        [
            *SMALL,
            "sweep={search: optuna, space: "
            f"{SPACE[:-1]}, train.optimizer: {{choice: [adam, sgd]}}}}}}",
        ],
    )
    dimensions = search_space(config)

    def draw(seed):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [search.sample(study.ask(), dimensions) for _ in range(20)]

    drawn = draw(0)
    assert drawn == draw(0) and drawn != draw(1)
    assert all(0.001 <= d["train.learning_rate"] <= 0.1 for d in drawn)
    assert {d["models.0.units"] for d in drawn} <= {2, 4, 6, 8}
    assert {d["train.optimizer"] for d in drawn} == {"adam", "sgd"}
    settings = search.search_settings(config, "sqlite:////somewhere/mlflow.db")
    assert settings.storage == "sqlite:////somewhere/optuna.db"
    assert (settings.sampler, settings.pruner, settings.direction) == ("tpe", "median", "minimize")
    seeds = {search.trial_seed(settings, slot) for slot in range(10)}
    assert len(seeds) == 10  # every trial its own sampler seed


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_each_sampler_searches_the_space_in_a_study_on_disk(tmp_path, sampler):
    _, config = load_experiment(
        "sine_long_gap", [*SMALL, f"sweep={{search: optuna, sampler: {sampler}, space: {SPACE}}}"]
    )
    settings = search.search_settings(config, f"sqlite:///{tmp_path}/mlflow.db")
    settings = dataclasses.replace(settings, study_name="a-study")
    for slot in range(14):  # past TPE's and CMA-ES's random start-up trials
        study = search.open_study(settings, search.trial_seed(settings, slot))
        trial = study.ask()
        drawn = search.sample(trial, settings.space)
        assert 0.001 <= drawn["train.learning_rate"] <= 0.1
        assert drawn["models.0.units"] in (2, 4, 6, 8)
        study.tell(trial, abs(math.log(drawn["train.learning_rate"] / 0.01)))
    study = optuna.load_study(study_name="a-study", storage=settings.storage)
    assert len(study.trials) == 14 and study.best_value < 1.0


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband", "give_up", "none"])
def test_each_pruner_stops_trials_that_lag_and_none_stops_none(tmp_path, pruner):
    overrides = [*SMALL, "train.epochs=8", "train.give_up_epoch=2", "train.give_up_ratio=0.9"]
    sweep = f"sweep={{search: optuna, pruner: {pruner}, sampler: random, space: {SPACE}}}"
    _, config = load_experiment("sine_long_gap", [*overrides, sweep])
    settings = search.search_settings(config, f"sqlite:///{tmp_path}/mlflow.db")
    study = search.open_study(dataclasses.replace(settings, study_name="pruned"))
    stopped = []
    for number in range(12):  # learning curves: the odd trials stay on the plateau
        trial, plateau = study.ask(), number % 2 == 1
        prune = search.reporting_pruner(trial, "val_ratio")
        for epoch in range(8):
            ratio = 1.0 if plateau else 0.5 / (epoch + 1)
            if prune(epoch, {"val_ratio": ratio}):
                stopped.append((number, epoch))
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, ratio)
    if pruner == "none":
        assert stopped == []
    else:
        assert stopped and all(number % 2 == 1 for number, _ in stopped)  # only the plateaus
    if pruner == "give_up":
        assert {epoch for _, epoch in stopped} == {1}  # after epoch 2, counted from 1


def test_the_give_up_pruner_is_the_give_up_rule():
    rule = GiveUp(epoch=3, ratio=0.9)
    study = optuna.create_study(pruner=search.GiveUpPruner(rule))
    for reports, pruned_at in (([1.0, 0.95, 0.92, 0.5], 2), ([1.0, 0.85, 0.95, 0.97], None)):
        trial = study.ask()
        stopped = None
        training_rule = GiveUp(epoch=3, ratio=0.9)
        for epoch, ratio in enumerate(reports):
            trial.report(ratio, step=epoch)
            pruned = trial.should_prune()
            assert pruned == training_rule(epoch, {"val_ratio": ratio})  # the same decision
            if pruned:
                stopped = epoch
                break
        assert stopped == pruned_at


@pytest.mark.parametrize(
    "sweep, message",
    [
        (
            "{samples: 4, space: {train.epochs: {randint: [1, 3]}}}",
            "sweep.samples: the random search is Optuna's now; set sweep.search: optuna, "
            "sweep.sampler: random and sweep.n_trials instead",
        ),
        ("{space: {train.epochs: {randint: [1, 3]}}}", "set sweep.search: optuna to search it"),
        ("{search: bayes, grid: {train.epochs: [1]}}", "sweep.search: must be grid or optuna"),
        (f"{{search: optuna, grid: {{train.epochs: [1]}}, space: {SPACE}}}", "as {choice: [...]}"),
        ("{search: optuna}", "sweep.space: empty"),
        (f"{{search: optuna, n_trials: 0, space: {SPACE}}}", "sweep.n_trials: must be positive"),
        (f"{{search: optuna, sampler: grid, space: {SPACE}}}", "sweep.sampler: must be one of"),
        (f"{{search: optuna, pruner: asha, space: {SPACE}}}", "sweep.pruner: must be one of"),
        (f"{{search: optuna, pruner: give_up, space: {SPACE}}}", "train.give_up_epoch, which"),
        (f"{{search: optuna, metric: test_mse, space: {SPACE}}}", "sweep.metric: must be one of"),
        (
            "{search: optuna, sampler: cmaes, space: {train.optimizer: {choice: [adam, sgd]}}}",
            "sweep.space.train.optimizer: cmaes samples numbers only",
        ),
        (
            "{search: optuna, space: {train.lr: {uniform: [0.1, 1.0]}}}",
            "unknown config key 'train.lr'",
        ),
        (
            "{search: optuna, space: {train.epochs: {randint: [1, 5], log: true, step: 2}}}",
            "sweep.space.train.epochs: Optuna takes a step or a log scale, not both",
        ),
        (
            "{search: optuna, space: {train.epochs: {randint: [1.5, 5]}}}",
            "sweep.space.train.epochs: bad randint range [1.5, 5]",
        ),
        (
            "{search: optuna, space: {train.clipnorm: {normal: [1, 2]}}}",
            "sweep.space.train.clipnorm: expected one of uniform, loguniform, randint, choice",
        ),
        (
            "{search: optuna, space: {train.epochs: {randint: [0, 3]}}}",
            "train.epochs: must be positive, got 0",  # a probe at the space's lowest
        ),
        (
            f"{{search: optuna, storage: 'postgresql://nobody@127.0.0.1:9/db', space: {SPACE}}}",
            "sweep.storage: cannot open postgresql://nobody@127.0.0.1:9/db",
        ),
    ],
)
def test_a_bad_search_fails_in_one_line_before_any_run(tracking_store, capsys, sweep, message):
    args = [arg for override in [*SMALL, f"sweep={sweep}"] for arg in ("--set", override)]
    assert main(["run", "sine_long_gap", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert runs_in(tracking_store) == []


def test_a_search_of_several_seeds_or_with_give_up_and_another_pruner_is_refused(capsys):
    for extra, message in (
        (["seeds=[0, 1]"], "seeds: an optuna search trains one model at one gap with one seed"),
        (["train.give_up_epoch=2"], "train.give_up_epoch: in an optuna search the pruner"),
    ):
        args = search_args("pruner: median") + [a for o in extra for a in ("--set", o)]
        assert main(["run", "sine_long_gap", *args]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="task.gaps: an optuna search"):
        plan_trials(
            load_experiment("sine_long_gap", ["task.gaps=[2, 3]", *search_args()[1::2][-1:]])[1]
        )


def test_a_search_runs_its_trials_as_child_runs_and_shows_the_best(tracking_store, capsys):
    assert main(["run", "sine_long_gap", *search_args("n_trials: 3", "sampler: random")]) == 0
    out = capsys.readouterr().out
    assert "optuna search of 3 trials (random, pruner median) on 1 process" in out
    assert "[3/3] lstm-gap3-seed0 #2 train.learning_rate=" in out
    assert "best val_ratio" in out
    ranked = out.split("The best 3 of 3 trials, by val_ratio:\n")[1].splitlines()
    assert ranked[0].split()[:3] == ["trial", "state", "val_ratio"]
    parent, children = parent_and_children(tracking_store)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert parent.data.params["search"] == "optuna random"
    assert parent.data.params["search_space"] == "train.learning_rate,models.0.units"
    study = study_of(tracking_store, parent)
    by_number = {trial.number: trial for trial in study.trials}
    for child in children:
        params = child.data.params
        trial = by_number[int(params["search_trial"])]
        # Its params are the values the study sampled, its val_ratio the value it was told.
        assert float(params["train.learning_rate"]) == pytest.approx(
            trial.params["train.learning_rate"]
        )
        assert (
            int(params["models.0.units"]) == trial.params["models.0.units"] == int(params["units"])
        )
        assert child.info.status == "FINISHED"
        assert child.data.tags["trial_state"] == trial.state.name.lower()
        history = MlflowClient(tracking_store).get_metric_history(child.info.run_id, "val_ratio")
        assert [m.value for m in history] == pytest.approx(
            [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        )
        if trial.state == TrialState.COMPLETE:
            assert child.data.metrics["val_ratio"] == pytest.approx(trial.value)
    artifacts = {a.path for a in MlflowClient(tracking_store).list_artifacts(parent.info.run_id)}
    assert {"optimization_history.png", "search.csv", "trials.csv"} <= artifacts
    assert parent.data.metrics["best_val_ratio"] == pytest.approx(study.best_value)

    assert main(["compare", "sine_long_gap"]) == 0
    table = capsys.readouterr().out
    assert "The best 3 of 3 trials, by val_ratio:" in table
    run_id = parent.info.run_id
    best = forecast.load(run_id).summary()
    assert list(best.columns[:5]) == [
        "trial",
        "state",
        "val_ratio",
        "train.learning_rate",
        "models.0.units",
    ]
    complete = best[best["state"] == "complete"]
    assert complete["val_ratio"].iloc[0] == pytest.approx(study.best_value)


def test_a_pruned_trial_is_a_finished_run_with_its_epochs_and_a_pruned_tag(tracking_store):
    # Every trial is still above a ratio of 1e-6 after its first epoch: the give-up pruner
    # stops each there.
    args = search_args("n_trials: 2", "pruner: give_up")
    args += ["--set", "train.give_up_epoch=1", "--set", "train.give_up_ratio=1e-6"]
    assert main(["run", "sine_long_gap", *args]) == 0
    parent, children = parent_and_children(tracking_store)
    assert len(children) == 2
    client = MlflowClient(tracking_store)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["trial_state"] == "pruned"
        assert child.data.tags["pruned_after_epoch"] == "1"
        assert len(client.get_metric_history(child.info.run_id, "val_loss")) == 1  # of 3
        assert "test_mse" in child.data.metrics  # evaluated as it stood
    study = study_of(tracking_store, parent)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert "best_val_ratio" not in parent.data.metrics  # nothing completed


def test_the_give_up_rule_outside_a_search_tags_its_trial_pruned(tracking_store):
    overrides = [*SMALL, "train.give_up_epoch=1", "train.give_up_ratio=1e-6"]
    assert main(["run", "sine_long_gap", *[a for o in overrides for a in ("--set", o)]]) == 0
    _, (child,) = parent_and_children(tracking_store)
    assert child.data.tags["trial_state"] == "pruned"
    table = sweep_trials(tracking_store, child.data.tags["mlflow.parentRunId"])
    assert list(table["trial_state"]) == ["pruned"]


def test_an_interrupted_search_resumes_its_study_without_repeating_finished_trials(
    tracking_store, monkeypatch
):
    name, config = load_experiment("sine_long_gap", search_args("n_trials: 3")[1::2])
    real_train = trial_module.train
    trained = []

    def train_then_interrupt(model, *args, **kwargs):
        if len(trained) == 1:
            raise KeyboardInterrupt
        trained.append(model.count_params())
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(name, config, log=lambda line: None)
    parent, _ = parent_and_children(tracking_store)
    assert parent.info.status == "KILLED"
    study = study_of(tracking_store, parent)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    interrupted = study.trials[1].params

    monkeypatch.setattr(trial_module, "train", real_train)
    lines = []
    runner.run_experiment(name, config, log=lines.append)
    assert any(f"(resuming run {parent.info.run_id}: 1 searched)" in line for line in lines)
    assert sum(line.startswith("[") for line in lines) == 2  # the interrupted trial, and one more
    parent, children = parent_and_children(tracking_store)
    assert parent.info.status == "FINISHED"
    study = study_of(tracking_store, parent)
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    retried = study.trials[2]
    assert retried.params == interrupted and retried.user_attrs["retries"] == 1
    finished = [c for c in children if c.info.status == "FINISHED"]
    # Each asked trial once, the retried one under its first number.
    assert sorted(int(c.data.params["search_trial"]) for c in finished) == [0, 1, 3]
    trials_csv = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/trials.csv")
    assert len(trials_csv.strip().splitlines()) == 4  # a header and 3 trials


@pytest.mark.processes
def test_a_search_in_worker_processes_resumes_after_a_kill(tracking_store, tmp_path):
    """Done when: a search with pruning in worker processes, killed (SIGKILL, no clean-up),
    resumes without repeating its finished trials."""
    args = search_args("n_trials: 6", "pruner: median")
    command = [FORECAST, "run", "sine_long_gap", *args, "--set", "train.epochs=8"]
    command += ["--workers", "2"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, the workers in it
    )
    wait_for_trials(tracking_store, process, lambda s: s.count("FINISHED") >= 2, 240)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    parent, children = parent_and_children(tracking_store)
    before = study_of(tracking_store, parent)
    # Finished before the kill: told to the study, or recorded only (killed in between).
    recorded = {int(c.data.params["search_trial"]) for c in children if c.info.status == "FINISHED"}
    done_before = {
        t.number: t.params
        for t in before.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.number in recorded
    }
    assert len(done_before) >= 2

    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"(resuming run {parent.info.run_id}: {len(done_before)} searched)" in rerun.stdout
    parent, children = parent_and_children(tracking_store)
    assert parent.info.status == "FINISHED"
    study = study_of(tracking_store, parent)
    searched = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(searched) == 6
    assert {t.number: t.params for t in searched if t.number in done_before} == done_before
    finished = [c for c in children if c.info.status == "FINISHED"]
    numbers = [int(c.data.params["search_trial"]) for c in finished]
    assert len(numbers) == len(set(numbers)) == 6  # no finished trial ran twice


@pytest.mark.processes
def test_ray_tasks_ask_and_tell_one_study(tracking_store, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = search_args("n_trials: 3", "pruner: none")
        assert main(["run", "sine_long_gap", *args, "--backend", "ray"]) == 0
    finally:
        ray.shutdown()
    assert "optuna search of 3 trials (tpe, pruner none) on Ray" in capsys.readouterr().out
    parent, children = parent_and_children(tracking_store)
    study = study_of(tracking_store, parent)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert sorted(int(c.data.params["search_trial"]) for c in children) == [0, 1, 2]
    assert {c.info.status for c in children} == {"FINISHED"}


def test_a_search_over_a_series_window_prepares_each_sampled_data_section(tracking_store):
    overrides = [
        "data.backtest.folds=1",
        "data.baselines=[]",
        "train.loss=mse",
        "data.horizon=2",
        "data.season=4",
        "models=[{name: lstm, layer: LSTM, units: 3}]",
        "train.epochs=1",
        "train.batch_size=256",
        "sweep={search: optuna, n_trials: 2, sampler: random, seed: 1, space: "
        "{data.input_width: {choice: [8, 12]}}}",
    ]
    assert main(["run", "co2_forecast", *[a for o in overrides for a in ("--set", o)]]) == 0
    _, children = parent_and_children_of(tracking_store, "co2_forecast")
    # The random sampler's draws with seed 1: one window of each width.
    assert sorted(child.data.params["data.input_width"] for child in children) == ["12", "8"]
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("failure_reason")
        assert "test_mase" in child.data.metrics and "val_ratio" in child.data.metrics
