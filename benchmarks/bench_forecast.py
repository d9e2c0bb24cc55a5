"""The networks against the statistical forecasters on real series that ship in datasets/
(`make bench-forecast`): per series, the test MASE and MAPE of an RNN, an LSTM, an sLSTM and
an mLSTM (the mean over seeds), of their seeds' ensembles and of every baseline, and the ratio
of the best network's MASE to the best statistical method's. The table in docs/benchmarks.md
is what this prints.

Each series keeps a horizon and test protocol from its literature (see PROTOCOLS in the
docs); every forecaster is scored on the same test windows. Nothing is written: the sweeps
are recorded in memory (forecast.tracker.MemoryTracker).

    python benchmarks/bench_forecast.py                      # all series, 3 seeds
    python benchmarks/bench_forecast.py --series lynx,co2 --seeds 1   # a quick subset
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

import forecast
from forecast.tracker import MemoryTracker

STATISTICAL = ["ets", "theta", "arima", "mstl"]
NAIVE = ["naive", "seasonal_naive", "mean", "drift"]
NETWORKS = [
    {"name": "rnn", "layer": "SimpleRNN", "units": 32},
    {"name": "lstm", "layer": "LSTM", "units": 32},
    {"name": "slstm", "layer": "sLSTM", "units": 32},
    {"name": "mlstm", "layer": "mLSTM", "units": 32},
]
# The settings air_passengers.yaml found for small series; early stopping picks the epochs and
# train.refit (the default) trains again on train + validation for that many.
TRAIN = {
    "epochs": 200,
    "batch_size": 16,
    "learning_rate": 0.003,
    "clipnorm": 1.0,
    "early_stopping_patience": 15,
}


@dataclass(frozen=True)
class Series:
    """One benchmark series: its frequency, its ``data`` section and the training settings it
    departs in (a long series: larger batches, fewer epochs)."""

    frequency: str
    data: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)


# Horizons: M4's per frequency (Makridakis, Spiliotis and Assimakopoulos 2020: yearly 6,
# quarterly 8, monthly 18, weekly 13), air_passengers' 36 months from one origin (Darts'
# tutorials, the reference) and taylor's day ahead (Taylor 2003); the test part is
# scored from every origin in it (a rolling origin, Tashman 2000), or every k-th
# (evaluation.step) where an origin costs MSTL seconds. `relative` (each window relative to its
# last input) on the series whose level drifts out of the training range; `deseasonalize` on
# those with an additive season where it measured better (docs/benchmarks.md).
SERIES = {
    "lynx": Series(
        "yearly",
        {"source": "lynx", "time_column": "year", "input_width": 20, "horizon": 6,
         "test_fraction": 0.2, "season": 10},
    ),
    "sunspots": Series(
        "yearly",
        {"source": "sunspots", "time_column": "year", "input_width": 22, "horizon": 6,
         "test_fraction": 0.2, "season": 11},
    ),
    "ausbeer": Series(
        "quarterly",
        {"source": "ausbeer", "time_column": "quarter", "input_width": 16, "horizon": 8,
         "test_fraction": 0.2, "season": 4, "relative": True, "deseasonalize": "mstl"},
    ),
    "air_passengers": Series(
        "monthly",
        {"source": "air_passengers", "time_column": "month", "input_width": 24, "horizon": 36,
         "val_fraction": 0.25, "test_fraction": 0.25, "season": 12, "relative": True},
        {"batch_size": 8, "early_stopping_patience": 20},
    ),
    "wineind": Series(
        "monthly",
        {"source": "wineind", "time_column": "month", "input_width": 24, "horizon": 18,
         "test_fraction": 0.2, "season": 12, "relative": True, "deseasonalize": "mstl"},
    ),
    "elec_equip": Series(
        "monthly",
        {"source": "elec_equip", "time_column": "month", "input_width": 24, "horizon": 18,
         "test_fraction": 0.2, "season": 12, "relative": True, "deseasonalize": "mstl"},
    ),
    "co2": Series(
        "weekly",
        {"source": "co2", "time_column": "date", "fillna": "interpolate", "input_width": 52,
         "horizon": 13, "test_fraction": 0.15, "season": 52, "relative": True},
        {"batch_size": 64, "epochs": 60, "early_stopping_patience": 8},
        {"step": 4},
    ),
    "taylor": Series(
        "half-hourly",
        # 12 weeks: the last 4 the test part, the week before them validation. Deseasonalised:
        # the plain networks stayed at MASE 3-7 (docs/benchmarks.md).
        {"source": "taylor", "time_column": "time", "input_width": 336, "horizon": 48,
         "val_fraction": 1 / 12, "test_fraction": 4 / 12, "season": [48, 336], "stride": 2,
         "relative": True, "deseasonalize": "mstl"},
        {"batch_size": 64, "epochs": 40, "early_stopping_patience": 5},
        {"step": 48},
    ),
}  # fmt: skip


def experiment(name: str, seeds: int, epochs: int | None) -> dict[str, Any]:
    """The experiment config of one series: every network, every baseline."""
    series = SERIES[name]
    train = {**TRAIN, **series.train}
    if epochs is not None:
        train["epochs"] = epochs
    return {
        "description": f"bench-forecast: {name} ({series.frequency})",
        "data": {**series.data, "baselines": STATISTICAL},
        "models": NETWORKS,
        "seeds": list(range(seeds)),
        "log_models": False,
        "train": {**train, "checkpoint": False},
        "evaluation": {"metrics": ["mase", "mape"], **series.evaluation},
    }


def scores(
    name: str, seeds: int, epochs: int | None, overrides: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One series' forecasters with their test MASE and MAPE (networks: the mean over seeds),
    its config changed by ``overrides`` (dotted keys, as ``forecast run --set`` takes them)."""
    config = experiment(name, seeds, epochs)
    results = forecast.run(config, overrides, tracker=MemoryTracker(), log=None)
    summary = results.summary(["mase", "mape"])
    return summary[["model", "mase", "mape"]].rename(columns={"model": "forecaster"})


