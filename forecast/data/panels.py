"""Many series in one model: each series of a panel split, scaled and windowed on its own, then
their windows stacked fold by fold, keeping each series' own values, scaling and transform.

A panel's series may carry static covariates (columns constant within each series: a site's
altitude, a store's size) and their index among the panel's series (for a learned embedding of
the series' identity). Both are columns appended to the pooled series array, constant within
each series, and read with every window's inputs after its other columns (and after its future
covariates, where windows have them)::

    each input row:  past features | future covariates | static covariates | series index

so training, streaming and serving keep one input array, and only the model splits them off
(see :func:`forecast.models.build_model`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from forecast.data.sources import DataError, missing_column
from forecast.data.splits import SeriesData, Splits, backtest_splits, make_scaler
from forecast.data.transforms import PanelTransform
from forecast.data.windows import Windows


def panel_splits(
    frames: dict[str, pd.DataFrame],
    series_column: str,
    folds: int = 1,
    refit: bool = True,
    static_columns: list[str] | None = None,
    series_index: bool = False,
    **split: Any,
) -> list[SeriesData]:
    """:func:`backtest_splits` of every series of a panel (:func:`load_panel`), combined fold
    by fold (:func:`combine_series`): each series is split, scaled and windowed on its own, so
    no window holds steps of two series, and one model trains on all their windows.

    ``static_columns``: columns of the frames constant within each series (see
    :func:`series_statics`), given to every window of their series instead of being read as
    features; ``series_index``: each window carries its series' index too (for an embedding).

    Raises:
        DataError: naming the series, when one cannot be split or windowed, or a static column
            it lacks or whose value varies within it.
    """
    static_columns = list(static_columns or [])
    statics = series_statics(frames, static_columns)
    frames = {name: frame.drop(columns=static_columns) for name, frame in frames.items()}
    folded = {}
    for name, frame in frames.items():
        try:
            folded[name] = backtest_splits(frame, folds, refit, **split)
        except DataError as error:
            raise DataError(f"series {name!r}: {error}") from None
    return [
        combine_series(
            {name: parts[fold] for name, parts in folded.items()},
            series_column,
            static_columns,
            statics,
            split.get("scaler", "standard"),
            series_index,
        )
        for fold in range(folds)
    ]


def series_statics(frames: dict[str, pd.DataFrame], columns: list[str]) -> dict[str, np.ndarray]:
    """Each series' values of the static ``columns``, (len(columns),) by series id.

    Static covariates are numbers (as every column :func:`load_panel` reads): a category is
    given as numeric columns (one 0/1 column per category), which the model then reads as any
    other value; a text value is refused when the panel loads.

    Raises:
        DataError: a series without one of ``columns``, or whose value of one varies.
    """
    statics = {}
    for name, frame in frames.items():
        values = []
        for column in columns:
            if column not in frame.columns:
                raise DataError(missing_column(f"series {name!r}", column, frame))
            found = pd.unique(frame[column])
            if len(found) > 1:
                raise DataError(
                    f"static column {column!r} varies within series {name!r} ({found[0]:g} "
                    f"and {found[1]:g}); a static covariate holds one value per series"
                )
            values.append(float(found[0]))
        statics[name] = np.asarray(values, np.float64)
    return statics


def combine_series(
    parts: dict[str, SeriesData],
    series_column: str,
    static_columns: list[str] | None = None,
    statics: dict[str, np.ndarray] | None = None,
    scaler: str = "standard",
    series_index: bool = False,
) -> SeriesData:
    """One dataset of several series' windows, each part's after the other's, keeping each
    series' values, scaler, offsets and transform (in ``series``). The series (each split by
    :func:`series_splits`) are held once, concatenated; no window is copied.

    ``statics`` (each series' raw values of ``static_columns``, scaled across the series by a
    ``scaler``) and, with ``series_index``, each series' index among ``parts`` become the last
    columns of every input row of that series' windows (see the module docstring)."""
    first = next(iter(parts.values()))
    static_columns = list(static_columns or [])
    static_scaler = make_scaler(scaler) if static_columns else None
    constant = _constant_columns(parts, static_columns, statics, static_scaler, series_index)
    if first.splits.future_steps:
        splits = _stacked_splits(parts, constant)
    else:
        splits, parts = _pooled_splits(parts, constant)
    splits = dataclasses.replace(
        splits,
        static_columns=len(static_columns),
        series_count=len(parts) if series_index else 0,
    )
    return SeriesData(
        splits=splits,
        target_scaler=None,
        feature_columns=first.feature_columns,
        target_columns=first.target_columns,
        split_lengths=tuple(
            int(sum(part.split_lengths[i] for part in parts.values())) for i in range(3)
        ),
        values=None,
        fit_end=0,
        gap=first.gap,
        origins={
            part: np.concatenate([series.origins[part] for series in parts.values()])
            for part in ("val", "test")
        },
        transform=PanelTransform(
            series_column,
            {name: part.transform for name, part in parts.items()},
            static_columns=static_columns,
            statics={name: statics[name] for name in parts} if static_columns else {},
            static_scaler=static_scaler,
            series_index=series_index,
        ),
        last_rows=_request_rows(parts, series_column, static_columns, statics),
        series=parts,
    )


