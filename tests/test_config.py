import pandas as pd
import pytest

from forecast.config import ConfigError, available_experiments, load_experiment, results_digest
from forecast.data import DataError
from forecast.plan import plan_trials


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_shipped_experiment_loads_with_its_values():
    name, config = load_experiment("sine_long_gap")
    assert name == "sine_long_gap"
    assert [m.layer for m in config.models] == ["SimpleRNN", "LSTM"]
    assert config.task.gaps and config.train.epochs > 0


def test_every_experiment_has_a_description_and_loads():
    experiments = available_experiments()
    assert "sine_long_gap" in experiments
    for name, description in experiments.items():
        assert description, name
        load_experiment(name)


def test_dotted_overrides_parse_values_as_yaml():
    _, config = load_experiment(
        "sine_long_gap",
        [
            "train.epochs=2",
            "task.gaps=[3, 4]",
            "models.1.units=8",
            "train.clipnorm=null",
            "models.1.options.chrono_init=50",
            "train.learning_rate=1",
        ],
    )
    assert config.train.epochs == 2
    assert config.task.gaps == [3, 4]
    assert config.models[1].units == 8
    assert config.models[1].options["chrono_init"] == 50
    assert config.train.clipnorm is None
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=2", "unknown config key 'train.epoch'"),
        ("nope=1", "unknown config key 'nope'"),
        ("models.5.units=3", "no item '5'"),
        ("train.epochs", "expected key=value"),
        ("train.epochs=abc", "train.epochs must be int, got 'abc'"),
        ("task.gaps=5", "task.gaps must be a list"),
        ("task.gaps=[]", "task.gaps: the list of gaps is empty"),
        ("train.epochs=-1", "train.epochs: must be positive"),
        ("solved_ratio=1.5", "solved_ratio: must lie in (0, 1)"),
        ("task.name=nothing", "task.name: unknown task 'nothing'"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        plan_trials(load_experiment("sine_long_gap", [override])[1])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "description: x\ntrain:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:4: invalid YAML"):
        load_experiment(path)


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown config key 'train\.epochz'"):
        load_experiment(path)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(
        ConfigError, match="unknown experiment 'no_such_name'; available: .*sine_long_gap"
    ):
        load_experiment("no_such_name")


def test_the_results_hash_ignores_what_only_changes_how_a_run_is_shown():
    _, base = load_experiment("sine_long_gap")
    shown = ("train.verbose=2", "log_models=false", "description=x", "train.checkpoint=false")
    for override in shown:
        _, changed = load_experiment("sine_long_gap", [override])
        assert results_digest(changed) == results_digest(base), override
    for override in ("train.learning_rate=0.01", "seeds=[0]", "models.0.units=8"):
        _, changed = load_experiment("sine_long_gap", [override])
        assert results_digest(changed) != results_digest(base), override


