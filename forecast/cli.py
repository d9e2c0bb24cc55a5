"""The ``forecast`` command: ``forecast run NAME_OR_PATH [--set key=value ...]``, ``forecast list``.

User errors (unknown experiment, bad config, bad data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from forecast.config import ConfigError, available_experiments, load_experiment
from forecast.data import DataError
from forecast.parallel import BACKENDS, check_backend


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
    run.add_argument(
        "--workers",
        type=int,
        help="trials at once: local worker processes (default 1: in this process); with "
        "--backend ray, the most Ray tasks in flight (default: as the cluster's CPUs allow)",
    )
    run.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local processes (default) or Ray tasks (needs `pip install 'forecast[ray]'`)",
    )
    run.add_argument(
        "--ray-address",
        help="a Ray cluster's address (default: RAY_ADDRESS, else a local Ray instance)",
    )
    commands.add_parser("list", help="list the available experiments")
    runs = commands.add_parser("runs", help="list recent sweeps in the tracking store")
    runs.add_argument("experiment", nargs="?", help="only this experiment")
    runs.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    compare = commands.add_parser(
        "compare", help="print the comparison table of a past sweep from the tracking store"
    )
    compare.add_argument("experiment", nargs="?", help="its latest sweep (default: any latest)")
    compare.add_argument("--run", help="the parent run id of the sweep (see `forecast runs`)")
    compare.add_argument("--format", choices=FORMATS, default="table")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            return _list()
        if args.command == "runs":
            return _runs(args.experiment, args.limit)
        if args.command == "compare":
            return _compare(args.experiment, args.run, args.format)
        return _run(args.experiment, args.overrides, args.workers, args.backend, args.ray_address)
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


def _run(
    experiment: str,
    overrides: list[str],
    workers: int | None,
    backend: str,
    ray_address: str | None,
) -> int:
    name, config = load_experiment(experiment, overrides)
    check_backend(backend, workers, ray_address)
    # TensorFlow is imported only now, so `list` and config errors answer at once.
    from forecast.runner import run_experiment
    from forecast.tracking import TrackingError

    try:
        summary = run_experiment(name, config, print, workers, backend, ray_address)
    except TrackingError as error:
        return _fail(error)
    print()
    print(format_table(summary, "table"))
    return 0


FORMATS = ("table", "csv", "markdown")
NUMBER_FORMATS = {
    "test_mse": "{:.4g}",
    "mse_ratio": "{:.3f}",
    "ratio_ci95": "{:.3f}",
    "test_mae": "{:.4g}",
    "vs_persistence": "{:.3f}",
    "train_seconds": "{:.1f}",
}


def format_table(table: Any, fmt: str) -> str:
    """A summary DataFrame as an aligned text table, CSV or a Markdown table."""
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    formatters = {k: v.format for k, v in NUMBER_FORMATS.items() if k in table.columns}
    if fmt == "table":
        return table.to_string(index=False, formatters=formatters)
    cells = [
        [formatters.get(column, str)(value) for column, value in row.items()]
        for _, row in table.iterrows()
    ]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _runs(experiment: str | None, limit: int) -> int:
    from forecast.tracking import TrackingError, recent_sweeps

    try:
        sweeps = recent_sweeps(experiment, limit)
    except TrackingError as error:
        return _fail(error)
    print(sweeps.to_string(index=False) if len(sweeps) else "no sweeps yet")
    return 0


def _compare(experiment: str | None, run_id: str | None, fmt: str) -> int:
    import pandas as pd

    from forecast.evaluation import baseline_rows, summarize
    from forecast.tracking import TrackingError, recent_sweeps, sweep_trials

    try:
        if run_id is None:
            sweeps = recent_sweeps(experiment, limit=1)
            if not len(sweeps):
                return _fail(ConfigError("no sweeps yet; run one with `forecast run NAME`"))
            run_id = sweeps["run_id"].iloc[0]
        trials = sweep_trials(run_id)
    except TrackingError as error:
        return _fail(error)
    if not len(trials):
        return _fail(ConfigError(f"sweep {run_id} has no finished trials"))
    summary = summarize(trials)
    if "persistence_ratio" in trials:
        last = trials.dropna(subset=["persistence_ratio"]).iloc[-1]
        summary = pd.concat([summary, baseline_rows(last.to_dict(), int(last["gap"]))])
    print(format_table(summary, fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
