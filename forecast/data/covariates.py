"""Future-known covariates: columns known over the forecast's horizon (a planned promotion, a
price, a weather forecast; ``data.future_columns``) and calendar features derived from the time
column (``data.calendar``), and how they join a window.

A window with covariates is one array of ``input_width + horizon`` rows, laid out as a
forecaster's request is (the history, then the future rows)::

    rows 0 .. w-1     past features at s .. s+w-1        | covariates at s .. s+w-1
    rows w .. w+h-1   zeros (the past is not known here) | covariates at s+w+gap .. s+w+gap+h-1

The future rows carry the covariates of the target steps only, never a target or a past
feature: those are zeros, which a read-out cannot learn from. One array rather than two model
inputs keeps training, prediction, the gradient flow and the logged model's input as they are
for every model: only the model splits the rows (see :func:`forecast.models.build_model`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.data.sources import DataError

# Each calendar feature: how it is read from a timestamp (counted from 0) and its period. Each
# becomes a sin and a cos column (Darts' cyclic encoders do the same), so that December sits
# next to January, not 11 units away.
CALENDAR = {
    "month": (lambda index: index.month - 1, 12),
    "week_of_year": (lambda index: index.isocalendar().week.to_numpy() - 1, 53),
    "day_of_month": (lambda index: index.day - 1, 31),
    "day_of_week": (lambda index: index.dayofweek, 7),
    "day_of_year": (lambda index: index.dayofyear - 1, 366),
    "hour": (lambda index: index.hour, 24),
}


def check_calendar(names: list[str]) -> None:
    """Raise a :class:`DataError` naming the first calendar feature that is not one we know."""
    for name in names:
        if name not in CALENDAR:
            raise DataError(
                f"calendar: unknown feature {name!r}; choose from {', '.join(CALENDAR)}"
            )


def calendar_columns(names: list[str]) -> list[str]:
    """The columns :func:`calendar_features` makes, in order: ``month_sin``, ``month_cos``..."""
    return [f"{name}_{part}" for name in names for part in ("sin", "cos")]


def calendar_features(times: pd.Index | pd.Series, names: list[str]) -> np.ndarray:
    """The cyclic encodings ``sin(2 pi v / period)``, ``cos(...)`` of each calendar feature
    ``names`` at ``times``: (len(times), 2 x len(names)), in :func:`calendar_columns` order.

    Raises:
        DataError: an unknown feature, or times that are not timestamps (years or step
            numbers carry no calendar).
    """
    check_calendar(names)
    if not names:
        return np.zeros((len(times), 0))
    index = pd.DatetimeIndex(times) if isinstance(times, pd.Series) else times
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"calendar: {', '.join(names)} needs timestamps; the series' time axis holds "
            f"{index.dtype} values (set data.time_column to a column of dates)"
        )
    columns = []
    for name in names:
        read, period = CALENDAR[name]
        angle = 2 * np.pi * np.asarray(read(index), np.float64) / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1)


def with_future(
    inputs: np.ndarray,
    covariates: np.ndarray,
    input_width: int,
    horizon: int,
    gap: int,
    stride: int = 1,
) -> np.ndarray:
    """Windows with their covariates, laid out as the module docstring shows.

    Args:
        inputs: The windows' past features, (n, input_width, features), as
            :func:`forecast.data.make_windows` cut them from the same steps.
        covariates: The covariates at every step those windows and their targets span,
            (time, covariates), scaled.
        input_width, horizon, gap, stride: The windows' (see :mod:`forecast.data.windows`).

    Returns:
        (n, input_width + horizon, features + covariates) float32.
    """
    # Covariates at each window's input steps, and at its target steps (gap steps later).
    history = np.lib.stride_tricks.sliding_window_view(
        covariates[: len(covariates) - gap - horizon], input_width, axis=0
    )[::stride].transpose(0, 2, 1)
    future = np.lib.stride_tricks.sliding_window_view(
        covariates[input_width + gap :], horizon, axis=0
    )[::stride].transpose(0, 2, 1)
    count = len(inputs)
    past = np.concatenate([inputs, history[:count]], axis=2)
    unknown = np.zeros((count, horizon, inputs.shape[2]), np.float32)
    ahead = np.concatenate([unknown, future[:count]], axis=2)
    return np.concatenate([past, ahead], axis=1).astype(np.float32)
