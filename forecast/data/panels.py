"""Many series in one model: each series of a panel split, scaled and windowed on its own, then
their windows stacked fold by fold, keeping each series' own values, scaling and transform."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from forecast.data.sources import DataError
from forecast.data.splits import SeriesData, Splits, backtest_splits
from forecast.data.transforms import PanelTransform
from forecast.data.windows import Windows


def panel_splits(
    frames: dict[str, pd.DataFrame],
    series_column: str,
    folds: int = 1,
    refit: bool = True,
    **split: Any,
) -> list[SeriesData]:
    """:func:`backtest_splits` of every series of a panel (:func:`load_panel`), combined fold
    by fold (:func:`combine_series`): each series is split, scaled and windowed on its own, so
    no window holds steps of two series, and one model trains on all their windows.

    Raises:
        DataError: naming the series, when one cannot be split or windowed.
    """
    folded = {}
    for name, frame in frames.items():
        try:
            folded[name] = backtest_splits(frame, folds, refit, **split)
        except DataError as error:
            raise DataError(f"series {name!r}: {error}") from None
    return [
        combine_series({name: parts[fold] for name, parts in folded.items()}, series_column)
        for fold in range(folds)
    ]


def combine_series(parts: dict[str, SeriesData], series_column: str) -> SeriesData:
    """One dataset of several series' windows, each part's after the other's, keeping each
    series' values, scaler, offsets and transform (in ``series``). The series (each split by
    :func:`series_splits`) are held once, concatenated; no window is copied."""
    first = next(iter(parts.values()))
    if first.splits.future_steps:
        # Windows with future covariates are arrays (forecast.data.covariates): stacked.
        names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        stacked = (
            np.concatenate([getattr(part.splits, n) for part in parts.values()]) for n in names
        )
        splits = Splits(*stacked, future_steps=first.splits.future_steps)
    else:
        # The series are held once, one after another; each window keeps its start inside its own
        # series (shifted by where that series begins), and each series' own parts are rebound to
        # the joint array, so no series is held twice.
        member_windows = {name: _part_windows(part.splits) for name, part in parts.items()}
        joint = np.concatenate([windows[0].series for windows in member_windows.values()])
        rebound, begin = {}, 0
        for name, windows in member_windows.items():
            rebound[name] = [
                dataclasses.replace(part, series=joint, starts=part.starts + begin)
                for part in windows
            ]
            begin += len(windows[0].series)
        pooled = [
            dataclasses.replace(
                windows, starts=np.concatenate([own[index].starts for own in rebound.values()])
            )
            for index, windows in enumerate(next(iter(rebound.values())))
        ]
        splits = _splits_of(pooled)
        parts = {
            name: dataclasses.replace(part, splits=_splits_of(rebound[name]))
            for name, part in parts.items()
        }
    last_rows = pd.concat(
        [part.last_rows.assign(**{series_column: name}) for name, part in parts.items()]
    )
    last_rows = last_rows[[series_column, *last_rows.columns[:-1]]].reset_index(drop=True)
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
            series_column, {name: part.transform for name, part in parts.items()}
        ),
        last_rows=last_rows,
        series=parts,
    )


def _part_windows(splits: Splits) -> list[Windows]:
    """The train, validation and test :class:`Windows` of a series' splits, which share one
    series array."""
    windows = [getattr(splits, f"x_{part}").windows for part in ("train", "val", "test")]
    if any(part.series is not windows[0].series for part in windows):
        raise DataError("a series' train, validation and test windows must share its array")
    return windows


def _splits_of(windows: list[Windows]) -> Splits:
    return Splits(*(view for part in windows for view in (part.inputs, part.targets)))
