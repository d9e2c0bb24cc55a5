"""Reading a series or a panel from a dataset name, a CSV, a DataFrame or an array, and cleaning
it: numeric values, strictly increasing timestamps, missing values filled or refused, every
problem one line that names the file, column and row."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast.config import one_line
from forecast.paths import datasets_dir

FILL_METHODS = ("ffill", "interpolate", "drop")


class DataError(ValueError):
    """A user-facing data problem; its message is one line naming file, column, row or
    argument."""


def available_datasets() -> list[str]:
    return sorted(path.stem for path in datasets_dir().glob("*.csv"))


def load_series(
    source: str | Path | pd.DataFrame | np.ndarray,
    time_column: str | None = None,
    columns: list[str] | None = None,
    fillna: str | None = None,
) -> pd.DataFrame:
    """A validated, numeric, time-ordered series as a DataFrame.

    Args:
        source: A dataset name from ``datasets/`` (e.g. ``"co2"``), a CSV path, a DataFrame
            (with a DatetimeIndex, or a ``time_column``), or a numpy array (time, features).
        time_column: The column holding timestamps (or years, or step numbers); it becomes the
            index and must be strictly increasing. None keeps the given index.
        columns: The value columns to keep; all others are dropped. All by default.
        fillna: What to do with missing values: None (an error), ``ffill``, ``interpolate``
            (linear in time order) or ``drop`` (remove the rows).

    Raises:
        DataError: a missing file or column, non-numeric values, missing values without
            ``fillna``, or unsorted or duplicate timestamps; the message names which.
    """
    frame, where, first_line = _read_source(source)
    return _clean_series(
        frame, where, lambda row: _row(row, first_line), time_column, columns, fillna
    )


def load_panel(
    source: str | Path | pd.DataFrame,
    series_column: str,
    time_column: str | None = None,
    columns: list[str] | None = None,
    fillna: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Several series from one long-format table (a row per series and time step), each as
    :func:`load_series` returns it, by the values of ``series_column`` in the order they first
    appear. The other arguments are :func:`load_series`' and apply to every series; each
    series' timestamps must increase on their own, and its missing values are filled within it.

    Raises:
        DataError: as :func:`load_series`, naming the series; a missing ``series_column``, or a
            row without a series id.
    """
    frame, where, first_line = _read_source(source)
    if series_column not in frame.columns:
        raise DataError(missing_column(where, series_column, frame))
    ids = frame[series_column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna())[0])
        raise DataError(f"{where}: column {series_column!r} {_row(row, first_line)}: no series id")
    ids = ids.astype(str)
    rows_of = frame.groupby(ids, sort=False).indices
    panel = {}
    for name in pd.unique(ids):
        if not re.fullmatch(SERIES_ID, name):
            raise DataError(
                f"{where}: series id {name!r}: MLflow metric names, which carry it, allow "
                "letters, digits, spaces and _-./: only"
            )
        rows = rows_of[name]
        series = _clean_series(
            frame.iloc[rows].drop(columns=series_column),
            f"{where}: series {name!r}",
            lambda row, rows=rows: _row(int(rows[row]), first_line),
            time_column,
            columns,
            fillna,
        )
        if time_column is None and isinstance(frame.index, pd.RangeIndex):
            # Without timestamps, a series' steps are its own rows, not their places in the table.
            series = series.reset_index(drop=True)
        panel[name] = series
    return panel


# What an MLflow metric name may hold (per-series metrics are named `<metric>/<series id>`).
SERIES_ID = r"[\w\-./: ]+"


