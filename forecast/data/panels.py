"""Many series in one model: each series of a panel split, scaled and windowed on its own, then
their windows stacked fold by fold, keeping each series' own values, scaling and transform."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecast.data.sources import DataError
from forecast.data.splits import SeriesData, Splits, backtest_splits
from forecast.data.transforms import PanelTransform


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
    series' values, scaler, offsets and transform (in ``series``)."""
    first = next(iter(parts.values()))

    def stacked(split: str) -> np.ndarray:
        return np.concatenate([getattr(part.splits, split) for part in parts.values()])

    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    splits = Splits(*(stacked(split) for split in names), future_steps=first.splits.future_steps)
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
