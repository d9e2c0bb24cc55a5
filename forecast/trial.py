"""One trial, top to bottom: config -> splits -> model -> train -> test forecasts and metrics ->
gradient flow and figures, returned as a :class:`TrialOutcome`.

Nothing here records anything. The caller (:func:`forecast.execution.execute_trial`) hands in
its tracker's per-epoch logger as a Keras callback and records the outcome, so a trial runs the
same way in this process, in a worker process or as a Ray task.

One thing outlives a trial: ``_TRACED``, this process's last few compiled models by what they
compute. TensorFlow traces a model's training, prediction and gradient graphs on first use,
about 2-3 s a trial; the trials of one shape (the seeds of a model at a gap) reuse one model
and its graphs, each starting from the weights, random state and optimizer state its own seed
gives a fresh model, so its results are those of a fresh model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecast import plots
from forecast.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    results_digest,
)
from forecast.data import (
    SeriesData,
    Splits,
    WindowView,
    make_folds,
    refit_every,
    series_name,
    to_dataset,
)
from forecast.distributed import make_strategy
from forecast.evaluation import (
    class_frequencies,
    classification_score,
    effective_memory,
    fold_means,
    insample_scale,
    make_gradient_flow,
    metric_name,
    score,
    score_forecasts,
    series_forecasts,
    split_conformal,
    step_mse,
)
from forecast.forecasters import baseline_forecasts, baseline_names
from forecast.models import build_configured
from forecast.training import (
    Pruner,
    TrainResult,
    compile_model,
    make_loss,
    model_output_shape,
    train,
)

GRADIENT_PROBE = 128  # test samples whose input gradients trace the gradient flow
# A trial's fixed cost (building, evaluating, plotting) in time steps of sequence, for the
# ETA; fitted to sine_long_gap on a 2-core machine (a trial took ~4 s + 0.05 s a step, which
# `make bench-experiment` checks: docs/time-to-result.md).
TRIAL_OVERHEAD_STEPS = 80


@dataclass(frozen=True)
class Trial:
    """One unit of work: a model trained on one gap with one seed, at one sweep point."""

    config: ExperimentConfig  # resolved for the sweep point
    model: ModelConfig
    gap: int
    seed: int
    point: str = ""  # the sweep point's label, "" without a sweep
    # A series' backtest folds, read and split once by the plan and shared by the trials of
    # its data section (sent along to a worker process); None: the trial prepares them.
    prepared: tuple[SeriesData, ...] | None = field(default=None, repr=False, compare=False)
    # An Optuna search's trial number (the first one's, if an interruption asked for it
    # again): two trials that sampled the same values are still two trials.
    search_trial: int | None = None
    classes: int | None = None  # a categorical task's number of classes (from the plan's probe)

    @property
    def label(self) -> str:
        """The model's name in tables and plots: with its sweep point, if any."""
        return f"{self.model.name} [{self.point}]" if self.point else self.model.name

    @property
    def run_name(self) -> str:
        base = f"{self.model.name}-gap{self.gap}-seed{self.seed}"
        return f"{base} {self.point}" if self.point else base

    @functools.cached_property
    def digest(self) -> str:
        """Identifies the trial across invocations, for resuming: changes with any setting
        that can change its results."""
        searched = () if self.search_trial is None else (self.search_trial,)
        return results_digest(self.config, self.model.name, self.gap, self.seed, *searched)

    @property
    def work(self) -> float:
        """Relative cost, for the ETA: sequence length plus a fixed overhead, times epochs
        (times the folds a backtest trains on)."""
        data = self.config.data
        length = self.gap + (data.input_width if data else 20)
        trainings = 1
        if data:  # the folds it trains before
            folds = data.backtest.folds
            trainings = -(-folds // refit_every(data.backtest.refit, folds))
        trainings *= 2 if data and self.config.train.refit else 1  # at most as many epochs again
        return (length + TRIAL_OVERHEAD_STEPS) * self.config.train.epochs * trainings


@dataclass(frozen=True)
class TrialOutcome:
    """What one trial produced, for the edge to record."""

    model: keras.Model
    splits: Splits
    history: dict[str, list[float]]  # per-epoch losses
    # Test errors (means over backtest folds), train_seconds, and the effective_memory of the
    # trained gradient flow (forecast.evaluation.effective_memory).
    metrics: dict[str, float]
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"
    figures: dict[str, Figure]  # artifact file name -> figure
    fold_metrics: list[dict[str, float]]  # each backtest fold's test errors; [] for one fold
    series: SeriesData | None  # a series' last fold: what forecasts from its raw rows
    specifications: dict[str, str]  # baseline -> the model its automatic selection chose
    # Every forecaster's test forecasts, each fold's (TestResult.forecasts, with ``fold``), and
    # a series' in-sample scales per fold.
    forecasts: pd.DataFrame
    scales: pd.DataFrame
    pruned_at: int | None = None  # the epoch after which a pruner stopped its training


class TrainingDiverged(RuntimeError):
    """Training stopped on a NaN or infinite loss: the trial has no model worth evaluating."""


def run_trial(
    trial: Trial,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: Path | None = None,
    pruner: Pruner | None = None,
) -> TrialOutcome:
    """Train and evaluate one model; ``callbacks`` see every epoch, ``checkpoint_dir`` holds
    the per-epoch backup that lets an interrupted trial resume, and ``pruner`` (or the config's
    give-up rule) may stop training early (see :func:`forecast.training.train`); a stopped
    trial is still evaluated, as it stands.

    A series backtested on several folds (``data.backtest``) trains a fresh model on each
    fold's past (or, with ``refit`` k, on every k-th; without, once on the first fold's) and
    scores it on that fold:
    the outcome's metrics are the means over folds, with ``<metric>_ci95`` intervals, and
    ``fold_metrics`` holds each fold's. Its epochs continue across folds (fold 2 of 10-epoch
    trainings runs epochs 10-19), so the callbacks see one run of epochs.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        Exception: whatever the data, the model or training raise; the caller ends the trial
            FAILED with it and the sweep goes on.
    """
    config, gap, seed = trial.config, trial.gap, trial.seed
    # Drop what the previous trial built (but for _TRACED). Without the full garbage collection
    # that clear_session runs by default: 0.44 s a trial, a sixth of a small trial's cost; the
    # collector's own passes reclaim the rest.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    folds = make_folds(config, gap, seed, trial.prepared)
    every = 1 if config.data is None else refit_every(config.data.backtest.refit, len(folds))
    strategy = make_strategy(config.train.strategy)  # one per process, reused

    fold_metrics, drawn, forecasts, scales, train_seconds, pruned_at = [], [], [], [], 0.0, None
    flow: dict[str, np.ndarray] = {}  # the first fold's
    specifications: dict[str, list[str]] = {}  # each automatic baseline's choice, per fold
    for index, (splits, series) in enumerate(folds):
        if index % every == 0:
            backups = _fold_backups(checkpoint_dir, index, len(folds))
            fit = _fit_fold(trial, index, splits, series, strategy, callbacks, backups, pruner)
            flow = fit.flow or flow
            pruned_at = pruned_at or fit.result.pruned_at
            train_seconds += fit.seconds
        tested = _test_metrics(fit.model, trial, splits, series, fit.interval)
        metrics = tested.metrics
        if fit.refit_epochs is not None:
            metrics["refit_epochs"] = float(fit.refit_epochs)
        fold_metrics.append(metrics)
        drawn.append(tested.drawn)
        forecasts.append(tested.forecasts.assign(fold=index))
        scales.append(tested.scales.assign(fold=index))
        for name, specification in tested.specifications.items():
            specifications.setdefault(name, []).append(specification)

    metrics = fold_means(fold_metrics) if len(folds) > 1 else fold_metrics[0]
    metrics["train_seconds"] = train_seconds
    metrics["effective_memory"] = effective_memory(flow["trained"])
    figures = {"gradient_flow.png": plots.gradient_flow(flow)}
    if drawn[0] is not None:
        figures.update(_forecast_figures(drawn, [series for _, series in folds]))
    figures.update(_gate_figure(fit.model, splits, gap if series is None else 0))
    if series is not None:  # what the logged model forecasts with
        series = _serving_series(series, config, fit.interval)
    return TrialOutcome(
        fit.model,
        splits,
        fit.result.history,
        metrics,
        flow,
        figures,
        fold_metrics if len(folds) > 1 else [],
        series,
        # One value per baseline; a backtest's folds in order, where their choices differ.
        {name: " | ".join(dict.fromkeys(chosen)) for name, chosen in specifications.items()},
        pd.concat(forecasts, ignore_index=True),
        pd.concat(scales, ignore_index=True),
        pruned_at,
    )


@dataclass(frozen=True)
class FoldFit:
    """A model trained on one fold's past, as :func:`_fit_fold` returns it."""

    model: keras.Model  # the one to test: refitted on train + validation where configured
    result: TrainResult  # its training (before any refit)
    interval: tuple[np.ndarray, np.ndarray] | None  # a series' conformal widths, if calibrated
    refit_epochs: int | None  # the epochs a refit on train + validation ran
    seconds: float  # training and refitting
    flow: dict[str, np.ndarray]  # the first fold's gradient flow, "at init" and "trained"


def _fit_fold(
    trial: Trial,
    index: int,
    splits: Splits,
    series: SeriesData | None,
    strategy: object,
    callbacks: Sequence[keras.callbacks.Callback],
    backups: Path | None,
    pruner: Pruner | None,
) -> FoldFit:
    """Train a fresh model on fold ``index``'s past; calibrate a series' interval on the
    validation windows it did not train on; then, for a series with ``train.refit``, train a
    fresh one on train + validation for the epochs early stopping chose, so that the most
    recent data trains it (a task's parts are exchangeable draws, none more recent)."""
    config, seed = trial.config, trial.seed
    # The multi-worker loop validates every epoch, so it does not refit.
    multi_worker = config.train.strategy == "multi_worker"
    retrain_on_all = config.data is not None and config.train.refit and not multi_worker
    model, gradient_flow = _fresh_model(trial, splits, strategy, reseed=index > 0)
    flow = {}
    probe = (splits.x_test[:GRADIENT_PROBE], splits.y_test[:GRADIENT_PROBE])
    if index == 0:  # the gradient flow of the first fold's model, before and after
        flow["at init"] = gradient_flow(*probe)
    result = train(
        model,
        splits,
        config.train,
        seed,
        list(callbacks),
        backups,
        strategy,
        compiled=strategy is None,  # by _traced_like
        first_epoch=index * config.train.epochs,
        pruner=pruner,
    )
    if result.failure is not None:
        raise TrainingDiverged(result.failure)
    if index == 0:
        flow["trained"] = gradient_flow(*probe)
    # Forecasts of windows the model did not train on calibrate its interval (before a refit
    # trains it on them).
    interval = None
    if series is not None and config.evaluation.conformal:
        val_outputs = _predict(model, splits.x_val, splits.y_val)
        interval = conformal_widths(val_outputs, splits, series, config)
    seconds, epochs = result.seconds, None
    if retrain_on_all:
        epochs = chosen_epochs(result.history, config.train)
        model, _ = _fresh_model(trial, splits, strategy, reseed=True)
        refit = dataclasses.replace(config.train, epochs=epochs, early_stopping_patience=None)
        refitted = train(
            model,
            with_validation_in_training(splits),
            refit,
            seed,
            strategy=strategy,
            compiled=strategy is None,
        )
        if refitted.failure is not None:
            raise TrainingDiverged(f"refitting: {refitted.failure}")
        seconds += refitted.seconds
    return FoldFit(model, result, interval, epochs, seconds, flow)


def _gate_figure(model: keras.Model, splits: Splits, gap: int) -> dict[str, Figure]:
    """``gates.png``: the first layer's gates on one test sample, where the layer reports them
    (ours do, as may a user's, with the same method); ``gap``: where it lies in the input."""
    first = model.layers[0]
    if not hasattr(first, "gate_activations"):
        return {}
    activations = first.gate_activations(splits.x_test[:1])  # plots.gates shows one sample
    if not plots.gate_names(activations):
        return {}
    return {"gates.png": plots.gates(activations, gap, layer=type(first).__name__)}


def _serving_series(
    series: SeriesData, config: ExperimentConfig, interval: tuple[np.ndarray, np.ndarray] | None
) -> SeriesData:
    """The series as the logged model forecasts with it: a column per quantile of a quantile
    model, and the last fold's calibrated interval."""
    transform = series.transform
    if config.train.loss == "quantile":
        transform = transform.with_quantiles(config.train.quantiles)
    if interval is not None:
        transform = transform.with_interval(*interval)
    return dataclasses.replace(series, transform=transform)


def _forecast_figures(
    forecasts: list[dict[str, np.ndarray]], fold_series: list[SeriesData | None]
) -> dict[str, Figure]:
    """The forecast figure of a task (``forecast.png``: its test samples' first output), of a
    series (``forecast.png``: the whole horizon path from its test origins, every fold's), or
    of each of a panel's first ``PANEL_SERIES_DRAWN`` series (``forecast/<id>.png``)."""
    if fold_series[0] is None:  # a synthetic task
        drawn = dict(forecasts[0])
        truth, predictions = drawn.pop("truth"), drawn.pop("model")
        return {"forecast.png": plots.forecast(truth, predictions, drawn)}
    panel = fold_series[0].series is not None
    names = list(fold_series[0].windows("test"))[:PANEL_SERIES_DRAWN]
    figures = {}
    for name in names:
        pieces, origins = [], []
        for forecast, series in zip(forecasts, fold_series, strict=True):
            windows = series.windows("test")[name]
            own = series.member(name)
            # The first target; the band keeps its last axis (lower, upper).
            pieces.append(
                {
                    key: values[windows][..., 0, :] if key == "band" else values[windows][..., 0]
                    for key, values in forecast.items()
                }
            )
            origins.append(own.origins["test"])
        drawn = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
        band = drawn.pop("band", None)  # (origins, horizon, 2) once the target axis is gone
        drawn.pop("truth")
        part = fold_series[-1].member(name)
        fold_starts = np.cumsum([len(piece["model"]) for piece in pieces[:-1]])
        figure = plots.series_forecast(
            part.values[:, 0],
            np.concatenate(origins),
            part.gap,
            drawn,
            band,
            [int(start) for start in fold_starts],
        )
        figures[f"forecast/{name}.png" if panel else "forecast.png"] = figure
    return figures


PANEL_SERIES_DRAWN = 12  # each figure costs a trial about 0.1 s and its run an artifact


def _fold_backups(checkpoint_dir: Path | None, index: int, folds: int) -> Path | None:
    """Where fold ``index``'s training backs up its epochs: a folder of its own per fold."""
    if checkpoint_dir is None or folds == 1:
        return checkpoint_dir
    return checkpoint_dir / f"fold{index + 1}"


@dataclass(frozen=True)
class TestResult:
    """A model's test part, scored (see :func:`_test_metrics`)."""

    metrics: dict[str, float]  # the network's own, named (forecast.evaluation.metric_name)
    # Every forecaster's forecasts as long rows: a series' (forecast.evaluation.series_forecasts)
    # or a task's (task_forecasts), in original units.
    forecasts: pd.DataFrame
    # A series' in-sample scale per (series, target), which MASE, RMSSE and MSIS divide by.
    scales: pd.DataFrame
    drawn: dict[str, np.ndarray] | None  # the forecasts the figures draw
    specifications: dict[str, str]  # the model each automatic baseline chose


def _test_metrics(
    model: keras.Model,
    trial: Trial,
    splits: Splits,
    series: SeriesData | None,
    interval: tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]] | None,
) -> TestResult:
    """A model's test forecasts and metrics, the forecasts to draw (but for a categorical
    task's logits), in the targets' original units (``truth``, ``model``, each baseline by
    name, and the model's interval as ``band``: its lower and upper forecasts on a last axis),
    and for a series the model each automatic baseline chose. ``interval``: a series'
    calibrated interval (:func:`conformal_widths`), or None."""
    config, network = trial.config, trial.model.name
    outputs = _predict(model, splits.x_test, splits.y_test)
    if splits.classes is not None:
        metrics = classification_score(outputs, splits.y_test, splits.y_train, config.solved_ratio)
        forecasts = task_forecasts(network, outputs, splits.y_test, splits.y_train, classes=True)
        return TestResult(metrics, forecasts, pd.DataFrame(), None, {})
    if series is None:
        metrics = score(outputs, splits.y_test, splits.y_train, config.solved_ratio)
        mean = np.broadcast_to(splits.y_train.mean(axis=0), splits.y_test.shape)
        drawn = {"truth": splits.y_test, "model": outputs, "mean": mean}
        forecasts = task_forecasts(network, outputs, splits.y_test, splits.y_train)
        return TestResult(metrics, forecasts, pd.DataFrame(), drawn, {})
    return score_series(outputs, interval, splits, series, config, network)


