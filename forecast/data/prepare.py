"""What an experiment's config makes of its data: a trial's folds, a synthetic task's drawn
splits or a series' (or a panel's) backtest folds, loaded, split, scaled and windowed; and
the names the data goes by in tables and runs."""

from __future__ import annotations

from pathlib import Path

from forecast.config import DataConfig, ExperimentConfig
from forecast.data.panels import panel_splits
from forecast.data.sources import load_panel, load_series
from forecast.data.splits import SeriesData, Splits, backtest_splits, synthetic_splits
from forecast.tasks import task_function


def make_folds(
    config: ExperimentConfig,
    gap: int,
    seed: int,
    prepared: tuple[SeriesData, ...] | None = None,
) -> list[tuple[Splits, SeriesData | None]]:
    """The train / validation / test splits of a trial: a synthetic task drawn at ``gap`` with
    ``seed`` (one fold), or each backtest fold of the config's series (and what reads results
    in its units), ``prepared`` already or prepared now."""
    if config.data is not None:
        if prepared is None:
            prepared = prepare_series(config.data, config.evaluation.step)
        folds = prepared
        return [(series.splits, series) for series in folds]
    task = config.task
    splits = synthetic_splits(
        task_function(task.name), gap, seed, task.n_train, task.n_val, task.n_test, **task.params
    )
    return [(splits, None)]


def prepare_series(data: DataConfig, test_step: int = 1) -> list[SeriesData]:
    """Load, validate, split, scale and window the series of a ``data`` config section: one
    :class:`SeriesData` per backtest fold, its test windows every ``test_step`` steps
    (``evaluation.step``)."""
    columns = None
    if data.feature_columns is not None or data.target_columns is not None:
        named = [*(data.feature_columns or []), *(data.target_columns or [])]
        columns = list(dict.fromkeys([*named, *(data.future_columns or []), *data.static_columns]))
    split = dict(
        input_width=data.input_width,
        horizon=data.horizon,
        gap=data.gap,
        stride=data.stride,
        test_stride=test_step,
        feature_columns=data.feature_columns,
        target_columns=data.target_columns,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        scaler=data.scaler,
        relative=data.relative,
        future_columns=data.future_columns,
        calendar=data.calendar,
        fillna=data.fillna,
        target_transform=data.transform,
    )
    if data.deseasonalize is not None:  # panels are refused by the config's validation
        split["deseasonalize"] = data.seasons
    folds, refit = data.backtest.folds, data.backtest.refit
    if data.series_column is not None:  # many series, one model
        frames = load_panel(data.source, data.series_column, data.time_column, columns, data.fillna)
        return panel_splits(
            frames,
            data.series_column,
            folds,
            refit,
            static_columns=data.static_columns,
            series_index=data.series_embedding is not None,
            **split,
        )
    frame = load_series(data.source, data.time_column, columns, data.fillna)
    return backtest_splits(frame, folds, refit, **split)


def prepare_unswept(config: ExperimentConfig) -> tuple[SeriesData, ...] | None:
    """``config.data``'s folds (:func:`prepare_series`), read before TensorFlow loads so that
    a data problem is one line at once; None for a task, or where a sweep changes the data
    section or the test windows' step (each sweep point's is read as the plan checks it)."""
    sweep = config.sweep
    swept = [*sweep.grid, *sweep.space] if sweep is not None else []
    if config.data is None or any(
        key.startswith("data.") or key == "evaluation.step" for key in swept
    ):
        return None
    return tuple(prepare_series(config.data, config.evaluation.step))


def data_source(config: ExperimentConfig) -> str:
    """What the data comes from: the task's name or the series' source."""
    return config.task.name if config.task is not None else config.data.source


def series_name(data: DataConfig) -> str:
    """A single series' id in the forecasts table: its source's name (``co2``, or a CSV's
    file name without ``.csv``)."""
    return Path(data.source).stem
