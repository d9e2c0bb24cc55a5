"""Windows of a series: strided views of it (no copy), or a ``tf.data`` pipeline that gathers
each batch from the series held once; and in-memory windows as batches.

A window pairs ``input_width`` consecutive steps with the ``horizon`` steps that start ``gap``
steps after the last input step::

    |<-- input_width -->|<-- gap -->|<-- horizon -->|
    x[s] ... x[s+w-1]                y[s+w+gap] ... y[s+w+gap+h-1]

Windows start every ``stride`` steps.
"""

from __future__ import annotations

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