def score_series(
    outputs: np.ndarray,
    interval: tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]] | None,
    splits: Splits,
    series: SeriesData,
    config: ExperimentConfig,
    network: str,
) -> TestResult:
    """A series' (or a panel's) test forecasts and metrics, from the network's ``outputs`` on
    the test windows (and its conformal ``interval``, :func:`conformal_widths`, if any): the
    network (named ``network``) and every baseline forecaster forecast the same origins and
    steps into one long table (which :class:`forecast.results.Results` scores); the metrics are
    the network's, each series scaled by its own in-sample error, pooled over series and, for a
    panel, per series too."""
    data = config.data
    quantiles = config.train.quantiles if config.train.loss == "quantile" else None
    points, quantile_forecasts = _in_original_units(outputs, series, "test", quantiles)
    truth = series.to_original_units(np.asarray(splits.y_test))
    band, level = _network_band(points, quantile_forecasts, quantiles, interval, series)
    names = baseline_names(data.baselines, data.seasons)
    frames, scales, drawn_baselines, specifications = [], [], {}, {}
    for name, windows in series.windows("test").items():
        part = series.member(name)
        series_id = name or series_name(data)
        longest = max(data.seasons, default=None)
        scale_mae, scale_mse = insample_scale(part.values[: part.fit_end], longest)
        scales.append(
            pd.DataFrame(
                {
                    "series": series_id,
                    "target": series.target_columns,
                    "scale_mae": scale_mae,
                    "scale_mse": scale_mse,
                }
            )
        )
        calibrated = level if interval is not None else None
        baselines, bands, chosen = _baselines(part, data, names, calibrated)
        specifications = specifications or chosen  # a panel's first series speaks for it
        if band is not None:
            bands[network] = band[windows]
        rows_of = functools.partial(
            series_forecasts,
            series=series_id,
            targets=series.target_columns,
            truth=truth[windows],
            origins=part.origins["test"],
            times=part.times,
            gap=data.gap,
            level=level,
        )
        frames.append(
            rows_of(
                network,
                forecast=points[windows],
                band=bands.get(network),
                quantile_forecasts=None if quantiles is None else quantile_forecasts[windows],
                quantiles=quantiles,
            )
        )
        for forecaster, forecast in baselines.items():
            frames.append(rows_of(forecaster, forecast=forecast, band=bands.get(forecaster)))
            drawn_baselines.setdefault(forecaster, []).append(forecast)
    forecasts = pd.concat(frames, ignore_index=True)
    scales = pd.concat(scales, ignore_index=True)
    metrics = _network_metrics(forecasts, scales, network, series.series is not None, quantiles)
    if level is not None:
        metrics["nominal_coverage"] = level
    metrics.update(step_mse(points, truth))
    drawn = {"truth": truth, "model": points}
    drawn.update({name: np.concatenate(parts) for name, parts in drawn_baselines.items()})
    if band is not None:
        drawn["band"] = band
    return TestResult(metrics, forecasts, scales, drawn, specifications)


