import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecast.cli import main
from forecast.parallel import native_start_up_filtered
from tests.test_sweep import SMALL

FORECAST = str(Path(sys.executable).parent / "forecast")


def test_list_prints_each_experiment_with_its_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("sine_long_gap"))
    assert "RNN" in line and "LSTM" in line


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["run", "no_such_name"],
            "unknown experiment 'no_such_name'; available: adding_arjovsky, adding_hochreiter,",
        ),
        (["run", "sine_long_gap", "--set", "train.epoch=2"], "unknown config key 'train.epoch'"),
        (["run", "missing.yaml"], "missing.yaml: no such experiment file"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("forecast: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.processes
def test_console_script_prints_no_traceback(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("task:\n  gaps: [1,\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "forecast"), "run", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"forecast: error: {broken}:3: invalid YAML: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.processes
def test_a_bad_csv_is_one_line_before_tensorflow_loads(tmp_path):
    """The series is read and split before the seconds of importing TensorFlow: the command
    answers a data problem without loading it."""
    bad = tmp_path / "sales.csv"
    bad.write_text("day,sales\n2024-01-01,3\n2024-01-02,x\n")
    script = (
        "import sys\n"
        "from forecast.cli import main\n"
        f"code = main(['run', 'co2_forecast', '--set', 'data.source={bad}', "
        "'--set', 'data.time_column=day'])\n"
        "assert 'tensorflow' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"forecast: error: {bad}: column 'sales' line 3: non-numeric value 'x'\n"
    )


def test_the_hint_after_a_run_names_forecast_ui_with_the_experiment(monkeypatch):
    """`forecast ui NAME` works from any folder; a store chosen by MLFLOW_TRACKING_URI is
    named in the command too, for a shell without the variable."""
    from forecast.ui import how_to_start

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    default = "sqlite:////home/me/forecast/mlflow.db"
    assert how_to_start(default, "co2_forecast") == "start it with `forecast ui co2_forecast`"
    chosen = "sqlite:////tmp/my runs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", chosen)
    assert how_to_start(chosen, "co2_forecast") == (
        "start it with `MLFLOW_TRACKING_URI='sqlite:////tmp/my runs/mlflow.db' "
        "forecast ui co2_forecast`"
    )
    assert how_to_start("http://mlflow.example:5000", "co2_forecast") == ""  # the server's own


def test_the_hint_names_the_forecast_command_by_its_path_where_the_shell_would_not_find_it(
    monkeypatch, tmp_path
):
    """After `make`, `forecast` lies in .venv/bin, which a shell finds only once activated."""
    from forecast.ui import forecast_command

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called forecast there
    ours = Path(sys.executable).parent / "forecast"
    monkeypatch.chdir(ours.parent.parent.parent)  # the folder holding .venv
    assert forecast_command() == str(Path(*ours.parts[-3:]))
    monkeypatch.chdir(tmp_path)
    assert forecast_command() == str(ours)
    monkeypatch.setenv("PATH", str(ours.parent))
    assert forecast_command() == "forecast"


# Lines TensorFlow's libraries print through Abseil as they load, before its set-up.
ABSL_NOTICE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)
ABSL_INFO = b"I0000 00:00:1795997570.962160   18619 port.cc:153] oneDNN custom operations are on."
ABSL_FATAL = b"F0000 00:00:1795997570.962160   18619 stub.cc:31] Check failed"


@pytest.mark.parametrize("level", ["3", "0"])
def test_tensorflow_start_up_lines_show_as_tf_cpp_min_log_level_asks(level, capfd, monkeypatch):
    """Abseil prints what TensorFlow logs before its set-up whatever the level; what the level
    hides is dropped, and every other line still shows (an import error, a fatal check)."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    lines = [ABSL_NOTICE, ABSL_INFO, ABSL_FATAL, b"ImportError: no module named 'x'"]
    capfd.readouterr()
    with native_start_up_filtered():
        for line in lines:
            os.write(2, line + b"\n")
    shown = capfd.readouterr().err.encode().splitlines()
    assert shown == (lines if level == "0" else [ABSL_FATAL, lines[-1]])


@pytest.mark.processes
def test_a_run_prints_its_set_up_and_its_trials_and_nothing_on_stderr(tmp_path):
    """A sweep in two worker processes, models logged: every step says what it does from the
    first second, and TensorFlow's start-up lines and library warnings stay out."""
    overrides = [*SMALL, "task.gaps=[2]", "log_models=true"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: the command sets it
    result = subprocess.run(
        [FORECAST, "run", "sine_long_gap", "--workers", "2"]
        + [arg for override in overrides for arg in ("--set", override)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # But for how far the sweep is, said only if no trial ends for a while (a slow machine).
    lines = [line for line in result.stdout.splitlines() if "trials done" not in line]
    assert lines[:5] == [
        "sine_long_gap: loading TensorFlow and MLflow",
        "sine_long_gap: checking the data (sine_long_gap) and the models",
        "sine_long_gap: starting 2 worker processes",
        f"sine_long_gap: opening MLflow at {env['MLFLOW_TRACKING_URI']}",
        f"sine_long_gap: 2 trials on 2 workers -> MLflow at {env['MLFLOW_TRACKING_URI']}",
    ]
    assert lines[5].startswith("[1/2] ") and lines[5].endswith(", ETA after the first trials)")
    assert "largest solved gap: rnn none, lstm none" in lines
    assert "(start it with `MLFLOW_TRACKING_URI=" in result.stdout
    assert "forecast ui sine_long_gap`)" in result.stdout
