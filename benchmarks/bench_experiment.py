"""Time to result: the default sweep the old way and the new, in one invocation.

The old way is one trial at a time in this process, every epoch of every trial (``--workers 1``
and no give-up rule); the new way is what ``make experiment NAME=sine_long_gap`` does now
(``--workers auto`` and the experiment's own settings). Both run in this process, one after the
other, into a scratch MLflow store, so the ratio compares like with like on this machine. It
prints both wall times, their ratio and both results tables, and checks that they agree on the
largest solved gaps (exit 1 if not). About 20 minutes on 2 cores.

What the two share is not in the ratio: both run the current code, so a cheaper trial (traced
graphs reused across seeds, say) speeds up both.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import sys
import tempfile
import time

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="sine_long_gap")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value in both runs, e.g. --set seeds=[0] for a quick look",
    )
    args = parser.parse_args(argv)

    from forecast.cli import format_table
    from forecast.config import build_config, load_experiment, with_overrides
    from forecast.mlflow_tracker import MLflowTracker
    from forecast.progress import solved_line
    from forecast.runner import run_experiment

    name, new = load_experiment(args.experiment, args.overrides)
    old = build_config(with_overrides(new, {"train.give_up_epoch": None}), where="old way")
    runs = {"old way (--workers 1, every epoch)": (old, 1), "new default": (new, "auto")}
    seconds, tables = {}, {}
    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        for index, (label, (config, workers)) in enumerate(runs.items()):
            print(f"{label}:", flush=True)
            start = time.perf_counter()
            sweep = run_experiment(
                f"{name}-{index}",  # a distinct experiment each, so the second never resumes
                config,
                lambda line: print(f"  {line}", flush=True),
                workers,
                tracker=MLflowTracker(uri),
            )
            seconds[label] = time.perf_counter() - start
            tables[label] = sweep.summary()

    solved = {label: largest_solved(table, new.solved_ratio) for label, table in tables.items()}
    for label, table in tables.items():
        print(f"\n{label}: {seconds[label]:.0f} s")
        print(format_table(table, "table"))
        print(solved_line(solved[label]))
    old_seconds, new_seconds = seconds.values()
    print(
        f"\nspeed-up: {old_seconds / new_seconds:.2f}x ({old_seconds:.0f} s -> {new_seconds:.0f} s)"
    )
    agree = len({tuple(s.items()) for s in solved.values()}) == 1
    print("largest solved gaps agree" if agree else "LARGEST SOLVED GAPS DIFFER")
    return 0 if agree else 1


def largest_solved(summary: pd.DataFrame, solved_ratio: float) -> dict[str, int]:
    """Per model, the largest gap whose mean MSE ratio is at most ``solved_ratio`` (-1: none)."""
    solved = summary[summary["mse_ratio"] <= solved_ratio]
    largest = solved.groupby("model", sort=False)["gap"].max()
    return {model: int(largest.get(model, -1)) for model in summary["model"].unique()}


if __name__ == "__main__":
    sys.exit(main())