def _network_band(
    points: np.ndarray,
    quantile_forecasts: np.ndarray | None,
    quantiles: list[float] | None,
    interval: tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]] | None,
    series: SeriesData,
) -> tuple[np.ndarray | None, float | None]:
    """The network's interval on the test windows (a last axis of lower and upper bounds) and
    its nominal coverage: a quantile model's outer quantiles, widened by its conformal
    ``interval`` where there is one (each series by its own widths); (None, None) for a point
    model without one."""
    band, level = None, None
    if quantiles is not None:
        band, level = quantile_forecasts[..., [0, -1]], quantiles[-1] - quantiles[0]
    if interval is not None:
        level, widths = interval
        base = np.stack([points, points], axis=-1) if quantiles is None else band
        band = np.empty((*points.shape, 2))
        for name, windows in series.windows("test").items():
            below, above = widths[name]
            band[windows] = base[windows] + np.stack([-below, above], axis=-1)
    return band, level


def _baselines(
    part: SeriesData, data: DataConfig, names: list[str], level: float | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    """Each baseline forecaster's forecasts of one series' test windows, fitted on its past;
    with a conformal ``level``, their intervals too, calibrated as the network's is: fitted on
    the train part, on the validation windows they have not seen. Also returns the model each
    automatic baseline chose."""
    forecast_from = functools.partial(
        baseline_forecasts,
        part.values,
        horizon=data.horizon,
        gap=data.gap,
        seasons=data.seasons,
        names=names,
    )
    baselines, chosen = forecast_from(fit_end=part.fit_end, origins=part.origins["test"])
    bands = {}
    if level is not None:
        val_baselines, _ = forecast_from(fit_end=part.split_lengths[0], origins=part.origins["val"])
        val_targets = part.values[_target_steps(part.origins["val"], data.gap, data.horizon)]
        for forecaster, forecast in baselines.items():
            below, above = split_conformal(val_baselines[forecaster], val_targets, level)
            bands[forecaster] = np.stack([forecast - below, forecast + above], axis=-1)
    return baselines, bands, chosen


def _network_metrics(
    forecasts: pd.DataFrame,
    scales: pd.DataFrame,
    network: str,
    panel: bool,
    quantiles: list[float] | None,
) -> dict[str, float]:
    """The network's own test metrics, pooled over the series and a panel's per series, named
    as the trials table and its run hold them (:func:`forecast.evaluation.metric_name`). The
    baselines' are scored from the same table by :class:`forecast.results.Results`."""
    own = forecasts[forecasts["forecaster"] == network]
    scored = score_forecasts(own, scales, ["forecaster"], quantiles=quantiles)
    metrics = {metric_name(metric): value for _, metric, value in scored.itertuples(index=False)}
    if panel:
        by_series = score_forecasts(own, scales, ["series"], quantiles=quantiles)
        metrics.update(
            {
                metric_name(metric, series): value
                for series, metric, value in by_series.itertuples(index=False)
            }
        )
    return metrics


def task_forecasts(
    network: str,
    outputs: np.ndarray,
    truth: np.ndarray,
    train_targets: np.ndarray,
    classes: bool = False,
) -> pd.DataFrame:
    """A synthetic task's test forecasts as long rows, one per (forecaster, sample, position):
    the network's and the trivial baseline's (``mean``, the train targets' mean; for a
    categorical task ``frequencies``, the train labels' per position). A regression's rows hold
    ``y`` and ``yhat``; a categorical task's ``y`` (the label), ``yhat`` (the most likely
    class) and ``probability`` (of the label)."""
    if classes:
        from scipy.special import softmax

        trivial = class_frequencies(train_targets, outputs.shape[-1])
        by_forecaster = {
            network: softmax(outputs.astype(np.float64), axis=-1),
            "frequencies": np.broadcast_to(trivial, outputs.shape),
        }
        columns = {
            name: {
                "y": truth.reshape(len(truth), -1),
                "yhat": probabilities.argmax(-1).reshape(len(truth), -1),
                "probability": np.take_along_axis(probabilities, truth[..., None], -1).reshape(
                    len(truth), -1
                ),
            }
            for name, probabilities in by_forecaster.items()
        }
    else:
        mean = np.broadcast_to(train_targets.mean(axis=0), truth.shape)
        columns = {
            name: {"y": truth.reshape(len(truth), -1), "yhat": forecast.reshape(len(truth), -1)}
            for name, forecast in {network: outputs, "mean": mean}.items()
        }
    samples, positions = columns[network]["y"].shape
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "forecaster": name,
                    "sample": np.repeat(np.arange(samples), positions),
                    "position": np.tile(np.arange(positions), samples),
                    **{key: values.ravel() for key, values in own.items()},
                }
            )
            for name, own in columns.items()
        ],
        ignore_index=True,
    )


