"""Windows of a series: strided views of it (no copy), or :class:`Windows`, start indices into
the series held once from which each batch is gathered when read (for training, in a
``tf.data`` pipeline); and in-memory windows as batches.

A window pairs ``input_width`` consecutive steps with the ``horizon`` steps that start ``gap``
steps after the last input step::

    |<-- input_width -->|<-- gap -->|<-- horizon -->|
    x[s] ... x[s+w-1]                y[s+w+gap] ... y[s+w+gap+h-1]

Windows start every ``stride`` steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecast.data.sources import DataError


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
    with np.errstate(invalid="ignore"):  # +inf meeting -inf is no NaN of the series'
        unclean = np.issubdtype(values.dtype, np.floating) and np.isnan(values.sum())
    if unclean:
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


@dataclass(frozen=True, eq=False)
class Windows:
    """Windows of a series held once: each window is a start index into ``series``, and a
    batch of windows is gathered from it when it is read, so memory stays
    O(series + batch x input_width) however many windows overlap.

    A window's inputs are ``series[start : start + input_width, input_columns]`` and its targets
    ``series[start + input_width + gap :][:horizon, target_columns]``. With ``relative``, each
    window's last input step is subtracted from its inputs, and the last input step of the
    target columns from its targets (see :func:`forecast.data.series_splits`).

    Several series (a panel's) are held as one array, one after another; their windows' starts
    lie inside their own series, so no window mixes two. Windows of one series array share it:
    the parts of a split, and their concatenation (:meth:`concat`), hold no copy.

    ``static_columns`` are read with the inputs, after ``input_columns``, and never made
    relative: a panel's per-series columns (static covariates, the series index), constant
    within each series, so every window of a series carries its own (see
    :func:`forecast.data.combine_series`).

    Example:
        >>> windows = Windows(np.arange(10.0)[:, None], np.array([0, 2]), input_width=3)
        >>> windows[np.array([1])][0][:, :, 0]
        array([[2., 3., 4.]], dtype=float32)
    """

    series: np.ndarray  # (time, columns), float32
    starts: np.ndarray  # (windows,) int64: each window's first input step in ``series``
    input_width: int
    horizon: int = 1
    gap: int = 0
    input_columns: tuple[int, ...] | None = None  # None: every column
    target_columns: tuple[int, ...] | None = None  # None: every column
    relative: bool = False
    static_columns: tuple[int, ...] = ()  # after the inputs, never made relative

    def __post_init__(self) -> None:
        series = np.asarray(self.series, dtype=np.float32)
        object.__setattr__(self, "series", series[:, None] if series.ndim == 1 else series)
        object.__setattr__(self, "starts", np.asarray(self.starts, dtype=np.int64))
        check_window_args(self.input_width, self.horizon, self.gap, 1)
        span = self.input_width + self.gap + self.horizon
        if len(self.starts) and (
            self.starts.min() < 0 or self.starts.max() + span > len(self.series)
        ):
            raise DataError(f"a window start lies outside the series of {len(self.series)} steps")

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def inputs(self) -> WindowView:
        """The windows' inputs, read like an (n, input_width, features) array."""
        return WindowView(self, "inputs")

    @property
    def targets(self) -> WindowView:
        """The windows' targets, read like an (n, horizon, targets) array."""
        return WindowView(self, "targets")

    def __getitem__(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        """The (inputs, targets) of the windows ``index`` selects (an int, a slice or an index
        array), gathered as float32 arrays."""
        starts = np.atleast_1d(self.starts[index])
        input_rows = starts[:, None] + np.arange(self.input_width)
        target_rows = starts[:, None] + np.arange(self.horizon) + self.input_width + self.gap
        rows = self.series[input_rows]
        inputs = _columns(rows, self.input_columns)
        targets = _columns(self.series[target_rows], self.target_columns)
        if self.relative:
            last = self.series[starts + self.input_width - 1][:, None, :]
            inputs = inputs - inputs[:, -1:, :]
            targets = targets - _columns(last, self.target_columns)
        if self.static_columns:
            inputs = np.concatenate([inputs, rows[..., list(self.static_columns)]], axis=2)
        return inputs, targets

    def concat(self, other: Windows) -> Windows:
        """These windows, then ``other``'s, of the same series: their starts concatenated."""
        if other.series is not self.series:
            raise DataError("windows of different series arrays cannot be concatenated")
        return dataclasses.replace(self, starts=np.concatenate([self.starts, other.starts]))

    def digest(self) -> str:
        """A short hex digest of what the windows hold: the series' values, the starts and the
        window's shape; equal windows give equal digests, without gathering any."""
        spec = (
            self.input_width,
            self.horizon,
            self.gap,
            self.input_columns,
            self.target_columns,
            self.relative,
            self.static_columns,
            self.series.shape,
        )
        hashed = hashlib.sha256(repr(spec).encode())
        hashed.update(np.ascontiguousarray(self.series).data)
        hashed.update(np.ascontiguousarray(self.starts).data)
        return hashed.hexdigest()[:8]

    def sample(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of at most ``count`` windows spread evenly from first to last."""
        return self[np.unique(np.linspace(0, len(self) - 1, min(count, len(self))).astype(int))]

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int | None = None) -> Any:
        """A ``tf.data.Dataset`` of (inputs, targets) batches, each gathered from the series when
        it is read; with ``shuffle``, in a new order every iteration (epoch), the same orders
        for the same ``seed``.

        The order is a permutation of the window numbers drawn once per epoch (8 bytes a
        window), not a shuffle buffer of single elements, which costs far more per element.
        Unshuffled, the batches are ``self[i * batch_size : (i + 1) * batch_size]``.
        """
        import tensorflow as tf

        count, size = len(self), int(batch_size)
        series = tf.constant(self.series)
        starts = tf.constant(self.starts)
        input_offsets = tf.range(self.input_width, dtype=tf.int64)
        target_offsets = tf.range(self.horizon, dtype=tf.int64) + self.input_width + self.gap

        def gather(numbers: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            batch_starts = tf.gather(starts, numbers)
            rows = tf.gather(series, batch_starts[:, None] + input_offsets)
            inputs = rows
            if self.input_columns is not None:
                inputs = tf.gather(rows, self.input_columns, axis=2)
            targets = tf.gather(series, batch_starts[:, None] + target_offsets)
            if self.target_columns is not None:
                targets = tf.gather(targets, self.target_columns, axis=2)
            if self.relative:
                last = tf.gather(series, batch_starts + self.input_width - 1)[:, None, :]
                if self.target_columns is not None:
                    last = tf.gather(last, self.target_columns, axis=2)
                inputs = inputs - inputs[:, -1:, :]
                targets = targets - last
            if self.static_columns:
                fixed = tf.gather(rows, self.static_columns, axis=2)
                inputs = tf.concat([inputs, fixed], axis=2)
            return inputs, targets

        def batches(order: tf.Tensor) -> Any:
            numbers = tf.data.Dataset.range((count + size - 1) // size)
            return numbers.map(lambda b: order[b * size : (b + 1) * size])

        if shuffle:
            # One seed per iteration, different each epoch and the same sequence for a seed.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
            orders = seeds.map(
                lambda s: tf.random.experimental.stateless_shuffle(
                    tf.range(count, dtype=tf.int64), seed=tf.stack([s, tf.constant(0, tf.int64)])
                )
            )
            # flat_map hides the count of batches, which Keras needs to end each epoch quietly.
            numbers = orders.flat_map(batches).apply(
                tf.data.experimental.assert_cardinality((count + size - 1) // size)
            )
        else:
            numbers = batches(tf.range(count, dtype=tf.int64))
        return numbers.map(gather).prefetch(tf.data.AUTOTUNE)


def _columns(values: np.ndarray, columns: tuple[int, ...] | None) -> np.ndarray:
    return values if columns is None else values[..., list(columns)]


class WindowView:
    """The inputs or the targets of :class:`Windows`, read like an array (``shape``, ``len``,
    indexing, ``np.asarray``): what :class:`forecast.data.Splits` holds for a series.

    Indexing gathers the selected windows; ``np.asarray`` gathers them all, batch by batch, so
    keep it to the small parts (validation, test). :func:`to_dataset` streams a view's windows
    instead.
    """

    def __init__(self, windows: Windows, kind: str) -> None:
        if kind not in ("inputs", "targets"):
            raise DataError(f"a window view is of 'inputs' or 'targets', got {kind!r}")
        self.windows, self.kind = windows, kind

    @property
    def shape(self) -> tuple[int, int, int]:
        windows = self.windows
        if self.kind == "inputs":
            steps, columns = windows.input_width, windows.input_columns
            extra = len(windows.static_columns)
        else:
            steps, columns, extra = windows.horizon, windows.target_columns, 0
        width = windows.series.shape[1] if columns is None else len(columns)
        return len(windows), steps, width + extra

    dtype = np.dtype(np.float32)
    ndim = 3

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):  # the windows first, then within each
            if index[0] is Ellipsis:
                return np.asarray(self)[index]
            return self[index[0]][(slice(None), *index[1:])]
        gathered = self.windows[index][0 if self.kind == "inputs" else 1]
        return gathered[0] if isinstance(index, int | np.integer) else gathered

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for start in range(0, len(out), GATHER_BATCH):
            out[start : start + GATHER_BATCH] = self[start : start + GATHER_BATCH]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"WindowView({self.kind}, shape={self.shape})"


GATHER_BATCH = 4096  # windows gathered at a time when a view is read whole


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
    """A ``tf.data.Dataset`` of (inputs, targets) batches of every window of ``values`` (the
    windows of :func:`make_windows`), gathered batch by batch from the series held once
    (:meth:`Windows.dataset`): memory stays O(series + batch x input_width)."""
    inputs, _ = make_windows(values, input_width, horizon, gap, stride, target_columns)
    windows = Windows(
        np.asarray(values),
        np.arange(len(inputs)) * stride,
        input_width,
        horizon,
        gap,
        target_columns=None if target_columns is None else tuple(target_columns),
    )
    return windows.dataset(batch_size, shuffle, seed)


def to_dataset(
    inputs: Any,
    targets: Any,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
) -> Any:
    """Batches of (inputs, targets); shuffle for training only, prefetched.

    The inputs and targets of one :class:`Windows` (:class:`WindowView`) are gathered batch by
    batch from their series (:meth:`Windows.dataset`); arrays (anything else) are held in
    memory, cached. Integer targets (class labels) stay integers.
    """
    import tensorflow as tf

    if (
        isinstance(inputs, WindowView)
        and isinstance(targets, WindowView)
        and inputs.windows is targets.windows
        and (inputs.kind, targets.kind) == ("inputs", "targets")
    ):
        return inputs.windows.dataset(batch_size, shuffle, seed)
    targets = np.asarray(targets)
    target_type = np.int32 if np.issubdtype(targets.dtype, np.integer) else np.float32
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.ascontiguousarray(inputs, np.float32), np.ascontiguousarray(targets, target_type))
    ).cache()
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
