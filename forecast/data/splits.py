"""Train, validation and test parts, cut in time order, scaled on the train part, windowed; and
the folds of a rolling-origin backtest.

A window belongs to the part its targets lie in, and no window's targets straddle two parts;
its inputs may reach back into the parts before (they are observations known when its forecast
is made), so every step of the validation and test parts is a target, as in forecasters'
rolling-origin evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecast.data.covariates import calendar_features, check_calendar, with_future
from forecast.data.sources import DataError, missing_column
from forecast.data.transforms import (
    PanelTransform,
    SeasonalProfile,
    SeriesTransform,
    step_positions,
    time_step,
    unscale_targets,
)
from forecast.data.windows import Windows, WindowView, check_window_args, make_windows
from forecast.tasks import Task


@dataclass(frozen=True)
class Splits:
    """Train / validation / test (inputs, targets); inputs are (n, time, features). Each is an
    array (a task's samples, drawn in memory) or, for a series, a :class:`WindowView` of the
    part's :class:`Windows`, gathered from the series held once when read.

    ``classes``: for a categorical task, the number of classes its integer targets (labels)
    are drawn from; None for real-valued targets.
    """

    x_train: np.ndarray | WindowView
    y_train: np.ndarray | WindowView
    x_val: np.ndarray | WindowView
    y_val: np.ndarray | WindowView
    x_test: np.ndarray | WindowView
    y_test: np.ndarray | WindowView
    classes: int | None = None
    # With future-known covariates, the horizon's rows that follow each input window (see
    # forecast.data.covariates); 0 without.
    future_steps: int = 0
    # A panel's per-series columns, last in every input row (see forecast.data.panels): this
    # many static covariates, then, with series_count > 0, the series' index among that many
    # (for a learned embedding).
    static_columns: int = 0
    series_count: int = 0

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


def refit_every(refit: bool | int, folds: int) -> int:
    """Every how many folds a backtest trains anew: ``refit`` true is every fold, false never
    after the first (every ``folds``), an integer k every k-th."""
    if isinstance(refit, bool):
        return 1 if refit else folds
    return refit


def fold_bounds(
    length: int,
    val_fraction: float,
    test_fraction: float,
    folds: int = 1,
    refit: bool | int = True,
) -> list[dict[str, tuple[int, int]]]:
    """The train / val / test parts, as (start, end) steps, of each fold of a rolling-origin
    backtest over a series of ``length`` steps.

    The last ``test_fraction`` of the steps is cut into ``folds`` consecutive test folds (of
    equal length, give or take a step). With ``refit``, each fold's model trains on everything
    before the fold (an expanding window), the last ``val_fraction`` of the series' length of
    it being validation; without, every fold keeps the first fold's train and val parts, so one
    model trained once is scored on every fold; with an integer k, a fold keeps the parts of
    the last fold a multiple of k after the first (see :func:`refit_every`). One fold is the
    single split.
    """
    if not isinstance(folds, int) or folds < 1:
        raise DataError(f"backtest folds must be an integer >= 1, got {folds!r}")
    n_test = int(round(length * test_fraction))
    n_val = int(round(length * val_fraction))
    test_start = length - n_test
    if test_start - n_val <= 0:
        raise DataError(f"a series of {length} steps leaves no training steps before its test")
    edges = [test_start + fold * n_test // folds for fold in range(folds + 1)]
    every = refit_every(refit, folds)
    parts = []
    for index, (start, end) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        past = edges[index - index % every]  # the start of the fold it last trained before
        parts.append(
            {"train": (0, past - n_val), "val": (past - n_val, past), "test": (start, end)}
        )
    return parts


TARGET_TRANSFORMS = ("log", "boxcox")


def make_target_transform(name: str) -> Any:
    """A variance-stabilising transform of the target, undone for the forecasts: ``log``, or
    ``boxcox`` (scikit-learn's Box-Cox power transform, its lambda fitted on the train part)."""
    from sklearn.preprocessing import FunctionTransformer, PowerTransformer

    if name == "log":
        return FunctionTransformer(np.log, inverse_func=np.exp, check_inverse=False)
    if name == "boxcox":
        return PowerTransformer(method="box-cox", standardize=False)
    raise DataError(f"transform must be one of {', '.join(TARGET_TRANSFORMS)}, got {name!r}")


def _transform_then_scale(scaler: Any, transform: str | None, transformed: list[bool]) -> Any:
    """``scaler`` (or None) after ``transform`` of the columns marked ``transformed``, the
    others passed through in place, as one scikit-learn estimator fitted and undone at once;
    the scaler alone without a transform or a column to transform."""
    if transform is None or not any(transformed):
        return scaler
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline

    step = make_target_transform(transform)
    if not all(transformed):  # a column each, in their order
        columns = [
            (str(index), step if chosen else "passthrough", [index])
            for index, chosen in enumerate(transformed)
        ]
        step = ColumnTransformer(columns)
    return step if scaler is None else make_pipeline(step, scaler)


def make_scaler(name: str) -> Any:
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "none": None}
    if name not in scalers:
        raise DataError(f"scaler must be one of {', '.join(scalers)}, got {name!r}")
    return scalers[name]() if scalers[name] else None


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
    # The time of each step of ``values`` (timestamps, years or step numbers); None for a panel.
    times: np.ndarray | None = None
    # With data.deseasonalize, the seasonal profile at each step of ``values``: what the
    # network's forecasts of the rest get back.
    seasons: np.ndarray | None = None

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
        unscaled = unscale_targets(targets, offset, self.target_scaler)
        if self.seasons is None:
            return unscaled
        steps = self.origins[part][:, None] + self.gap + 1 + np.arange(targets.shape[1])
        return unscaled + self.seasons[steps]


def series_splits(
    frame: pd.DataFrame,
    input_width: int,
    horizon: int = 1,
    gap: int = 0,
    stride: int = 1,
    test_stride: int = 1,
    feature_columns: list[str] | None = None,
    target_columns: list[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scaler: str = "standard",
    relative: bool = False,
    bounds: dict[str, tuple[int, int]] | None = None,
    future_columns: list[str] | None = None,
    calendar: list[str] | None = None,
    fillna: str | None = None,
    target_transform: str | None = None,
    deseasonalize: tuple[int, ...] = (),
) -> SeriesData:
    """Split a series in time order, fit scaling on the train part, window each part.

    The last ``test_fraction`` of the steps is the test part, the ``val_fraction`` before it
    validation, the rest training. Each part's windows are those whose targets lie in it,
    their inputs reaching back into the part before where they must: every step of the
    validation and test parts is forecast, and no training window sees a validation or test
    step. ``bounds`` (``{"train": (start, end), "val": ..., "test": ...}``,
    one fold of :func:`fold_bounds`) sets the parts instead.

    The training and validation windows start every ``stride`` steps, the test windows every
    ``test_stride`` (``evaluation.step``): one test window per forecast origin.

    With ``relative``, every window is shifted so that its last input step is zero, and its
    targets by the same amount: the model learns changes from the last observation, which
    carries it through trends that leave the training range (where a tanh network saturates).

    The parts hold no windows: each is a :class:`Windows` of start indices into one scaled
    copy of the series, shared by the three, and gathered (and made relative) batch by batch
    when read.

    ``future_columns`` (known over the horizon, scaled on the train part like the features)
    and the ``calendar`` features of the time index (:data:`forecast.data.covariates.CALENDAR`)
    are future-known covariates: each window gets them at its input steps and at its target
    steps, after its input rows (:func:`forecast.data.covariates.with_future`). They are not
    past features: the features default to the columns other than ``future_columns``.
    ``fillna`` (as the series was read with): its transform fills a request's gaps alike.
    ``target_transform`` (``log`` or ``boxcox``, :func:`make_target_transform`) comes before
    the scaling of the target columns, fitted on the train part alike and undone for the
    forecasts (the scalers carry it, so the logged model applies it too). ``deseasonalize``
    (seasons, ``data.deseasonalize``): the target columns less a seasonal profile
    (:class:`SeasonalProfile`, MSTL's fitted on the train part) before the scaling, the
    network learning what the seasons leave; its forecasts get the profile back.
    """
    for spacing in (stride, test_stride):
        check_window_args(input_width, horizon, gap, spacing)
    _check_fractions(val_fraction, test_fraction)
    future = list(future_columns or [])
    calendar = list(calendar or [])
    check_calendar(calendar)
    features = list(feature_columns or [c for c in frame.columns if c not in future])
    targets = list(target_columns or features)
    _check_columns(frame, features, targets, future)
    if bounds is None:
        (bounds,) = fold_bounds(len(frame), val_fraction, test_fraction)
    seasonal, adjusted, in_season = _deseasonalised(
        frame, targets, deseasonalize, bounds["train"][1]
    )
    scaled = _scaled(
        adjusted, features, targets, future, calendar, scaler, bounds["train"][1], target_transform
    )
    combined, covariates = scaled.values, scaled.covariates
    strides = {"train": stride, "val": stride, "test": test_stride}
    splits, offsets, origins = _windowed_parts(
        combined, covariates, bounds, input_width, horizon, gap, strides, len(features), relative
    )
    return SeriesData(
        splits=splits,
        target_scaler=scaled.target_scaler,
        feature_columns=features,
        target_columns=targets,
        split_lengths=tuple(end - start for start, end in bounds.values()),
        values=frame[targets].to_numpy(np.float64),
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
            feature_scaler=scaled.feature_scaler,
            target_scaler=scaled.target_scaler,
            time_step=time_step(frame.index),
            future_columns=future,
            calendar=calendar,
            future_scaler=scaled.future_scaler,
            fillna=fillna,
            seasonal=seasonal,
        ),
        last_rows=_request_rows(frame, input_width, gap + horizon, future),
        times=frame.index.to_numpy(),
        seasons=in_season,
    )


def _deseasonalised(
    frame: pd.DataFrame, targets: list[str], seasons: tuple[int, ...], train_end: int
) -> tuple[SeasonalProfile | None, pd.DataFrame, np.ndarray | None]:
    """The seasonal profile of ``targets`` fitted on the first ``train_end`` rows, ``frame``
    with it subtracted from them, and its value at each row; (None, ``frame``, None) without
    ``seasons``."""
    if not seasons:
        return None, frame, None
    if train_end < 2 * max(seasons):  # MSTL's least
        raise DataError(
            f"data.deseasonalize: the train part ({train_end} steps) must hold two of the "
            f"longest season ({max(seasons)} steps); lower data.val_fraction or test_fraction"
        )
    start, step = frame.index[0], time_step(frame.index)
    positions = step_positions(frame.index, start, step)
    values = frame[targets].to_numpy(np.float64)
    seasonal = SeasonalProfile.fit(values[:train_end], positions[:train_end], seasons, start, step)
    in_season = seasonal.at(positions)
    adjusted = frame.copy()
    adjusted[targets] = values - in_season
    return seasonal, adjusted, in_season


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise DataError(f"{name} must lie in (0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise DataError("val_fraction + test_fraction must leave steps for training")


def _request_rows(
    frame: pd.DataFrame, input_width: int, ahead: int, future: list[str]
) -> pd.DataFrame:
    """A request's shape, from the series' last rows: the ``input_width`` rows of history
    and, with ``future`` columns, ``ahead`` (gap + horizon) rows with only those known."""
    rows = frame.iloc[-input_width:]
    if future:
        rows = frame.iloc[-(input_width + ahead) :].copy()
        unknown = [column for column in frame.columns if column not in future]
        rows.iloc[input_width:, [frame.columns.get_loc(c) for c in unknown]] = np.nan
    return rows.reset_index(drop=frame.index.name is None)


def _windowed_parts(
    combined: np.ndarray,
    covariates: np.ndarray | None,
    bounds: dict[str, tuple[int, int]],
    input_width: int,
    horizon: int,
    gap: int,
    strides: dict[str, int],
    features: int,
    relative: bool,
) -> tuple[Splits, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each part's windows, every ``strides[part]`` steps, over ``combined`` (its first
    ``features`` columns the inputs, the rest the targets), as :class:`Splits`; and per part
    each window's last observed targets (what a ``relative`` window is shifted by) and the
    index of its origin, the last input step."""
    arrays, offsets, origins = {}, {}, {}
    feature_index = tuple(range(features))
    target_index = list(range(features, combined.shape[1]))
    # Where each part's windows start: the inputs and gap of its first target step before it.
    window_starts = {part: max(start - input_width - gap, 0) for part, (start, _) in bounds.items()}
    for part, (start, end) in bounds.items():
        first = window_starts[part]
        if end - first < input_width + gap + horizon:
            # The train part comes first and holds whole windows, so the others have all the
            # steps before them that their inputs need: they fall short of the horizon only.
            # Named by the config keys a user would change.
            if part == "train":
                need = (
                    f"one window of input_width {input_width} + gap {gap} + horizon {horizon} "
                    "steps; lower data.input_width, data.gap or data.horizon"
                )
            else:
                need = f"data.horizon ({horizon} steps); raise data.{part}_fraction or lower it"
            raise DataError(f"{part} part ({end - start} steps): too short for {need}")
        stride = strides[part]
        # Views, no copy: make_windows checks the part (NaNs, length) and counts its windows.
        inputs, _ = make_windows(
            combined[first:end], input_width, horizon, gap, stride, target_index
        )
        starts = first + np.arange(len(inputs)) * stride
        windows = Windows(
            combined,
            starts,
            input_width,
            horizon,
            gap,
            input_columns=feature_index,
            target_columns=tuple(target_index),
            relative=relative,
        )
        arrays[part] = (windows.inputs, windows.targets)
        if covariates is not None:  # not shifted by `relative`: they are not the series
            # The covariate rows join each window's inputs: those windows are arrays.
            part_inputs = with_future(
                np.asarray(windows.inputs), covariates[first:end], input_width, horizon, gap, stride
            )
            arrays[part] = (part_inputs, np.asarray(windows.targets))
        offsets[part] = combined[starts + input_width - 1][:, None, features:]
        origins[part] = starts + input_width - 1
    splits = Splits(
        *arrays["train"],
        *arrays["val"],
        *arrays["test"],
        future_steps=horizon if covariates is not None else 0,
    )
    return splits, offsets, origins


def _check_columns(
    frame: pd.DataFrame, features: list[str], targets: list[str], future: list[str]
) -> None:
    """Every named column in ``frame``, and no future column also a feature or a target."""
    for column in [*features, *targets, *future]:
        if column not in frame.columns:
            raise DataError(missing_column("series", column, frame))
    for column in future:
        if column in targets or column in features:
            # A target known over the horizon would be its own forecast; a past feature is
            # read over the input window, which the covariates already are.
            kind = "target" if column in targets else "feature"
            raise DataError(f"future column {column!r} is also a {kind} column; name it once")


@dataclass(frozen=True)
class ScaledSeries:
    """A series' columns scaled on its train part, as :func:`series_splits` windows them."""

    values: np.ndarray  # float32: the features, then the targets
    covariates: np.ndarray | None  # float32: the future columns, then the calendar features
    feature_scaler: Any
    target_scaler: Any
    future_scaler: Any


def _check_positive(frame: pd.DataFrame, targets: list[str], transform: str) -> None:
    """A log or Box-Cox transform needs every target value above zero."""
    for column in targets:
        values = frame[column].to_numpy(np.float64)
        if (values <= 0).any():
            row = int(np.argmax(values <= 0))
            raise DataError(
                f"data.transform: {transform} needs positive values; column {column!r} has "
                f"{values[row]:g} at row {row} ({frame.index[row]})"
            )


def _scaled(
    frame: pd.DataFrame,
    features: list[str],
    targets: list[str],
    future: list[str],
    calendar: list[str],
    scaler: str,
    train_end: int,
    target_transform: str | None = None,
) -> ScaledSeries:
    """Fit ``scaler`` on the first ``train_end`` rows of each kind of column and scale them,
    the target columns (among the features too) after ``target_transform``, fitted alike."""
    if target_transform is not None:
        _check_positive(frame, targets, target_transform)
    feature_scaler = _transform_then_scale(
        make_scaler(scaler), target_transform, [column in targets for column in features]
    )
    target_scaler = _transform_then_scale(
        make_scaler(scaler), target_transform, [True] * len(targets)
    )
    feature_values = frame[features].to_numpy(np.float64)
    target_values = frame[targets].to_numpy(np.float64)
    if feature_scaler is not None:
        feature_values = feature_scaler.fit(feature_values[:train_end]).transform(feature_values)
    if target_scaler is not None:
        target_values = target_scaler.fit(target_values[:train_end]).transform(target_values)
    values = np.concatenate([feature_values, target_values], axis=1).astype(np.float32)
    future_scaler = make_scaler(scaler) if future else None
    covariates = None
    if future or calendar:
        future_values = frame[future].to_numpy(np.float64)
        if future_scaler is not None:
            future_values = future_scaler.fit(future_values[:train_end]).transform(future_values)
        calendar_values = calendar_features(frame.index, calendar)
        covariates = np.concatenate([future_values, calendar_values], axis=1).astype(np.float32)
    return ScaledSeries(values, covariates, feature_scaler, target_scaler, future_scaler)


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
