"""The ``forecast`` command: ``forecast run NAME_OR_PATH [--set key=value ...]``, ``forecast list``.

User errors (unknown experiment, bad config, bad data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from forecast.config import ConfigError, available_experiments, load_experiment
from forecast.data import DataError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``forecast`` console script; returns the exit status."""
    # Before TensorFlow is first imported: keep its C++ start-up chatter off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(
        prog="forecast", description="Run and compare recurrent forecasting experiments."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a named experiment or an experiment YAML file")
    run.add_argument("experiment", help="a name from `forecast list`, or a path to a YAML file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set train.epochs=2",
    )
    commands.add_parser("list", help="list the available experiments")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            return _list()
        return _run(args.experiment, args.overrides)
    except (ConfigError, DataError) as error:
        return _fail(error)
    except KeyboardInterrupt:
        print("forecast: interrupted", file=sys.stderr)
        return 130


def _fail(error: Exception) -> int:
    print(f"forecast: error: {error}", file=sys.stderr)
    return 2


def _list() -> int:
    experiments = available_experiments()
    width = max((len(name) for name in experiments), default=0)
    for name, description in experiments.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _run(experiment: str, overrides: list[str]) -> int:
    name, config = load_experiment(experiment, overrides)
    # TensorFlow is imported only now, so `list` and config errors answer at once.
    from forecast.runner import run_experiment
    from forecast.tracking import TrackingError

    try:
        summary = run_experiment(name, config)
    except TrackingError as error:
        return _fail(error)
    print()
    print(
        summary.to_string(
            index=False,
            formatters={
                "test_mse": "{:.4g}".format,
                "mse_ratio": "{:.3f}".format,
                "ratio_ci95": "{:.3f}".format,
                "test_mae": "{:.4g}".format,
                "vs_persistence": "{:.3f}".format,
                "train_seconds": "{:.1f}".format,
            },
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
