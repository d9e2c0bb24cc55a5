"""Datasets: series loading, windowing without leakage, splits and ``tf.data`` pipelines.

A window pairs ``input_width`` consecutive steps with the ``horizon`` steps that start ``gap``
steps after the last input step::

    |<-- input_width -->|<-- gap -->|<-- horizon -->|
    x[s] ... x[s+w-1]                y[s+w+gap] ... y[s+w+gap+h-1]

Windows start every ``stride`` steps. A series is cut into train / validation / test parts in
time order, and scaling is fitted on the train part only. A window belongs to the part its
targets lie in, and no window's targets straddle two parts; its inputs may reach back into the
parts before (they are observations known when its forecast is made), so every step of the
validation and test parts is a target, as in forecasters' rolling-origin evaluation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast.paths import datasets_dir
from forecast.tasks import Task

FILL_METHODS = ("ffill", "interpolate", "drop")


class DataError(ValueError):
    """A user-facing data problem; its message is one line naming file, column, row or
    argument."""


@dataclass(frozen=True)
class Splits:
    """Train / validation / test (inputs, targets) arrays; inputs are (n, time, features).

    ``classes``: for a categorical task, the number of classes its integer targets (labels)
    are drawn from; None for real-valued targets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int | None = None

    @property
    def input_shape(self) -> tuple[int, int]:
        """(time, features) of one sample."""
        return self.x_train.shape[1], self.x_train.shape[2]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one sample's model output: (outputs,) for tasks, (horizon, targets) for
        series, (steps, classes) for a categorical task (a logit per class)."""
        if self.classes is not None:
            return (*self.y_train.shape[1:], self.classes)
        return tuple(self.y_train.shape[1:])

    @property
    def per_step(self) -> bool:
        """Whether the targets are labels for every input step, so the model reads out at each
        step rather than once at the end."""
        return self.classes is not None and self.y_train.shape[1:] == self.x_train.shape[1:2]


def synthetic_splits(
    task: Task, gap: int, seed: int, n_train: int, n_val: int, n_test: int, **params: object
) -> Splits:
    """Draw one sample set of ``task`` with ``seed`` and cut it into disjoint splits."""
    inputs, targets, *classes = task(n_train + n_val + n_test, gap, seed, **params)
    val_end = n_train + n_val
    return Splits(
        inputs[:n_train],
        targets[:n_train],
        inputs[n_train:val_end],
        targets[n_train:val_end],
        inputs[val_end:],
        targets[val_end:],
        int(classes[0]) if classes else None,
    )


def check_window_args(input_width: int, horizon: int, gap: int, stride: int) -> None:
    """Raise a :class:`DataError` naming the first invalid window argument."""
    for name, value, minimum in (
        ("input_width", input_width, 1),
        ("horizon", horizon, 1),
        ("gap", gap, 0),
        ("stride", stride, 1),
    ):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
            raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")


def make_windows(
    values: Any,
    input_width: int,
    horizon: int = 1,
    gap: int = 0,
    stride: int = 1,
    target_columns: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All windows of a series, as read-only strided views of it (no copy of the windows).

    Args:
        values: The series, (time,) or (time, features).
        input_width: Steps per input window.
        horizon: Steps to predict.
        gap: Steps between the last input step and the first target step.
        stride: Steps between the starts of consecutive windows.
        target_columns: Feature indices to predict; all features by default.

    Returns:
        ``inputs`` (n, input_width, features) and ``targets`` (n, horizon, len(target_columns)),
        where ``n = (time - input_width - gap - horizon) // stride + 1``.
    """
    check_window_args(input_width, horizon, gap, stride)
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise DataError(f"values must be (time,) or (time, features), got shape {values.shape}")
    # The sum is NaN if any value is (or +inf meets -inf): one pass and no temporary array, so
    # only a series that may hold a NaN pays for the search that finds it.
    if np.issubdtype(values.dtype, np.floating) and np.isnan(values.sum()):
        missing = np.argwhere(np.isnan(values))
        if len(missing):
            step, feature = missing[0]
            raise DataError(
                f"values: NaN at step {step}, feature {feature}; fill or drop missing values "
                "first (load_series' fillna)"
            )
    span = input_width + gap + horizon
    if len(values) < span:
        raise DataError(
            f"a series of {len(values)} steps is too short for one window of {span} steps "
            f"(input_width {input_width} + gap {gap} + horizon {horizon})"
        )
    target_values = values if target_columns is None else values[:, target_columns]
    # sliding_window_view puts the window axis last: (n, features, span) -> (n, span, features).
    input_windows = np.lib.stride_tricks.sliding_window_view(
        values[: len(values) - gap - horizon], input_width, axis=0
    )
    target_windows = np.lib.stride_tricks.sliding_window_view(
        target_values[input_width + gap :], horizon, axis=0
    )
    return (
        input_windows[::stride].transpose(0, 2, 1),
        target_windows[::stride].transpose(0, 2, 1),
    )


