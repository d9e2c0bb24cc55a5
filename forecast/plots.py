"""Figures: where people would rather look than read. Each function returns a matplotlib
``Figure`` made without pyplot: no display or backend needed, nothing global holds it, and it
is freed once the caller has logged it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _set_margins(
    figure: Figure, left: float = 0.85, right: float = 0.2, top: float = 0.4, bottom: float = 0.55
) -> Figure:
    """Fixed margins, in inches, around the axes. A layout engine (tight or constrained)
    measures every label before the figure is drawn: 0.19 s a figure, half of a small trial's
    plotting time, for margins that these figures' fixed labels do not need."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )
    return figure


def ratio_vs_gap(
    intervals: pd.DataFrame, solved_ratio: float, title: str = "", loss: str = "MSE"
) -> Figure:
    """The summary figure: test ``loss`` / trivial-baseline ``loss`` (MSE, or cross-entropy
    for a categorical task) against the gap, one line per model, with the 95% interval over
    seeds and the "solved" threshold."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for model, rows in intervals.groupby("model", sort=False):
        rows = rows.sort_values("gap")
        line = axes.plot(rows["gap"], rows["mean_ratio"], marker="o", label=str(model))[0]
        axes.fill_between(
            rows["gap"],
            rows["low"].clip(lower=1e-4),
            rows["high"],
            color=line.get_color(),
            alpha=0.2,
        )
    axes.axhline(solved_ratio, color="grey", linestyle="--", linewidth=1)
    axes.text(
        axes.get_xlim()[0],
        solved_ratio,
        f" solved (<= {solved_ratio})",
        va="bottom",
        color="grey",
        fontsize=8,
    )
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set(
        xlabel="gap (steps between the information and the answer)",
        ylabel=f"test {loss} / trivial-baseline {loss}",
        yscale="log",
        title=title or "Where each model stops learning",
    )
    seeds = int(intervals["seeds"].max())
    if seeds > 1:
        axes.set_title(
            axes.get_title() + f" (mean and 95% interval over {seeds} seeds)", fontsize=10
        )
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    return _set_margins(figure)


def effective_memory(trials: pd.DataFrame, title: str = "") -> Figure:
    """Each model's effective memory (:func:`forecast.evaluation.effective_memory`: the lag by
    which 90% of its trained gradient flow has accumulated) against the gap: every seed's
    trial as a dot, the mean over seeds as a line, and the gap itself, the lag at which a
    synthetic task's information ends, as a dashed diagonal."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    measured = trials.dropna(subset=["effective_memory"])
    for model, rows in measured.groupby("model", sort=False):
        means = rows.groupby("gap")["effective_memory"].mean()
        line = axes.plot(means.index, means.to_numpy(), marker="o", label=str(model))[0]
        axes.scatter(rows["gap"], rows["effective_memory"], color=line.get_color(), s=12)
    gaps = np.sort(measured["gap"].unique())
    axes.plot(gaps, gaps, color="grey", linestyle="--", linewidth=1, label="the gap")
    axes.set(
        xlabel="gap (steps between the information and the answer)",
        ylabel="effective memory (steps back)",
        title=title or "How far back each trained model looks (90% of its gradient flow)",
    )
    axes.legend()
    axes.grid(alpha=0.3)
    return _set_margins(figure)


