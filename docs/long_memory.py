"""Long memory on a real series, the figure and numbers of docs/results.md's "taylor" section:
``make long-memory``.

On `taylor` (half-hourly electricity demand, a daily and a weekly season; datasets/taylor.md)
each network of the forecast benchmark (benchmarks/bench_forecast.py: its series settings and
training, on the series as it is, not deseasonalised) forecasts a day ahead from an input
window of a day, a week and two weeks, scored on the same 28 daily test origins. Per network
and window it prints the test MASE and the effective memory
(forecast.evaluation.effective_memory: the lag by which the loss has heard 90% of its input
gradient), and draws ``docs/taylor_memory.png``: the MASE against the window, beside the
weekly seasonal naive forecast and MSTL, and the trained gradient flow of each network over
the two-week window, lags in days.

One seed and no refit on train + validation (the benchmark's table has three seeds and the
refit); about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import forecast  # noqa: E402
from forecast.tracker import MemoryTracker  # noqa: E402

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "benchmarks"))
import bench_forecast  # noqa: E402

DAY, WEEK = 48, 336
WINDOWS = {"a day": DAY, "a week": WEEK, "two weeks": 2 * WEEK}
COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "slstm": "tab:green", "mlstm": "tab:purple"}


def run_window(width: int, seed: int, epochs: int | None) -> tuple[pd.DataFrame, dict]:
    """One run of every network with an input window of ``width`` steps: (its summary, each
    network's trained gradient flow)."""
    config = bench_forecast.experiment("taylor", seeds=1, epochs=epochs)
    # The raw series, not deseasonalised as the benchmark's: whether a network learns the
    # week from the series itself. Windows every 4 steps, so the 12 runs fit in minutes.
    config["data"].pop("deseasonalize", None)
    config["data"].update(input_width=width, stride=4)
    # MSTL once, at the longest window (the same test origins at every width).
    config["data"]["baselines"] = ["mstl"] if width == 2 * WEEK else []
    config["seeds"] = [seed]
    config["train"]["refit"] = False
    tracker = MemoryTracker()
    results = forecast.run(config, tracker=tracker, log=None)
    flows = {
        trial.name.split("-")[0]: trial.outcome.flow["trained"]
        for trial in tracker.sweeps[-1].trials
        if trial.outcome is not None and trial.outcome.flow
    }
    summary = results.summary(["mase", "mape"])
    memory = results.trials.set_index("network")["effective_memory"]
    summary["effective_memory"] = summary["model"].map(memory)
    return summary.assign(window=width), flows


def figure(table: pd.DataFrame, flows: dict[str, np.ndarray]) -> Figure:
    """MASE against the input window, and the gradient flows over two weeks."""
    drawn = Figure(figsize=(12, 4.5))
    by_window, by_lag = drawn.subplots(1, 2)
    networks = [name for name in COLORS if name in set(table["model"])]
    for name in networks:
        rows = table[table["model"] == name].sort_values("window")
        by_window.plot(rows["window"] / DAY, rows["mase"], "o-", color=COLORS[name], label=name)
    for name, style in (("seasonal_naive", ":"), ("mstl", "--")):
        value = table.loc[table["model"] == name, "mase"]
        if len(value):
            label = "weekly seasonal naive" if name == "seasonal_naive" else "MSTL [48, 336]"
            by_window.axhline(value.iloc[0], color="grey", linestyle=style, label=label)
    by_window.set(
        xscale="log",
        xticks=[1, 7, 14],
        xticklabels=["a day", "a week", "two weeks"],
        xlabel="input window",
        ylabel="test MASE (28 daily origins, a day ahead)",
        title="taylor: error against the input window",
    )
    by_window.legend(fontsize=8)
    by_window.grid(alpha=0.3)
    for name in networks:
        curve = flows.get(name)
        if curve is None:
            continue
        memory = table.loc[(table["model"] == name) & (table["window"] == 2 * WEEK)]
        days = memory["effective_memory"].iloc[0] / DAY
        lags = np.arange(len(curve)) / DAY
        share = curve / curve.sum()
        by_lag.plot(lags, np.maximum(share, 1e-12), color=COLORS[name], lw=1, label=f"{name}: "
                    f"90% within {days:.1f} days")  # fmt: skip
    for lag in (1, 7):
        by_lag.axvline(lag, color="grey", linestyle=":", lw=1)
    by_lag.set(
        yscale="log",
        xlabel="lag: days before the forecast origin",
        ylabel="share of the input gradient",
        title="What each network reads of two weeks (trained)",
    )
    by_lag.legend(fontsize=8)
    by_lag.grid(alpha=0.3, which="both")
    drawn.tight_layout()
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="cap the epochs (a smoke run)")
    args = parser.parse_args()
    summaries, flows = [], {}
    for label, width in WINDOWS.items():
        summary, flows = run_window(width, args.seed, args.epochs)
        summaries.append(summary)
        print(f"window {label} ({width} steps) done", flush=True)
    table = pd.concat(summaries, ignore_index=True)
    shown = table[["window", "model", "mase", "mape", "effective_memory"]]
    print(shown.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    out = DOCS / "taylor_memory.png"
    figure(table, flows).savefig(out, dpi=110)
    print(f"drew {out}")


if __name__ == "__main__":
    main()