def test_a_season_is_a_number_of_steps_or_a_list_of_them():
    config = load_experiment("air_passengers", ["data.season=[12, 6]"])[1]
    assert config.data.seasons == (6, 12)
    assert load_experiment("air_passengers")[1].data.seasons == (12,)
    assert load_experiment("air_passengers", ["data.season=null"])[1].data.seasons == ()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.season=weekly"], "data.season must be int or list[int], got 'weekly'"),
        (["data.season=[]"], "data.season: must be null, a number of steps >= 2 or a list"),
        (["data.season=1"], "data.season: must be null, a number of steps >= 2 or a list"),
        (["data.season=[12, 12]"], "data.season: a season is given twice"),
        # air_passengers' one fold has 115 months before its test part.
        (["data.season=[12, 120]"], "data.season: 120 steps needs 120 steps of past (one season)"),
        (
            ["data.season=[12, 72]", "data.baselines=[mstl]"],
            "data.season: 72 steps needs 144 steps of past (two seasons for mstl)",
        ),
    ],
)
def test_a_season_the_series_cannot_hold_is_one_line_before_any_run(overrides, message):
    with pytest.raises((ConfigError, DataError)) as error:
        plan_trials(load_experiment("air_passengers", [*overrides, "log_models=false"])[1])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.deseasonalize=stl"], "data.deseasonalize: must be mstl or null, got 'stl'"),
        (["data.season=null"], "data.deseasonalize: set data.season"),
        (["data.transform=log"], "data.deseasonalize: it works in the series' units: drop"),
        (["data.time_column=null"], "data.deseasonalize: set data.time_column"),
        (["data.season=[12, 48]"], "data.deseasonalize: the train part (72 steps) must hold two"),
    ],
)
def test_deseasonalize_keys_are_checked_in_one_line(overrides, message):
    overrides = ["data.deseasonalize=mstl", *overrides, "log_models=false"]
    with pytest.raises((ConfigError, DataError)) as error:
        plan_trials(load_experiment("air_passengers", overrides)[1])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_baseline_that_will_take_long_is_announced_with_an_estimate(monkeypatch):
    """mstl is fitted and run from one origin before the run; over the threshold (lowered
    here: on 144 months it takes milliseconds) its cost in all is announced, and the step
    that would bring it under."""
    import forecast.plan

    monkeypatch.setattr(forecast.plan, "SLOW_FORECASTER_SECONDS", 1e-6)
    overrides = ["data.baselines=[mstl]", "data.horizon=3", "log_models=false"]
    lines = []
    plan_trials(load_experiment("air_passengers", overrides)[1], log=lines.append)
    (note,) = [line for line in lines if line.startswith("mstl takes about")]
    assert " s an origin: its 34 test origins take about " in note
    assert "; evaluation.step: " in note and note.endswith(" would take about 0 s")


@pytest.mark.parametrize(
    "experiment, override, message",
    [
        (
            "future_covariates",
            "data.calendar=[weekday]",
            "calendar: unknown feature 'weekday'; choose from month, week_of_year, day_of_month",
        ),
        ("future_covariates", "data.future_columns=[price]", "no column 'price'"),
        ("future_covariates", "data.future_columns=[sales]", "future column 'sales' is also a"),
        ("sunspots_backtest", "data.calendar=[month]", "calendar: month needs timestamps"),
    ],
)
def test_bad_covariates_are_refused_before_any_run(experiment, override, message):
    with pytest.raises((ConfigError, DataError)) as error:
        plan_trials(load_experiment(experiment, [override, "log_models=false"])[1])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["data.series_embedding=0"],
            r"^data\.series_embedding: must be >= 1 or null, got 0$",
        ),
        (
            ["data.static_columns=[y]"],
            r"^data\.static_columns: 'y' is also in data\.feature_columns; name it once$",
        ),
        (
            ["data.series_column=null", "data.static_columns=[]", "data.series_embedding=4"],
            r"^data\.series_embedding: describes the series of a panel; set data\.series_column",
        ),
    ],
)
def test_static_covariate_keys_are_checked_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("static_covariates", overrides)


def test_a_varying_static_column_is_refused_before_any_run(tmp_path):
    from forecast.paths import datasets_dir

    table = pd.read_csv(datasets_dir() / "persistence.csv")
    table.loc[5, "phi"] = 0.5
    table.to_csv(tmp_path / "panel.csv", index=False)
    _, config = load_experiment("static_covariates", [f"data.source={tmp_path / 'panel.csv'}"])
    with pytest.raises(DataError, match=r"^static column 'phi' varies within series 's00'"):
        plan_trials(config)


def test_backups_lie_beside_the_store_they_resume_a_sweep_of(tmp_path):
    from forecast.paths import checkpoints_dir, project_root

    store = tmp_path / "elsewhere" / "mlflow.db"
    backups = checkpoints_dir("air", f"sqlite:///{store}")
    assert backups.parent == tmp_path / "elsewhere" / ".checkpoints"
    assert backups.name.startswith("air-")
    folder = checkpoints_dir("air", str(tmp_path / "mlruns"))
    assert folder.parent == tmp_path / ".checkpoints"
    # A tracking server's lie beside the project, in a folder of their own.
    served = checkpoints_dir("air", "http://tracking.example:5000")
    assert served.parent == project_root() / ".checkpoints"
    assert served.name != backups.name