def gradient_flow(curves: dict[str, np.ndarray], title: str = "") -> Figure:
    """``||dLoss/dx_{t-k}||`` against the lag k, log scale, one line per label."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for label, curve in curves.items():
        style = "--" if "init" in label else "-"
        axes.plot(np.arange(len(curve)), np.maximum(curve, 1e-30), style, label=label)
    axes.set(
        xlabel="k: steps before the prediction",
        ylabel="mean ||dLoss / dx_(t-k)||",
        yscale="log",
        title=title or "Gradient flow back through time",
    )
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    return _set_margins(figure)


def search_history(
    trials: pd.DataFrame, metric: str, direction: str = "minimize", title: str = ""
) -> Figure:
    """An Optuna search's trials in the order they were asked for
    (:func:`forecast.search.trials_table`): each complete trial's value as a dot, each pruned
    one's last report as a cross, and the best value so far as a step line; log scale for a
    ratio or a loss."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    trials = trials.sort_values("number")
    for state, marker, colour in (("complete", "o", "C0"), ("pruned", "x", "C3")):
        rows = trials[trials["state"] == state]
        if len(rows):
            axes.scatter(rows["number"], rows["value"], marker=marker, color=colour, label=state)
    complete = trials[trials["state"] == "complete"]
    if len(complete):
        values = complete["value"].to_numpy()
        best = (
            np.minimum.accumulate(values)
            if direction == "minimize"
            else np.maximum.accumulate(values)
        )
        axes.step(complete["number"], best, where="post", color="black", label="best so far")
    axes.set(
        xlabel="trial (in the order the study was asked)",
        ylabel=metric,
        yscale="log" if metric != "val_accuracy" else "linear",
        title=title or "Optimisation history",
    )
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    return _set_margins(figure)


def param_importances(importances: dict[str, float], title: str = "") -> Figure:
    """Each searched parameter's importance (:func:`forecast.search.param_importances`), as
    horizontal bars, the most important on top."""
    names = sorted(importances, key=importances.get)
    figure = Figure(figsize=(7, 1.2 + 0.45 * len(names)))
    axes = figure.subplots()
    axes.barh(names, [importances[name] for name in names], color="C0")
    axes.set(xlabel="importance (Optuna's PED-ANOVA, summing to 1)", title=title)
    axes.grid(alpha=0.3, axis="x")
    return _set_margins(figure, left=2.4)


# What ``gate_activations`` reports beside the gates: states and proposals, not in [0, 1].
NOT_GATES = ("candidate", "cell", "hidden", "normalizer", "stabilizer")


def gate_names(activations: dict[str, np.ndarray]) -> list[str]:
    """The gates among a layer's reported activations (an LSTM's forget, input and output; a
    GRU's update and reset; none for a vanilla RNN)."""
    return [name for name in activations if name not in NOT_GATES]


def gates(
    activations: dict[str, np.ndarray], memory_steps: int = 0, units: int = 6, layer: str = "LSTM"
) -> Figure:
    """A recurrent ``layer``'s gates over time for one sample (see :func:`gate_names`): the
    ``units`` units whose gates move most, and the mean over all units (thick).

    ``memory_steps``: the last input steps that carry nothing about the answer, so that only
    memory bridges them (a synthetic task's gap), shaded: a unit that remembers keeps its
    forget gate near 1 and its input gate near 0 there. 0 (a real series, whose ``gap`` lies
    after the input window) shades nothing."""
    names = gate_names(activations)
    sample = {name: activations[name][0] for name in names}  # (time, units)
    spread = sum(values.std(axis=0) for values in sample.values())
    chosen = np.argsort(spread)[::-1][:units]
    time = sample[names[0]].shape[0]
    figure = Figure(figsize=(7, 1.8 * len(names) + 0.6))
    rows = figure.subplots(len(names), 1, sharex=True)
    rows = np.atleast_1d(rows)
    for axes, name in zip(rows, names, strict=True):
        for unit in chosen:
            axes.plot(sample[name][:, unit], linewidth=0.9, label=f"unit {unit}")
        axes.plot(sample[name].mean(axis=1), color="black", linewidth=2, label="mean")
        if memory_steps > 0:
            axes.axvspan(time - memory_steps, time - 1, color="grey", alpha=0.15)
        axes.set(ylabel=f"{name} gate", ylim=(-0.02, 1.02))
        axes.grid(alpha=0.3)
    rows[0].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    shaded = " (gap shaded)" if memory_steps > 0 else ""
    rows[0].set_title(f"{layer} gates over time, one test sample{shaded}")
    rows[-1].set_xlabel("time step")
    figure.subplots_adjust(hspace=0.12)
    return _set_margins(figure, right=0.95)  # the legend sits right of the axes