def windowed_dataset(
    values: Any,
    input_width: int,
    horizon: int = 1,
    gap: int = 0,
    stride: int = 1,
    target_columns: list[int] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of (inputs, targets) batches that gathers windows batch by batch.

    Memory stays O(series + batch x input_width): the series is held once and each batch is
    gathered from it, unlike materialising every window up front.
    """
    import tensorflow as tf

    inputs, _ = make_windows(values, input_width, horizon, gap, stride, target_columns)
    values = np.asarray(values, dtype=np.float32)
    values = values[:, None] if values.ndim == 1 else values
    series = tf.constant(values)
    targets = series if target_columns is None else tf.gather(series, target_columns, axis=1)
    input_offsets = tf.range(input_width, dtype=tf.int64)
    target_offsets = tf.range(horizon, dtype=tf.int64) + input_width + gap

    # Window numbers are produced lazily; only shuffling holds them all (8 bytes a window).
    dataset = tf.data.Dataset.range(len(inputs))
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)

    def gather(window_numbers: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_starts = window_numbers * stride
        return (
            tf.gather(series, batch_starts[:, None] + input_offsets),
            tf.gather(targets, batch_starts[:, None] + target_offsets),
        )

    return dataset.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def to_dataset(
    inputs: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
) -> Any:
    """Batches of in-memory (inputs, targets); shuffle for training only, cached, prefetched.
    Integer targets (class labels) stay integers."""
    import tensorflow as tf

    target_type = np.int32 if np.issubdtype(targets.dtype, np.integer) else np.float32
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.ascontiguousarray(inputs, np.float32), np.ascontiguousarray(targets, target_type))
    ).cache()
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
        raise DataError(_no_column(where, series_column, frame))
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
            raise DataError(_no_column(where, time_column, frame))
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
                raise DataError(_no_column(where, column, frame))
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
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: cannot read as CSV: {first}") from None
    return frame, str(path), 2  # line 1 is the header


def _row(position: int, first_line: int | None) -> str:
    return f"row {position}" if first_line is None else f"line {position + first_line}"


def _no_column(where: str, column: str, frame: pd.DataFrame) -> str:
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


def fold_bounds(
    length: int, val_fraction: float, test_fraction: float, folds: int = 1, refit: bool = True
) -> list[dict[str, tuple[int, int]]]:
    """The train / val / test parts, as (start, end) steps, of each fold of a rolling-origin
    backtest over a series of ``length`` steps.

    The last ``test_fraction`` of the steps is cut into ``folds`` consecutive test folds (of
    equal length, give or take a step). With ``refit``, each fold's model trains on everything
    before the fold (an expanding window), the last ``val_fraction`` of the series' length of
    it being validation; without, every fold keeps the first fold's train and val parts, so one
    model trained once is scored on every fold. One fold is the single split.
    """
    if not isinstance(folds, int) or folds < 1:
        raise DataError(f"backtest folds must be an integer >= 1, got {folds!r}")
    n_test = int(round(length * test_fraction))
    n_val = int(round(length * val_fraction))
    test_start = length - n_test
    if test_start - n_val <= 0:
        raise DataError(f"a series of {length} steps leaves no training steps before its test")
    edges = [test_start + fold * n_test // folds for fold in range(folds + 1)]
    parts = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        past = start if refit else test_start
        parts.append(
            {"train": (0, past - n_val), "val": (past - n_val, past), "test": (start, end)}
        )
    return parts


def backtest_splits(
    frame: pd.DataFrame,
    folds: int,
    refit: bool,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    **window: Any,
) -> list[SeriesData]:
    """:func:`series_splits` for every fold of :func:`fold_bounds`; ``window`` holds its other
    arguments (``input_width``, ``horizon``, ...).

    Raises:
        DataError: naming the fold, when one of its parts is too short for a window.
    """
    parts = dict(val_fraction=val_fraction, test_fraction=test_fraction)
    folded = []
    for index, bounds in enumerate(fold_bounds(len(frame), **parts, folds=folds, refit=refit)):
        try:
            folded.append(series_splits(frame, bounds=bounds, **parts, **window))
        except DataError as error:
            if folds == 1:
                raise
            raise DataError(f"backtest fold {index + 1} of {folds}: {error}") from None
    return folded


@dataclass(frozen=True)
class SeriesTransform:
    """From a series' latest raw rows to a model's input window, and from the model's output
    back to future rows in original units: what a trained series model needs to forecast
    from raw data (the logged MLflow model carries it)."""

    time_column: str | None  # None: the rows' index is the time axis
    feature_columns: list[str]
    target_columns: list[str]
    input_width: int
    gap: int
    horizon: int
    relative: bool
    feature_scaler: Any  # fitted scikit-learn scalers, or None
    target_scaler: Any
    time_step: Any  # between rows: a pandas frequency string, or a number (years, steps)
    quantiles: list[float] | None = None  # a quantile model's: one forecast column each
    # A calibrated interval: its nominal coverage, and the half-widths (horizon, targets) to
    # take below and add above the forecast (a quantile model's outer quantiles).
    interval: tuple[float, np.ndarray, np.ndarray] | None = None

    def with_quantiles(self, quantiles: list[float]) -> SeriesTransform:
        """This transform for a model that forecasts each of ``quantiles``."""
        return dataclasses.replace(self, quantiles=quantiles)

    def with_interval(
        self, level: float, widths: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> SeriesTransform:
        """This transform forecasting an interval of nominal coverage ``level`` too, from the
        conformal half-widths ``widths[""]`` (``(below, above)``, see
        :func:`forecast.trial.conformal_widths`)."""
        below, above = widths[""]
        return dataclasses.replace(self, interval=(level, below, above))

    @property
    def columns(self) -> list[str]:
        """The columns a forecast reads: the time column, then features and targets."""
        values = list(dict.fromkeys([*self.feature_columns, *self.target_columns]))
        return [self.time_column, *values] if self.time_column else values

    def model_input(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input, (1, input_width, features), from the last ``input_width`` of
        ``rows`` (the latest last).

        Raises:
            DataError: a missing column, too few rows, or a missing or non-numeric value.
        """
        if not isinstance(rows, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame with columns {self.columns}")
        for column in self.columns:
            if column not in rows.columns:
                raise DataError(_no_column("input", column, rows))
        if len(rows) < self.input_width:
            raise DataError(f"input: {len(rows)} rows; the model reads the last {self.input_width}")
        self._check_time_order(rows)
        recent = rows.iloc[-self.input_width :]
        values = recent[self.columns[1:] if self.time_column else self.columns]
        numeric = values.apply(pd.to_numeric, errors="coerce")
        if numeric.isna().any().any():
            column = numeric.isna().any().idxmax()
            offset = int(np.argmax(numeric[column].isna()))
            value = values[column].iloc[offset]
            problem = "missing value" if pd.isna(value) else f"non-numeric value {value!r}"
            position = len(rows) - self.input_width + offset
            raise DataError(f"input: column {column!r} row {position}: {problem}")
        features = numeric[self.feature_columns].to_numpy(np.float64)
        if self.feature_scaler is not None:
            features = self.feature_scaler.transform(features)
        if self.relative:
            features = features - features[-1:]
        return features[None].astype(np.float32)

    def _check_time_order(self, rows: pd.DataFrame) -> None:
        """Refuse rows whose times do not increase: the model forecasts from the last rows,
        which must be the latest."""
        times = rows[self.time_column] if self.time_column else rows.index.to_series()
        if isinstance(self.time_step, str | pd.Timedelta):
            parsed = pd.to_datetime(times, errors="coerce")
        else:
            parsed = pd.to_numeric(times, errors="coerce")
        if parsed.isna().any():
            position = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            name = self.time_column or "index"
            raise DataError(
                f"input: column {name!r} row {position}: not a time: {times.iloc[position]!r}"
            )
        values = parsed.to_numpy()
        later = values[1:] > values[:-1]
        if not later.all():
            position = int(np.flatnonzero(~later)[0]) + 1
            raise DataError(
                f"input: row {position} ({times.iloc[position]}) is not after row {position - 1} "
                f"({times.iloc[position - 1]}); give the rows in time order, the latest last"
            )

    def forecast_frame(self, outputs: np.ndarray, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's ``outputs`` for :meth:`model_input` of ``rows`` as the next
        ``horizon`` rows (``gap`` after the last one): their times and the targets in
        original units. A quantile model gives each target as its median, and each quantile
        q as ``<target>_q<q>``."""
        levels = self.quantiles or [None]
        shape = (self.horizon, len(self.target_columns), len(levels))
        # Each quantile's (horizon, targets) forecast, quantiles first, to unscale them alike.
        per_level = np.moveaxis(np.asarray(outputs, np.float64).reshape(shape), -1, 0)
        offset = None
        if self.relative:  # the model forecasts changes from the last row's (scaled) targets
            offset = rows[self.target_columns].iloc[-1:].to_numpy(np.float64)
            if self.target_scaler is not None:
                offset = self.target_scaler.transform(offset)
        outputs = np.moveaxis(unscale_targets(per_level, offset, self.target_scaler), 0, -1)
        times = rows[self.time_column] if self.time_column else rows.index.to_series()
        last_time = times.iloc[-1]
        steps = np.arange(self.gap + 1, self.gap + self.horizon + 1)
        if isinstance(self.time_step, str):  # calendar steps: months, weeks ending Saturday
            periods = self.gap + self.horizon + 1
            future = pd.date_range(pd.Timestamp(last_time), periods=periods, freq=self.time_step)
            future = future[steps]
        elif isinstance(self.time_step, pd.Timedelta):
            future = pd.Timestamp(last_time) + self.time_step * steps
        else:
            future = float(last_time) + self.time_step * steps
        columns = {self.time_column or "time": future}
        for index, target in enumerate(self.target_columns):
            if self.quantiles is None:
                columns[target] = outputs[:, index, 0]
            else:
                columns[target] = outputs[:, index, self.quantiles.index(0.5)]
                for level, quantile in enumerate(self.quantiles):
                    columns[f"{target}_q{quantile:g}"] = outputs[:, index, level]
            if self.interval is not None:  # e.g. co2_lo80 and co2_hi80
                coverage, below, above = self.interval
                low, high = outputs[:, index, 0], outputs[:, index, -1]
                percent = f"{100 * coverage:.0f}"
                columns[f"{target}_lo{percent}"] = low - below[:, index]
                columns[f"{target}_hi{percent}"] = high + above[:, index]
        return pd.DataFrame(columns)


def time_step(index: pd.Index) -> Any:
    """The step between rows of a series' time index: its pandas frequency for regular
    timestamps (``W-SAT``, ``MS``, ...), else the median difference: a ``Timedelta`` for
    timestamps, a number for numbers (years, step numbers)."""
    if isinstance(index, pd.DatetimeIndex):
        frequency = pd.infer_freq(index) if len(index) >= 3 else None
        return frequency or pd.Series(index).diff().median()
    return float(np.median(np.diff(index.to_numpy(np.float64)))) if len(index) > 1 else 1.0


@dataclass(frozen=True)
class SeriesData:
    """A windowed, split and scaled real series, and what is needed to forecast and score it
    in its original units."""

    splits: Splits
    target_scaler: Any  # a fitted scikit-learn scaler, or None
    feature_columns: list[str]
    target_columns: list[str]
    split_lengths: tuple[int, int, int]  # steps of the series in train / val / test
    # The raw target values, (time, targets), in original units: what baseline forecasters
    # read, and what scales MASE. None for a panel (each series holds its own).
    values: np.ndarray | None
    fit_end: int  # the fold's past, before its test part, is values[:fit_end]
    gap: int
    # For each part's windows, the index in ``values`` of its last input step (its origin).
    origins: dict[str, np.ndarray]
    # With `relative`, each window's last scaled target per part ("val", "test"); else None.
    offsets: dict[str, np.ndarray] | None = None
    transform: SeriesTransform | PanelTransform | None = None  # raw rows -> forecast rows
    last_rows: pd.DataFrame | None = None  # the series' last input window, raw (an example)
    # A panel's series by id (see combine_series), each with its own scaling and values;
    # the splits above hold their windows one series after another.
    series: dict[str, SeriesData] | None = None

    def windows(self, part: str = "test") -> dict[str, slice]:
        """Where each series has its windows in a part ("val" or "test") of the splits, by
        series id: a panel's one after another, a single series' (id ``""``) all of them."""
        if self.series is None:
            return {"": slice(None)}
        windows, start = {}, 0
        for name, series in self.series.items():
            windows[name] = slice(start, start + len(series.origins[part]))
            start = windows[name].stop
        return windows

    def member(self, name: str) -> SeriesData:
        """A panel's series ``name``; a single series (id ``""``) itself."""
        return self if self.series is None else self.series[name]

    def to_original_units(self, targets: np.ndarray, part: str = "test") -> np.ndarray:
        """Turn a part's (n, horizon, targets) arrays of model units (its targets, or forecasts
        of them; a trailing axis of quantiles is not allowed) into original units."""
        if self.series is not None:  # each series by its own scaler
            return np.concatenate(
                [
                    self.series[name].to_original_units(targets[windows], part)
                    for name, windows in self.windows(part).items()
                ]
            )
        offset = self.offsets[part] if self.offsets is not None else None
        return unscale_targets(targets, offset, self.target_scaler)


def unscale_targets(values: np.ndarray, offset: np.ndarray | None, scaler: Any) -> np.ndarray:
    """Targets in a model's units, (..., targets), in original units: ``offset`` added back (with
    ``relative``, each window's last scaled target, broadcast over the horizon), then the
    ``scaler`` (fitted scikit-learn, or None) undone."""
    if offset is not None:
        values = values + offset
    if scaler is None:
        return values
    return scaler.inverse_transform(values.reshape(-1, values.shape[-1])).reshape(values.shape)


def make_scaler(name: str) -> Any:
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "none": None}
    if name not in scalers:
        raise DataError(f"scaler must be one of {', '.join(scalers)}, got {name!r}")
    return scalers[name]() if scalers[name] else None


def series_splits(
    frame: pd.DataFrame,
    input_width: int,
    horizon: int = 1,
    gap: int = 0,
    stride: int = 1,
    feature_columns: list[str] | None = None,
    target_columns: list[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scaler: str = "standard",
    relative: bool = False,
    bounds: dict[str, tuple[int, int]] | None = None,
) -> SeriesData:
    """Split a series in time order, fit scaling on the train part, window each part.

    The last ``test_fraction`` of the steps is the test part, the ``val_fraction`` before it
    validation, the rest training. Each part's windows are those whose targets lie in it,
    their inputs reaching back into the part before where they must: every step of the
    validation and test parts is forecast, and no training window sees a validation or test
    step. ``bounds`` (``{"train": (start, end), "val": ..., "test": ...}``,
    one fold of :func:`fold_bounds`) sets the parts instead.

    With ``relative``, every window is shifted so that its last input step is zero, and its
    targets by the same amount: the model learns changes from the last observation, which
    carries it through trends that leave the training range (where a tanh network saturates).
    This materialises the windows instead of keeping views.
    """
    check_window_args(input_width, horizon, gap, stride)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise DataError(f"{name} must lie in (0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise DataError("val_fraction + test_fraction must leave steps for training")
    features = list(feature_columns or frame.columns)
    targets = list(target_columns or features)
    for column in [*features, *targets]:
        if column not in frame.columns:
            raise DataError(_no_column("series", column, frame))

    length = len(frame)
    if bounds is None:
        (bounds,) = fold_bounds(length, val_fraction, test_fraction)

    feature_scaler, target_scaler = make_scaler(scaler), make_scaler(scaler)
    feature_values = frame[features].to_numpy(np.float64)
    raw_targets = frame[targets].to_numpy(np.float64)
    target_values = raw_targets
    if feature_scaler is not None:
        train_end = bounds["train"][1]
        feature_scaler.fit(feature_values[:train_end])
        target_scaler.fit(target_values[:train_end])
        feature_values = feature_scaler.transform(feature_values)
        target_values = target_scaler.transform(target_values)
    combined = np.concatenate([feature_values, target_values], axis=1).astype(np.float32)
    target_index = list(range(len(features), len(features) + len(targets)))

    arrays, offsets, origins = {}, {}, {}
    # Where each part's windows start: the inputs and gap of its first target step before it.
    window_starts = {part: max(start - input_width - gap, 0) for part, (start, _) in bounds.items()}
    for part, (start, end) in bounds.items():
        first = window_starts[part]
        if end - first < input_width + gap + horizon:
            # The train part comes first and holds whole windows, so the others have all the
            # steps before them that their inputs need: they fall short of the horizon only.
            need = (
                f"one window of input_width {input_width} + gap {gap} + horizon {horizon} steps"
                if part == "train"
                else f"the horizon ({horizon} steps)"
            )
            raise DataError(f"{part} part ({end - start} steps): too short for {need}")
        inputs, part_targets = make_windows(
            combined[first:end], input_width, horizon, gap, stride, target_index
        )
        last_target = inputs[:, -1:, len(features) :]
        part_inputs = inputs[..., : len(features)]
        if relative:
            part_inputs = part_inputs - part_inputs[:, -1:, :]
            part_targets = part_targets - last_target
        arrays[part] = (part_inputs, part_targets)
        offsets[part] = np.asarray(last_target)
        origins[part] = first + np.arange(len(inputs)) * stride + input_width - 1
    splits = Splits(*arrays["train"], *arrays["val"], *arrays["test"])
    return SeriesData(
        splits=splits,
        target_scaler=target_scaler,
        feature_columns=features,
        target_columns=targets,
        split_lengths=tuple(end - start for start, end in bounds.values()),
        values=raw_targets,
        fit_end=bounds["val"][1],
        gap=gap,
        origins={part: origins[part] for part in ("val", "test")},
        offsets={part: offsets[part] for part in ("val", "test")} if relative else None,
        transform=SeriesTransform(
            time_column=frame.index.name,
            feature_columns=features,
            target_columns=targets,
            input_width=input_width,
            gap=gap,
            horizon=horizon,
            relative=relative,
            feature_scaler=feature_scaler,
            target_scaler=target_scaler,
            time_step=time_step(frame.index),
        ),
        last_rows=frame.iloc[-input_width:].reset_index(drop=frame.index.name is None),
    )


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
    splits = Splits(*(stacked(split) for split in names))
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


@dataclass(frozen=True)
class PanelTransform:
    """A :class:`SeriesTransform` per series of a panel: forecasts each series named in the
    rows' ``series_column`` from its own latest rows, with its own scaling."""

    series_column: str
    transforms: dict[str, SeriesTransform]

    def with_quantiles(self, quantiles: list[float]) -> PanelTransform:
        """This transform for a model that forecasts each of ``quantiles``."""
        transforms = {name: t.with_quantiles(quantiles) for name, t in self.transforms.items()}
        return PanelTransform(self.series_column, transforms)

    def with_interval(
        self, level: float, widths: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> PanelTransform:
        """This transform forecasting each series' calibrated interval too (``widths`` by
        series, as :meth:`SeriesTransform.with_interval` takes one)."""
        transforms = {
            name: transform.with_interval(level, {"": widths[name]})
            for name, transform in self.transforms.items()
        }
        return PanelTransform(self.series_column, transforms)

    @property
    def columns(self) -> list[str]:
        """The columns a forecast reads: the series id, then each series' columns."""
        return [self.series_column, *next(iter(self.transforms.values())).columns]

    def _groups(self, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
        if not isinstance(rows, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame with columns {self.columns}")
        if self.series_column not in rows.columns:
            raise DataError(_no_column("input", self.series_column, rows))
        ids = rows[self.series_column].astype(str)
        groups = []
        for name in pd.unique(ids):
            if name not in self.transforms:
                known = ", ".join(self.transforms)
                raise DataError(f"input: unknown series {name!r}; the model knows: {known}")
            groups.append((name, rows[ids == name].drop(columns=self.series_column)))
        return groups

    def model_input(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input, (series, input_width, features): one window per series in
        ``rows``, in the order they first appear, from its latest rows.

        Raises:
            DataError: an unknown series or a missing column; too few rows, or a missing
                value, in a series (named).
        """
        windows = []
        for name, group in self._groups(rows):
            try:
                windows.append(self.transforms[name].model_input(group))
            except DataError as error:
                raise DataError(f"series {name!r}: {error}") from None
        return np.concatenate(windows)

    def forecast_frame(self, outputs: np.ndarray, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's ``outputs`` for :meth:`model_input` of ``rows`` as each series' next
        rows (:meth:`SeriesTransform.forecast_frame`), led by the series id."""
        frames = []
        for (name, group), output in zip(self._groups(rows), outputs, strict=True):
            frame = self.transforms[name].forecast_frame(output, group)
            frames.append(frame.assign(**{self.series_column: name}))
        forecast = pd.concat(frames, ignore_index=True)
        return forecast[[self.series_column, *forecast.columns[:-1]]]