def table(all_scores: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Series by forecaster, with the best network's ratio to the best statistical method."""
    wide = pd.DataFrame(
        {name: frame.set_index("forecaster")[metric] for name, frame in all_scores.items()}
    ).T
    names = [network["name"] for network in NETWORKS]
    networks = [name for name in names + [f"{name}_ensemble" for name in names] if name in wide]
    wide = wide[networks + [name for name in NAIVE + STATISTICAL if name in wide.columns]]
    statistical = wide[[name for name in STATISTICAL if name in wide.columns]]
    wide["best_net/best_stat"] = wide[networks].min(axis=1) / statistical.min(axis=1)
    wide.index.name = "series"
    return wide


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, its index the first column, numbers to 3 digits."""
    rows = [[frame.index.name or "", *frame.columns]]
    rows += [[str(index), *(f"{value:.3f}" for value in row)] for index, row in frame.iterrows()]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "| --- |" + " ---: |" * len(frame.columns))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", default=",".join(SERIES), help="comma-separated subset")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per network (default 3)")
    parser.add_argument("--epochs", type=int, help="cap every series' epochs (a smoke run)")
    parser.add_argument("--out", help="also write the scores as a long CSV table here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change every series' config, e.g. --set data.deseasonalize=mstl",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.series.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SERIES]
    if unknown:
        sys.exit(f"--series: unknown series {unknown[0]!r}; choose from {', '.join(SERIES)}")

    overrides = {}
    for pair in args.set:
        key, equals, value = pair.partition("=")
        if not equals:
            sys.exit(f"--set: expected KEY=VALUE, got {pair!r}")
        overrides[key] = yaml.safe_load(value)

    started = time.perf_counter()
    all_scores = {}
    for name in chosen:
        began = time.perf_counter()
        all_scores[name] = scores(name, args.seeds, args.epochs, overrides)
        print(f"{name}: {time.perf_counter() - began:.0f} s", flush=True)
    if args.out:
        long = pd.concat(all_scores, names=["series", "row"]).reset_index(level=0)
        long.to_csv(args.out, index=False)
    for metric in ("mase", "mape"):
        print(f"\ntest {metric.upper()} (networks: the mean of {args.seeds} seeds)\n")
        print(markdown(table(all_scores, metric)))
    print(f"\n{len(chosen)} series in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