def _constant_columns(
    parts: dict[str, SeriesData],
    static_columns: list[str],
    statics: dict[str, np.ndarray] | None,
    static_scaler: Any,
    series_index: bool,
) -> dict[str, np.ndarray]:
    """Each series' constant columns: its scaled statics, then, with ``series_index``, its
    index among ``parts``."""
    constant = {name: np.zeros(0, np.float32) for name in parts}
    if static_columns:
        table = np.stack([statics[name] for name in parts])
        if static_scaler is not None:
            # Across series: every series of the panel trains the model, so all are "train".
            table = static_scaler.fit_transform(table)
        constant = {name: row.astype(np.float32) for name, row in zip(parts, table, strict=True)}
    if series_index:
        constant = {
            name: np.append(row, np.float32(index))
            for index, (name, row) in enumerate(constant.items())
        }
    return constant


def _stacked_splits(parts: dict[str, SeriesData], constant: dict[str, np.ndarray]) -> Splits:
    """Windows with future covariates are arrays (forecast.data.covariates): stacked, each
    series' constant columns on every row of its windows."""
    extra = len(next(iter(constant.values())))
    stacked = []
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        arrays = []
        for name, part in parts.items():
            array = getattr(part.splits, split)
            if split.startswith("x_") and extra:
                fixed = np.broadcast_to(constant[name], (*array.shape[:2], extra))
                array = np.concatenate([array, fixed], axis=2)
            arrays.append(array)
        stacked.append(np.concatenate(arrays))
    return Splits(*stacked, future_steps=next(iter(parts.values())).splits.future_steps)


def _pooled_splits(
    parts: dict[str, SeriesData], constant: dict[str, np.ndarray]
) -> tuple[Splits, dict[str, SeriesData]]:
    """The series held once, one after another, with each series' constant columns beside each
    of its steps: the panel's windows, each keeping its start inside its own series (shifted by
    where that series begins), and each series with its own parts rebound to the joint array,
    so that no series is held twice."""
    extra = len(next(iter(constant.values())))
    member_windows = {name: _part_windows(part.splits) for name, part in parts.items()}
    joint = np.concatenate([windows[0].series for windows in member_windows.values()])
    width = joint.shape[1]
    if extra:
        fixed = [
            np.broadcast_to(constant[name], (len(windows[0].series), extra))
            for name, windows in member_windows.items()
        ]
        joint = np.concatenate([joint, np.concatenate(fixed)], axis=1)
    rebound, begin = {}, 0
    for name, windows in member_windows.items():
        rebound[name] = [
            dataclasses.replace(part, series=joint, starts=part.starts + begin) for part in windows
        ]
        begin += len(windows[0].series)
    pooled = [
        dataclasses.replace(
            windows,
            starts=np.concatenate([own[index].starts for own in rebound.values()]),
            static_columns=tuple(range(width, width + extra)),
        )
        for index, windows in enumerate(next(iter(rebound.values())))
    ]
    members = {
        name: dataclasses.replace(part, splits=_splits_of(rebound[name]))
        for name, part in parts.items()
    }
    return _splits_of(pooled), members


def _request_rows(
    parts: dict[str, SeriesData],
    series_column: str,
    static_columns: list[str],
    statics: dict[str, np.ndarray] | None,
) -> pd.DataFrame:
    """Each series' last rows as a request to the logged model holds them: the series column
    first, then the series' own columns and its static values."""
    last_rows = pd.concat(
        [
            part.last_rows.assign(
                **dict(zip(static_columns, statics[name] if static_columns else [], strict=True)),
                **{series_column: name},
            )
            for name, part in parts.items()
        ]
    )
    others = [column for column in last_rows.columns if column != series_column]
    return last_rows[[series_column, *others]].reset_index(drop=True)


def _part_windows(splits: Splits) -> list[Windows]:
    """The train, validation and test :class:`Windows` of a series' splits, which share one
    series array."""
    windows = [getattr(splits, f"x_{part}").windows for part in ("train", "val", "test")]
    if any(part.series is not windows[0].series for part in windows):
        raise DataError("a series' train, validation and test windows must share its array")
    return windows


def _splits_of(windows: list[Windows]) -> Splits:
    return Splits(*(view for part in windows for view in (part.inputs, part.targets)))