def _clean_series(
    frame: pd.DataFrame,
    where: str,
    row_name: Callable[[int], str],
    time_column: str | None,
    columns: list[str] | None,
    fillna: str | None,
) -> pd.DataFrame:
    """:func:`load_series`' checks and conversions of one series' rows; ``row_name`` names the
    row at a position of ``frame`` in messages (a file's line, or a DataFrame's row)."""
    if time_column is not None:
        if time_column not in frame.columns:
            raise DataError(missing_column(where, time_column, frame))
        times = frame[time_column]
        as_numbers = pd.to_numeric(times, errors="coerce")
        if as_numbers.notna().all():  # years or step numbers
            times = as_numbers
        else:
            parsed = pd.to_datetime(times, errors="coerce")
            bad = parsed.isna() & times.notna()
            if bad.any() or times.isna().any():
                row = int(np.flatnonzero(bad | times.isna())[0])
                raise DataError(
                    f"{where}: column {time_column!r} {row_name(row)}: "
                    f"not a timestamp: {times.iloc[row]!r}"
                )
            times = parsed
        frame = frame.drop(columns=[time_column]).set_index(pd.Index(times, name=time_column))
    _check_time_order(frame.index, where, row_name)

    if columns is not None:
        for column in columns:
            if column not in frame.columns:
                raise DataError(missing_column(where, column, frame))
        frame = frame[list(columns)]
    if frame.shape[1] == 0:
        raise DataError(f"{where}: no value columns")
    frame = _to_numeric(frame, where, row_name)
    return _fill_missing(frame, fillna, where, row_name)


def _read_source(source: Any) -> tuple[pd.DataFrame, str, int | None]:
    """(frame, a name for messages, the file line of row 0 or None for in-memory data)."""
    if isinstance(source, pd.DataFrame):
        return source.copy(), "DataFrame", None
    if isinstance(source, np.ndarray):
        array = source[:, None] if source.ndim == 1 else source
        if array.ndim != 2:
            raise DataError(f"array: expected (time, features), got shape {source.shape}")
        return pd.DataFrame(array, columns=[str(i) for i in range(array.shape[1])]), "array", None
    path = Path(source)
    if path.suffix == "" and not path.exists():
        path = datasets_dir() / f"{source}.csv"
        if not path.is_file():
            names = ", ".join(available_datasets()) or "none"
            raise DataError(f"unknown dataset {str(source)!r}; available: {names}, or a CSV path")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read as CSV: {one_line(error, with_type=False)}") from None
    return frame, str(path), 2  # line 1 is the header


def _row(position: int, first_line: int | None) -> str:
    return f"row {position}" if first_line is None else f"line {position + first_line}"


def missing_column(where: str, column: str, frame: pd.DataFrame) -> str:
    """The one line for a column that ``frame`` lacks, listing the columns it has."""
    known = ", ".join(map(str, frame.columns)) or "none"
    return f"{where}: no column {column!r}; columns are: {known}"


def _check_time_order(index: pd.Index, where: str, row_name: Callable[[int], str]) -> None:
    if len(index) < 2:
        return
    values = index.to_numpy()
    later = values[1:] > values[:-1]
    if later.all():
        return
    position = int(np.flatnonzero(~later)[0]) + 1
    problem = "duplicate" if values[position] == values[position - 1] else "unsorted"
    raise DataError(
        f"{where}: {problem} timestamp {index[position]} at {row_name(position)} "
        f"(after {index[position - 1]}); timestamps must be strictly increasing"
    )


def _to_numeric(frame: pd.DataFrame, where: str, row_name: Callable[[int], str]) -> pd.DataFrame:
    numeric = {}
    for column in frame.columns:
        values = frame[column]
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna() & values.notna()
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{where}: column {column!r} {row_name(position)}: "
                f"non-numeric value {values.iloc[position]!r}"
            )
        numeric[column] = converted.astype(np.float64)
    return pd.DataFrame(numeric, index=frame.index)


def _fill_missing(
    frame: pd.DataFrame, fillna: str | None, where: str, row_name: Callable[[int], str]
) -> pd.DataFrame:
    if fillna is not None and fillna not in FILL_METHODS:
        raise DataError(f"fillna must be one of {', '.join(FILL_METHODS)}, got {fillna!r}")
    missing = frame.isna()
    if not missing.any().any():
        return frame
    if fillna is None:
        column = missing.any().idxmax()
        position = int(np.flatnonzero(missing[column].to_numpy())[0])
        count = int(missing.to_numpy().sum())
        raise DataError(
            f"{where}: column {column!r} has missing values ({count} in all, first at "
            f"{row_name(position)}); set fillna: ffill, interpolate or drop"
        )
    if fillna == "drop":
        return frame.dropna()
    if fillna == "ffill":
        filled = frame.ffill()
    else:
        filled = frame.interpolate(method="linear", limit_direction="both")
    # Values missing before the first observation have nothing to carry forward.
    return filled.dropna()
