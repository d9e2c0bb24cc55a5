import subprocess
import sys
from pathlib import Path

import pytest

from forecast.cli import main


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