def conformal_widths(
    val_outputs: np.ndarray, splits: Splits, series: SeriesData, config: ExperimentConfig
) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The network's interval from its forecasts of the validation windows: its nominal
    coverage (``evaluation.interval``, or a quantile model's outer quantiles') and, per series
    (``""`` for one), the half-widths (horizon, targets) in original units to take below and
    add above its forecast (a quantile model: its outer quantiles), by
    :func:`forecast.evaluation.split_conformal`."""
    quantiles = config.train.quantiles if config.train.loss == "quantile" else None
    level = quantiles[-1] - quantiles[0] if quantiles else config.evaluation.interval
    points, quantile_forecasts = _in_original_units(val_outputs, series, "val", quantiles)
    forecasts = points if quantiles is None else quantile_forecasts[..., [0, -1]]
    truth = series.to_original_units(np.asarray(splits.y_val), "val")
    widths = {
        name: split_conformal(forecasts[windows], truth[windows], level)
        for name, windows in series.windows("val").items()
    }
    return level, widths


def _target_steps(origins: np.ndarray, gap: int, horizon: int) -> np.ndarray:
    """The steps each origin's window forecasts, (origins, horizon)."""
    return origins[:, None] + gap + 1 + np.arange(horizon)[None, :]


def _in_original_units(
    outputs: np.ndarray, series: SeriesData, part: str, quantiles: list[float] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A model's outputs on a part's windows in original units: its point forecasts (a
    quantile model's median), and a quantile model's forecasts with a last axis of
    quantiles (None for a point model)."""
    if quantiles is None:
        return series.to_original_units(outputs, part), None
    per_quantile = [series.to_original_units(outputs[..., i], part) for i in range(len(quantiles))]
    quantile_forecasts = np.stack(per_quantile, axis=-1)
    return quantile_forecasts[..., quantiles.index(0.5)], quantile_forecasts


def _fresh_model(
    trial: Trial, splits: Splits, strategy: object, reseed: bool
) -> tuple[keras.Model, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """The trial's model as its seed initialises it, compiled, and its gradient flow;
    ``reseed`` starts the random state from the seed again (every fold's model, and a refitted
    one, starts where the first did)."""
    config = trial.config
    if reseed:
        keras.utils.set_random_seed(trial.seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_configured(
            trial.model,
            splits.input_shape,
            model_output_shape(splits.output_shape, config.train),
            splits.per_step,
            splits.future_steps,
            splits.static_columns,
            splits.series_count,
            embedding_dimension(config),
        )
    if strategy is None:  # a strategy's model lives in its scope: built afresh
        return _traced_like(model, _shape_key(trial, splits), config, splits)
    return model, make_gradient_flow(model, make_loss(config.train, splits.classes))


def embedding_dimension(config: ExperimentConfig) -> int:
    """The series embedding's dimension (``data.series_embedding``); 0 for none."""
    return (config.data.series_embedding or 0) if config.data is not None else 0


def chosen_epochs(history: dict[str, list[float]], train_config: TrainConfig) -> int:
    """The epochs a model trained for, as its weights have them: up to its best validation
    loss with early stopping (which restores that epoch's weights), else every epoch run."""
    if train_config.early_stopping_patience is not None and history.get("val_loss"):
        return int(np.argmin(history["val_loss"])) + 1
    return len(history["loss"])


def with_validation_in_training(splits: Splits) -> Splits:
    """``splits`` with the validation windows moved into training and none left to validate
    on: what a refit trains on. A series' windows are joined by their start indices."""
    if isinstance(splits.x_train, WindowView) and isinstance(splits.x_val, WindowView):
        joined = splits.x_train.windows.concat(splits.x_val.windows)
        x_train, y_train = joined.inputs, joined.targets
    else:
        x_train = np.concatenate([splits.x_train, splits.x_val])
        y_train = np.concatenate([splits.y_train, splits.y_val])
    return dataclasses.replace(
        splits, x_train=x_train, y_train=y_train, x_val=splits.x_val[:0], y_val=splits.y_val[:0]
    )


def _predict(model: keras.Model, inputs: np.ndarray | WindowView, targets: Any) -> np.ndarray:
    """``model``'s outputs on a part's inputs; a series' windows are gathered batch by batch."""
    if isinstance(inputs, WindowView):
        return model.predict(to_dataset(inputs, targets, PREDICT_BATCH), verbose=0)
    return model.predict(inputs, verbose=0, batch_size=PREDICT_BATCH)


PREDICT_BATCH = 1024


@dataclass
class _Traced:
    model: keras.Model  # compiled, its optimizer built
    gradient_flow: Callable[[np.ndarray, np.ndarray], np.ndarray]
    optimizer_state: list[np.ndarray]  # as built, before the first step


_TRACED: OrderedDict[str, _Traced] = OrderedDict()  # see the module docstring
TRACED_MODELS_KEPT = 8  # a sweep point's models x a few gaps; each holds its graphs in memory


def _shape_key(trial: Trial, splits: Splits) -> str:
    """What a compiled model computes: the model's config, the data's shapes, the loss and
    the optimizer's settings. Not the seed: the seeds of one model at one gap share a key."""
    train_config = trial.config.train
    return json.dumps(
        [
            dataclasses.asdict(trial.model),
            list(splits.input_shape),
            list(splits.output_shape),
            splits.future_steps,
            [splits.static_columns, splits.series_count, embedding_dimension(trial.config)],
            splits.classes,
            [train_config.loss, train_config.quantiles],
            [train_config.optimizer, train_config.learning_rate, train_config.clipnorm],
        ],
        sort_keys=True,
        default=str,
    )


def _traced_like(
    fresh: keras.Model, key: str, config: ExperimentConfig, splits: Splits
) -> tuple[keras.Model, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """A compiled model that starts where ``fresh`` starts, and its gradient flow: ``fresh``
    itself the first time a shape is seen, else the model traced for that shape, given
    ``fresh``'s weights and random state and its optimizer's state as built."""
    traced = _TRACED.get(key)
    if traced is None:
        compile_model(fresh, config.train, classes=splits.classes)
        state = [variable.numpy() for variable in fresh.optimizer.variables]
        traced = _Traced(fresh, make_gradient_flow(fresh, fresh.loss), state)
        _TRACED[key] = traced
        if len(_TRACED) > TRACED_MODELS_KEPT:
            _TRACED.popitem(last=False)
        return fresh, traced.gradient_flow
    _TRACED.move_to_end(key)
    model = traced.model
    for variable, value in zip(model.variables, fresh.variables, strict=True):
        variable.assign(value)  # weights and seed generators (dropout masks)
    for variable, value in zip(model.optimizer.variables, traced.optimizer_state, strict=True):
        variable.assign(value)
    return model, traced.gradient_flow
