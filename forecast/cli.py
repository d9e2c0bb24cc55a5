"""The ``forecast`` command: ``run``, ``list``, ``runs``, ``compare`` and ``ui``.

User errors (unknown experiment, bad config, bad data, an unreachable store) print one line and
exit 2. Only ``run`` loads TensorFlow; the other commands answer in a few seconds.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import TYPE_CHECKING

from forecast.config import ConfigError, available_experiments, differences, load_experiment
from forecast.data import DataError, prepare_unswept
from forecast.parallel import BACKENDS, check_backend, native_start_up_filtered
from forecast.paths import tracking_uri

if TYPE_CHECKING:
    import pandas as pd

    from forecast.results import Results

FORMATS = ("table", "csv", "markdown")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``forecast`` console script; returns the exit status."""
    # Before TensorFlow is first imported: keep its C++ start-up chatter off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = _parser().parse_args(argv)
    uri = tracking_uri()
    try:
        if args.command == "list":
            return _list()
        if args.command == "runs":
            return _runs(uri, args.experiment, args.limit)
        if args.command == "compare":
            return _compare(uri, args.experiment, args.run, args.format, args.metrics)
        if args.command == "ui":
            return _ui(uri, args.experiment, args.port)
        return _run(uri, args)
    except (ConfigError, DataError) as error:  # forecast.tracking.TrackingError among them
        print(f"forecast: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("forecast: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # MLflow's client raises a tracking server's refusal (401, 403) or silence as a quoted
        # HTTP exchange and a traceback; the user needs one line. (If MLflow is not loaded, the
        # error is not its.)
        if "mlflow" not in sys.modules:
            raise
        from forecast.tracking import server_failure

        failure = server_failure(error, uri)
        if failure is None:
            raise
        print(f"forecast: error: {failure}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    """The command line: ``run``, ``list``, ``runs``, ``compare`` and ``ui``."""
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
        type=_workers,
        default=os.environ.get("FORECAST_WORKERS", "auto"),
        help="trials at once: local worker processes, 1 for this process only, or auto "
        "(default, or $FORECAST_WORKERS): one per usable core, as trials and memory allow; "
        "with --backend ray, the most Ray tasks in flight (auto: as the cluster's CPUs allow)",
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
    run.add_argument(
        "--system-metrics",
        action="store_true",
        help="sample CPU and memory use onto the sweep's run (MLflow's system metrics)",
    )
    commands.add_parser("list", help="list the available experiments")
    runs = commands.add_parser("runs", help="list recent sweeps in the tracking store")
    runs.add_argument("experiment", nargs="?", help="only this experiment")
    runs.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    compare = commands.add_parser(
        "compare", help="print the comparison table of a past sweep from the tracking store"
    )
    compare.add_argument("experiment", nargs="?", help="its latest sweep (default: any latest)")
    compare.add_argument(
        "--run",
        help="the sweep: its parent run id, or its number in `forecast runs` (1: the latest)",
    )
    compare.add_argument("--format", choices=FORMATS, default="table")
    compare.add_argument(
        "--metrics",
        type=_metrics,
        help="a series' metrics to show, comma-separated, e.g. mase,rmsse,wql (default: the "
        "experiment's evaluation.metrics)",
    )
    ui = commands.add_parser("ui", help="start the MLflow UI on the local store")
    ui.add_argument("experiment", nargs="?", help="print the address of its latest sweep")
    ui.add_argument("--port", type=int, default=5000, help="(default 5000)")
    return parser


def _list() -> int:
    experiments = available_experiments()
    width = max((len(name) for name in experiments), default=0)
    for name, description in experiments.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _metrics(value: str) -> list[str]:
    from forecast.evaluation import METRICS

    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if name not in METRICS:
            raise argparse.ArgumentTypeError(
                f"unknown metric {name!r}; choose from {', '.join(METRICS)}"
            )
    return names


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {value!r}") from None


def _run(uri: str, args: argparse.Namespace) -> int:
    name, config = load_experiment(args.experiment, args.overrides)
    check_backend(args.backend, args.workers, args.ray_address)
    # A series read and split (pandas alone) before TensorFlow loads: a missing file, column
    # or value, or a window too long, is one line in about a second, not after ten.
    prepared = prepare_unswept(config)
    progress = functools.partial(print, flush=True)  # at once, through a pipe or a file too
    # TensorFlow is imported only now, so `list` and config errors answer at once; it takes
    # seconds, the first of the set-up's steps that each say what they do.
    progress(f"{name}: loading TensorFlow and MLflow")
    with native_start_up_filtered():
        from forecast.runner import run_experiment
    from forecast.mlflow_tracker import MLflowTracker
    from forecast.ui import how_to_start, sweep_address, sweep_runs_address

    tracker = MLflowTracker(uri, args.system_metrics)
    results = run_experiment(
        name, config, progress, args.workers, args.backend, args.ray_address, tracker, prepared
    )
    print()
    _print_results(results, "table")
    if results.run_id is None:  # a multi-worker non-chief: the chief recorded the sweep
        return 0
    print()
    hint = how_to_start(uri, name)
    ranked = f"ranked by {results.kind.ratio}"
    print(f"Its runs in the MLflow UI, {ranked}{f' ({hint})' if hint else ''}:")
    print(f"  {sweep_runs_address(uri, results.run_id)}")
    print("Its trials compared side by side:")
    print(f"  {sweep_address(uri, results.run_id)}")
    return 0


PER_SERIES_TITLE = "Each series of the panel (pooled above; means over seeds and folds):"
PAIRED_TITLE = "Paired by backtest fold (mse_ratio: mean over folds of model MSE / versus MSE):"


def _print_results(results: Results, fmt: str, metrics: list[str] | None = None) -> None:
    """A sweep's tables, as ``forecast run`` and ``forecast compare`` both print them: its
    summary (a search's best trials), a backtest's pairs by fold, a panel's series; a series'
    ``metrics`` (default: its config's)."""
    summary = results.summary(metrics)
    if results.kind.search and fmt != "csv":
        searched = len(results.trials)
        print(f"The best {len(summary)} of {searched} trials, by {results.config.sweep.metric}:")
    best = None
    if results.kind.forecasts_series and not results.kind.search and len(summary):
        summary, best = ranked_summary(summary, fmt)
    print(format_table(summary, fmt))
    if best is not None and fmt != "csv":
        print(best)
    tables = ((PAIRED_TITLE, results.paired()), (PER_SERIES_TITLE, results.per_series(metrics)))
    for title, table in tables:
        if table is None or not len(table):
            continue
        print()
        if fmt != "csv":
            print(title)
        print(format_table(table, fmt))


def ranked_summary(summary: pd.DataFrame, fmt: str) -> tuple[pd.DataFrame, str]:
    """A series' summary as printed: best first by MASE (else by the first metric shown),
    without the columns that say nothing of it in a table (a single gap; seeds, unless some
    model has several), and the line that names the best."""
    from forecast.evaluation import METRICS

    metric = "mase" if "mase" in summary else next(c for c in summary if c in METRICS)
    ranked = summary.sort_values(metric, kind="stable", na_position="last", ignore_index=True)
    if fmt != "csv":
        dropped = ["gap"] if ranked["gap"].nunique() == 1 else []
        dropped += ["seeds"] if ranked["seeds"].max() <= 1 else []
        ranked = ranked.drop(columns=dropped)
    return ranked, f"Best by {metric}: {ranked.at[0, 'model']}"


NUMBER_FORMATS = {
    "test_mse": "{:.4g}",
    "mse_ratio": "{:.3f}",
    "test_cross_entropy": "{:.4g}",
    "test_accuracy": "{:.3f}",
    "cross_entropy_ratio": "{:.3f}",
    "ratio_ci95": "{:.3f}",
    "mae": "{:.4g}",
    "rmse": "{:.4g}",
    "mse": "{:.4g}",
    "mape": "{:.2f}",
    "smape": "{:.2f}",
    "mase": "{:.3f}",
    "rmsse": "{:.3f}",
    "coverage": "{:.3f}",
    "msis": "{:.3f}",
    "wql": "{:.4f}",
    "vs_naive": "{:.3f}",
    "vs_seasonal_naive": "{:.3f}",
    "effective_memory": "{:.1f}",
    "val_ratio": "{:.4f}",
    "train_seconds": "{:.1f}",
}


def format_table(table: object, fmt: str) -> str:
    """A summary DataFrame as an aligned text table, CSV or a Markdown table."""
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    formatters = {
        column: functools.partial(_format_number, pattern)
        for column, pattern in NUMBER_FORMATS.items()
        if column in table.columns
    }
    if fmt == "table":
        return table.to_string(index=False, formatters=formatters, na_rep="")
    cells = [
        [formatters.get(column, str)(value) for column, value in row.items()]
        for _, row in table.iterrows()
    ]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _format_number(pattern: str, value: object) -> str:
    """A number as ``pattern`` shows it; a missing one (a baseline's coverage) as blank."""
    return "" if value is None or value != value else pattern.format(value)


def _runs(uri: str, experiment: str | None, limit: int) -> int:
    from forecast.results import recent_sweeps

    sweeps = recent_sweeps(uri, experiment, limit)
    sweeps.index = range(1, len(sweeps) + 1)  # what `forecast compare --run N` takes
    print(sweeps.to_string() if len(sweeps) else "no sweeps yet")
    return 0


def _compare(
    uri: str,
    experiment: str | None,
    run_id: str | None,
    fmt: str,
    metrics: list[str] | None = None,
) -> int:
    from forecast.results import load, recent_sweeps

    number = int(run_id) if run_id is not None and run_id.isdigit() else None
    if number == 0:
        raise ConfigError("--run 0: `forecast runs` numbers the sweeps from 1")
    if run_id is None or number is not None:
        number = number or 1
        sweeps = recent_sweeps(uri, experiment, limit=number)
        if not len(sweeps):
            raise ConfigError("no sweeps yet; run one with `forecast run NAME`")
        if number > len(sweeps):
            raise ConfigError(f"--run {number}: `forecast runs` lists only {len(sweeps)}")
        run_id = sweeps["run_id"].iloc[number - 1]
    results = load(run_id, uri)
    if not len(results.trials) or (results.trials["state"] == "failed").all():
        raise ConfigError(f"sweep {run_id} has no finished trials")
    if fmt != "csv":
        print(_which_sweep(results))
        print()
    _print_results(results, fmt, metrics)
    return 0


def _which_sweep(results: Results) -> str:
    """The line that says which sweep ``forecast compare`` shows: its experiment, run id, start
    and status, and the settings in which it differs from the experiment's file."""
    import pandas as pd
    from mlflow import MlflowClient

    run = MlflowClient(results.tracking_uri).get_run(results.run_id)
    started = pd.Timestamp(run.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M")
    line = f"{results.name}: sweep {results.run_id}, started {started} UTC, {run.info.status}"
    try:
        _, reference = load_experiment(results.name)
    except ConfigError:  # an experiment file since removed, renamed or broken
        return line
    changed = differences(results.config.to_dict(), reference.to_dict())
    return f"{line}; {', '.join(changed) if changed else 'as its experiment file'}"


def _ui(uri: str, experiment: str | None, port: int) -> int:
    from forecast.ui import serve

    return serve(uri, experiment, port)


if __name__ == "__main__":
    sys.exit(main())
