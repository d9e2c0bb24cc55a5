"""What a trained series model needs to forecast from raw rows, and the logged MLflow model
carries: from a series' latest rows to the model's input window, and from its output back to
future rows with timestamps, in original units; per series for a panel."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecast.data.covariates import calendar_features, with_future
from forecast.data.sources import DataError, missing_column


@dataclass(frozen=True)
class SeasonalProfile:
    """The seasons a series' targets are deseasonalised by (``data.deseasonalize``): per
    season of m steps, the mean of MSTL's seasonal component at each phase (0 .. m - 1) of the
    train part, phases counted from the series' first step ``start``. Subtracted before the
    network sees the series and added back to its forecasts, at any step: a request's steps
    are placed by their times (the series' ``time_step`` after ``start``)."""

    start: Any  # the time of the series' first step (phase 0 of every season)
    time_step: Any  # as SeriesTransform's
    profiles: tuple[np.ndarray, ...]  # per season, (m, targets)

    @classmethod
    def fit(
        cls,
        train: np.ndarray,
        positions: np.ndarray,
        seasons: tuple[int, ...],
        start: Any,
        step: Any,
    ) -> SeasonalProfile:
        """Decompose each column of ``train`` (steps, targets), the steps at ``positions``
        after ``start``, with statsforecast's MSTL."""
        from statsforecast.mstl import mstl

        profiles = [np.zeros((season, train.shape[1])) for season in seasons]
        for column in range(train.shape[1]):
            decomposed = mstl(train[:, column], list(seasons))
            for profile, season in zip(profiles, seasons, strict=True):
                component = decomposed[f"seasonal{season}" if len(seasons) > 1 else "seasonal"]
                phases = positions % season
                sums = np.bincount(phases, component.to_numpy(), minlength=season)
                profile[:, column] = sums / np.bincount(phases, minlength=season)
        return cls(start, step, tuple(profiles))

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The seasonal value at each step position: positions' shape + (targets,)."""
        positions = np.asarray(positions, dtype=np.int64)
        return sum(profile[positions % len(profile)] for profile in self.profiles)

    def positions(self, times: Any) -> np.ndarray:
        """Each of ``times``' step after the series' first (:func:`step_positions`)."""
        return step_positions(times, self.start, self.time_step)


def step_positions(times: Any, start: Any, step: Any) -> np.ndarray:
    """How many of a series' steps (``step``, as :func:`time_step` gives it) each of ``times``
    lies after ``start``, its first time.

    Raises:
        DataError: a time that does not fall on the series' steps.
    """
    if isinstance(step, str):  # calendar steps (months, weeks ending Saturday): count them
        times = pd.DatetimeIndex(pd.to_datetime(times))
        first = pd.Timestamp(start)
        grid = pd.date_range(min(first, times.min()), max(first, times.max()), freq=step)
        found = grid.get_indexer(times)
        if (found < 0).any():
            off = times[int(np.argmax(found < 0))]
            raise DataError(
                f"input: time {off} is not on the series' steps ({step}); the deseasonalised "
                "model places each row by its time"
            )
        return found - grid.get_loc(first)
    if isinstance(step, pd.Timedelta):
        elapsed = (pd.DatetimeIndex(pd.to_datetime(times)) - pd.Timestamp(start)).to_numpy()
        return np.rint(elapsed / step.to_timedelta64()).astype(np.int64)
    elapsed = np.asarray(times, dtype=np.float64) - float(start)
    return np.rint(elapsed / step).astype(np.int64)


@dataclass(frozen=True)
class SeriesTransform:
    """From a series' latest raw rows to a model's input window, and from the model's output
    back to future rows in original units: what a trained series model needs to forecast
    from raw data (the logged MLflow model carries it).

    A model with future-known covariates (``future_columns``, ``calendar``) forecasts from one
    DataFrame: the history, then the future rows, whose targets are empty (NaN, or null in a
    JSON request) and whose ``future_columns`` are filled, as ``futr_df`` is in neuralforecast;
    at least ``gap + horizon`` of them, the first ``gap`` being the gap's. The calendar is
    derived from the times, so a model with only a calendar needs no future rows.
    """

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
    future_columns: list[str] = dataclasses.field(default_factory=list)  # known ahead
    calendar: list[str] = dataclasses.field(default_factory=list)  # derived from the times
    future_scaler: Any = None  # the future columns', fitted on the train part
    # How the training series' missing values were filled (forecast.data.load_series' fillna):
    # a request's history is filled alike, and its forecast says how many values were.
    fillna: str | None = None
    seasonal: SeasonalProfile | None = None  # data.deseasonalize's, added back to forecasts

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
        """The columns a forecast reads: the time column, then features, targets and future
        columns."""
        values = list(
            dict.fromkeys([*self.feature_columns, *self.target_columns, *self.future_columns])
        )
        return [self.time_column, *values] if self.time_column else values

    def model_input(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input from the last ``input_width`` rows of the history in ``rows``
        (the latest last): (1, input_width, features); with covariates, followed by the
        horizon's rows (see :mod:`forecast.data.covariates`).

        Raises:
            DataError: a missing column, too few rows, a missing or non-numeric value, or
                (with ``future_columns``) too few future rows or a future value missing.
        """
        if not isinstance(rows, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame with columns {self.columns}")
        for column in self.columns:
            if column not in rows.columns:
                raise DataError(missing_column("input", column, rows))
        self._check_time_order(rows)
        rows, _ = self.filled(rows)
        history = self._history(rows)
        if len(history) < self.input_width:
            raise DataError(
                f"input: {len(history)} rows; the model reads the last {self.input_width}"
            )
        first = len(history) - self.input_width
        values = history.iloc[first:][self.columns[1:] if self.time_column else self.columns]
        numeric = _numeric(values, first)
        if self.seasonal is not None:
            numeric = self._deseasonalised(numeric, self._times(history).iloc[first:])
        features = numeric[self.feature_columns].to_numpy(np.float64)
        if self.feature_scaler is not None:
            features = self.feature_scaler.transform(features)
        if self.relative:
            features = features - features[-1:]
        window = features[None].astype(np.float32)
        if not (self.future_columns or self.calendar):
            return window
        # The covariates at the input steps, the gap's and the horizon's; the gap's are never
        # read, so they need not be given.
        steps = self.gap + self.horizon
        future = rows.iloc[len(history) : len(history) + steps]
        known = numeric[self.future_columns].to_numpy(np.float64)
        ahead = np.full((steps, len(self.future_columns)), np.nan)
        if self.future_columns:
            if len(future) < steps:
                raise DataError(
                    f"input: {len(future)} future rows (targets empty) after the history; the "
                    f"model needs {steps} (gap {self.gap} + horizon {self.horizon}) with "
                    f"{', '.join(map(repr, self.future_columns))} filled"
                )
            horizon = future.iloc[self.gap :][self.future_columns]
            ahead[self.gap :] = _numeric(horizon, len(history) + self.gap).to_numpy(np.float64)
        known = np.concatenate([known, ahead])
        if self.future_scaler is not None:
            known = self.future_scaler.transform(known)
        times = self._times(history).iloc[first:]
        times = pd.Index([*times, *self.future_times(times.iloc[-1])])
        covariates = np.concatenate([known, calendar_features(times, self.calendar)], axis=1)
        return with_future(window, covariates, self.input_width, self.horizon, self.gap)

    def _deseasonalised(self, numeric: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
        """``numeric``'s target columns less the seasons at their rows' ``times``."""
        seasonal = self.seasonal.at(self.seasonal.positions(times))
        numeric = numeric.copy()
        targets = numeric[self.target_columns].to_numpy(np.float64)
        numeric[self.target_columns] = targets - seasonal
        return numeric

    def _times(self, rows: pd.DataFrame) -> pd.Series:
        times = rows[self.time_column] if self.time_column else rows.index.to_series()
        return pd.to_datetime(times) if self.calendar else times

    def _history(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` without the future rows that follow the history: with covariates, the
        trailing rows whose targets are all empty."""
        if not (self.future_columns or self.calendar):
            return rows
        targets = rows[self.target_columns].apply(pd.to_numeric, errors="coerce")
        known = np.flatnonzero(targets.notna().any(axis=1).to_numpy())
        return rows.iloc[: known[-1] + 1 if len(known) else 0]

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

    def future_times(self, last_time: Any) -> Any:
        """The times of the ``gap + horizon`` steps after ``last_time``, at the series'
        step."""
        steps = np.arange(1, self.gap + self.horizon + 1)
        if isinstance(self.time_step, str):  # calendar steps: months, weeks ending Saturday
            periods = self.gap + self.horizon + 1
            future = pd.date_range(pd.Timestamp(last_time), periods=periods, freq=self.time_step)
            return future[steps]
        if isinstance(self.time_step, pd.Timedelta):
            return pd.Timestamp(last_time) + self.time_step * steps
        return float(last_time) + self.time_step * steps

    def forecast_frame(self, outputs: np.ndarray, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's ``outputs`` for :meth:`model_input` of ``rows`` as the next
        ``horizon`` rows (``gap`` after the last one): their times and the targets in
        original units. A quantile model gives each target as its median, and each quantile
        q as ``<target>_q<q>``."""
        levels = self.quantiles or [None]
        shape = (self.horizon, len(self.target_columns), len(levels))
        # Each quantile's (horizon, targets) forecast, quantiles first, to unscale them alike.
        per_level = np.moveaxis(np.asarray(outputs, np.float64).reshape(shape), -1, 0)
        rows, filled = self.filled(rows)
        rows = self._history(rows)
        times = rows[self.time_column] if self.time_column else rows.index.to_series()
        future = self.future_times(times.iloc[-1])[self.gap :]
        offset = None
        if self.relative:  # the model forecasts changes from the last row's (scaled) targets
            offset = rows[self.target_columns].iloc[-1:].to_numpy(np.float64)
            if self.seasonal is not None:
                offset = offset - self.seasonal.at(self.seasonal.positions(times.iloc[-1:]))
            if self.target_scaler is not None:
                offset = self.target_scaler.transform(offset)
        outputs = unscale_targets(per_level, offset, self.target_scaler)
        if self.seasonal is not None:  # (horizon, targets), the same for every quantile
            outputs = outputs + self.seasonal.at(self.seasonal.positions(future))
        outputs = np.moveaxis(outputs, 0, -1)
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
        if self.fillna is not None:  # never silently: how many of the values read were filled
            columns["filled_values"] = filled
        return pd.DataFrame(columns)

    def filled(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """``rows`` with the history's missing values filled as the training series' were
        (``fillna``: ``ffill``, ``interpolate``, or ``drop`` their rows), and how many values
        were missing; ``rows`` as they are, and 0, without ``fillna``. A non-numeric value is
        left for :meth:`model_input` to refuse, and so is one that nothing fills (before the
        first value, with ``ffill``)."""
        history = self._history(rows)
        values = history[[column for column in self.columns if column != self.time_column]]
        missing = values.isna()
        count = int(missing.to_numpy().sum())
        if self.fillna is None or not count:
            return rows, 0
        if self.fillna == "drop":
            kept = history[~missing.any(axis=1).to_numpy()]
            return pd.concat([kept, rows.iloc[len(history) :]]), count
        numeric = values.apply(pd.to_numeric, errors="coerce")
        if self.fillna == "ffill":
            numeric = numeric.ffill()
        else:
            numeric = numeric.interpolate(method="linear", limit_direction="both")
        rows = rows.copy()
        positions = [rows.columns.get_loc(column) for column in values.columns]
        rows.iloc[: len(history), positions] = values.where(~missing, numeric).to_numpy()
        return rows, count


@dataclass(frozen=True)
class PanelTransform:
    """A :class:`SeriesTransform` per series of a panel: forecasts each series named in the
    rows' ``series_column`` from its own latest rows, with its own scaling.

    A panel with static covariates (``static_columns``) holds each known series' values
    (``statics``, raw) as Darts keeps them attached to the series: a request may leave them
    out, and a value given in a series' rows (one per series) is used instead. With
    ``series_index`` each series' index joins them (the model learned an embedding of each
    series), so only the series trained on can be forecast. Without it, a model with static
    covariates forecasts a series it never saw from the statics in its rows, scaled by its own
    history in the request (it has no train part, so no fitted scaler of its own; the model
    learned from series each scaled by their own past, so its own past is the consistent
    choice), without a calibrated interval (its errors were never measured).
    """

    series_column: str
    transforms: dict[str, SeriesTransform]
    static_columns: list[str] = dataclasses.field(default_factory=list)
    statics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # raw, per series
    static_scaler: Any = None  # fitted across the training series, or None
    series_index: bool = False  # each series' index is a model input (an embedding)

    def with_quantiles(self, quantiles: list[float]) -> PanelTransform:
        """This transform for a model that forecasts each of ``quantiles``."""
        transforms = {name: t.with_quantiles(quantiles) for name, t in self.transforms.items()}
        return dataclasses.replace(self, transforms=transforms)

    def with_interval(
        self, level: float, widths: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> PanelTransform:
        """This transform forecasting each series' calibrated interval too (``widths`` by
        series, as :meth:`SeriesTransform.with_interval` takes one)."""
        transforms = {
            name: transform.with_interval(level, {"": widths[name]})
            for name, transform in self.transforms.items()
        }
        return dataclasses.replace(self, transforms=transforms)

    @property
    def columns(self) -> list[str]:
        """The columns a forecast reads: the series id, then each series' columns, then the
        static columns (which a known series may leave out)."""
        first = next(iter(self.transforms.values()))
        return [self.series_column, *first.columns, *self.static_columns]

    def _groups(self, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
        if not isinstance(rows, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame with columns {self.columns}")
        if self.series_column not in rows.columns:
            raise DataError(missing_column("input", self.series_column, rows))
        ids = rows[self.series_column].astype(str)
        groups = []
        for name in pd.unique(ids):
            if name not in self.transforms and (self.series_index or not self.static_columns):
                known = ", ".join(self.transforms)
                why = " (it learned an embedding of each)" if self.series_index else ""
                raise DataError(f"input: unknown series {name!r}; the model knows: {known}{why}")
            groups.append((name, rows[ids == name].drop(columns=self.series_column)))
        return groups

    def _transform(self, name: str, rows: pd.DataFrame) -> SeriesTransform:
        """Series ``name``'s transform: its own if the model trained on it, else a known
        series' with the scalers fitted again on the history in ``rows``."""
        if name in self.transforms:
            return self.transforms[name]
        template = dataclasses.replace(next(iter(self.transforms.values())), interval=None)
        history = template._history(rows)
        if len(history) < template.input_width:
            raise DataError(
                f"input: {len(history)} rows; the model reads the last {template.input_width}"
            )
        refitted = {}
        for key, columns in (
            ("feature_scaler", template.feature_columns),
            ("target_scaler", template.target_columns),
            ("future_scaler", template.future_columns),
        ):
            scaler = getattr(template, key)
            if scaler is not None and columns:
                values = _numeric(history[columns], 0).to_numpy(np.float64)
                refitted[key] = copy.deepcopy(scaler).fit(values)
        return dataclasses.replace(template, **refitted)

    def _constant(self, name: str, rows: pd.DataFrame) -> np.ndarray:
        """The columns the model reads for series ``name`` besides its window: its static
        covariates (given in ``rows``, else as trained), scaled, then its index if embedded."""
        values = []
        for column in self.static_columns:
            given = rows[column] if column in rows.columns else pd.Series([], dtype=float)
            numeric = pd.to_numeric(given, errors="coerce")
            bad = numeric.isna() & given.notna()
            if bad.any():
                value = given[bad].iloc[0]
                raise DataError(f"input: static column {column!r}: non-numeric value {value!r}")
            found = pd.unique(numeric.dropna())
            if len(found) > 1:
                raise DataError(
                    f"input: static column {column!r} varies within the series' rows "
                    f"({found[0]:g} and {found[1]:g}); give one value per series"
                )
            if len(found) == 1:
                values.append(float(found[0]))
            elif name in self.statics:
                values.append(float(self.statics[name][len(values)]))
            else:
                raise DataError(
                    f"input: no value of static column {column!r}; a series the model did not "
                    "train on needs its static columns in its rows"
                )
        constant = np.asarray(values, np.float64)
        if self.static_scaler is not None and len(constant):
            constant = self.static_scaler.transform(constant[None])[0]
        if self.series_index:
            constant = np.append(constant, list(self.transforms).index(name))
        return constant.astype(np.float32)

    def model_input(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input, (series, input_width, features): one window per series in
        ``rows``, in the order they first appear, from its latest rows; each series' static
        covariates (and index) as its last columns (see :mod:`forecast.data.panels`).

        Raises:
            DataError: an unknown series (but with static covariates alone) or a missing
                column; too few rows, a missing value, or a static value missing or varying,
                in a series (named).
        """
        windows = []
        for name, group in self._groups(rows):
            try:
                window = self._transform(name, group).model_input(group)
                constant = self._constant(name, group)
            except DataError as error:
                raise DataError(f"series {name!r}: {error}") from None
            fixed = np.broadcast_to(constant, (*window.shape[:2], len(constant)))
            windows.append(np.concatenate([window, fixed], axis=2))
        return np.concatenate(windows)

    def forecast_frame(self, outputs: np.ndarray, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's ``outputs`` for :meth:`model_input` of ``rows`` as each series' next
        rows (:meth:`SeriesTransform.forecast_frame`), led by the series id."""
        frames = []
        for (name, group), output in zip(self._groups(rows), outputs, strict=True):
            frame = self._transform(name, group).forecast_frame(output, group)
            frames.append(frame.assign(**{self.series_column: name}))
        forecast = pd.concat(frames, ignore_index=True)
        return forecast[[self.series_column, *forecast.columns[:-1]]]


def _numeric(values: pd.DataFrame, first: int) -> pd.DataFrame:
    """``values`` as numbers; a missing or non-numeric one is a :class:`DataError` naming its
    column and row (``first`` is the row number of ``values``' first row in the request)."""
    numeric = values.apply(pd.to_numeric, errors="coerce")
    if numeric.isna().any().any():
        column = numeric.isna().any().idxmax()
        offset = int(np.argmax(numeric[column].isna()))
        value = values[column].iloc[offset]
        problem = "missing value" if pd.isna(value) else f"non-numeric value {value!r}"
        raise DataError(f"input: column {column!r} row {first + offset}: {problem}")
    return numeric


def time_step(index: pd.Index) -> Any:
    """The step between rows of a series' time index: its pandas frequency for regular
    timestamps (``W-SAT``, ``MS``, ...), else the median difference: a ``Timedelta`` for
    timestamps, a number for numbers (years, step numbers)."""
    if isinstance(index, pd.DatetimeIndex):
        frequency = pd.infer_freq(index) if len(index) >= 3 else None
        return frequency or pd.Series(index).diff().median()
    return float(np.median(np.diff(index.to_numpy(np.float64)))) if len(index) > 1 else 1.0


def unscale_targets(values: np.ndarray, offset: np.ndarray | None, scaler: Any) -> np.ndarray:
    """Targets in a model's units, (..., targets), in original units: ``offset`` added back (with
    ``relative``, each window's last scaled target, broadcast over the horizon), then the
    ``scaler`` (fitted scikit-learn, or None) undone."""
    if offset is not None:
        values = values + offset
    if scaler is None:
        return values
    return scaler.inverse_transform(values.reshape(-1, values.shape[-1])).reshape(values.shape)