def forecast(
    truth: np.ndarray,
    predictions: np.ndarray,
    baselines: dict[str, np.ndarray],
    limit: int = 400,
) -> Figure:
    """A synthetic task's truth, model and baseline forecasts of its first ``limit`` test
    samples (first output). The axis spans the truth and the model's forecasts."""

    def first(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        values = np.broadcast_to(values, np.asarray(truth).shape)
        return values.reshape(len(values), -1)[:limit, 0]

    figure = Figure(figsize=(8, 3.8))
    axes = figure.subplots()
    axes.plot(first(truth), color="black", linewidth=1.5, label="truth")
    axes.plot(first(predictions), label="model")
    for name, values in baselines.items():
        axes.plot(first(values), linestyle="--", linewidth=1, label=f"naive {name}")
    shown = [first(truth), first(predictions)]
    bottom, top = min(map(np.min, shown)), max(map(np.max, shown))
    margin = 0.1 * (top - bottom) or 1.0
    axes.set_ylim(bottom - margin, top + margin)
    axes.set(xlabel="test sample", ylabel="target", title="Test forecasts")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _set_margins(figure)


def series_forecast(
    values: np.ndarray,
    origins: np.ndarray,
    gap: int,
    forecasts: dict[str, np.ndarray],
    band: np.ndarray | None = None,
    fold_starts: list[int] = (),
    most_paths: int = 120,
) -> Figure:
    """A series' test forecasts as a forecaster reads them: the truth (``values``, one
    target, with some of the past before the first origin), and from origins a horizon apart,
    each forecaster's whole path over the horizon (``forecasts``: name -> (origins, horizon),
    the network as ``model``) and the network's interval ``band`` (origins, horizon, 2). A
    single origin draws its whole path; paths are drawn from at most ``most_paths`` origins.
    Dotted lines mark where each backtest fold after the first starts (``fold_starts``,
    indices of ``origins``)."""
    horizon = next(iter(forecasts.values())).shape[1]
    drawn, next_free = [], -np.inf
    for index, origin in enumerate(origins):  # paths that do not overlap, in time order
        if origin >= next_free and len(drawn) < most_paths:
            drawn.append(index)
            next_free = origin + horizon
    steps = np.arange(gap + 1, gap + 1 + horizon)
    first = int(origins[drawn[0]])
    last = int(origins[drawn[-1]] + steps[-1])
    context = max(horizon, 12)
    figure = Figure(figsize=(8, 3.8))
    axes = figure.subplots()
    shown = np.arange(max(first - context, 0), min(last + 1, len(values)))
    axes.plot(shown, values[shown], color="black", linewidth=1.5, label="truth")
    # One line per forecaster, its paths split by NaN: a line per path made the figure cost
    # seconds to build and draw with a hundred origins.
    at = np.concatenate([np.append(origins[index] + steps, np.nan) for index in drawn])
    for name in ["model", *[key for key in forecasts if key != "model"]]:
        paths = np.concatenate([np.append(forecasts[name][index], np.nan) for index in drawn])
        style = {"linewidth": 1.5} if name == "model" else {"linestyle": "--", "linewidth": 1}
        line = axes.plot(at, paths, label=name, **style)[0]
        if name == "model" and band is not None:
            bounds = [
                np.concatenate([np.append(band[index, :, side], np.nan) for index in drawn])
                for side in (0, 1)
            ]
            axes.fill_between(at, *bounds, color=line.get_color(), alpha=0.25, label="interval")
    # The axis spans the truth, the model and its interval: a baseline far off (the mean of a
    # trending series) runs off it.
    kept = [values[shown], forecasts["model"][drawn]]
    if band is not None:
        kept.append(band[drawn])
    bottom, top = min(map(np.min, kept)), max(map(np.max, kept))
    margin = 0.1 * (top - bottom) or 1.0
    axes.set_ylim(bottom - margin, top + margin)
    for start in fold_starts:
        axes.axvline(origins[start] + 0.5, color="grey", linestyle=":", linewidth=1)
    if len(drawn) <= 12:  # few enough origins to mark each
        for index in drawn:
            axes.axvline(origins[index], color="grey", linestyle="-", linewidth=0.5, alpha=0.5)
    every = "" if len(drawn) == 1 else f" from {len(drawn)} origins, a horizon apart"
    axes.set(xlabel="step of the series", ylabel="target", title=f"Test forecasts{every}")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _set_margins(figure)
