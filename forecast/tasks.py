"""Synthetic tasks whose answer lies a known number of steps in the past.

Each task is a function ``task(n_samples, gap, seed, **params) -> (inputs, targets)`` with
``inputs`` shaped (n_samples, time, features) and ``targets`` shaped (n_samples, outputs), both
float32, deterministic per seed. The trivial baseline of a task is the best constant guess,
the mean target, whose MSE is the target variance; a model solves the task when its MSE is a
small fraction of that.

A categorical task returns a third item, its number of classes: ``(inputs, labels, classes)``
with integer ``labels`` in ``0 .. classes - 1``, shaped (n_samples, steps). When ``steps`` is
the input's length the model reads out a class at every step. It is trained and scored on
cross-entropy; its trivial baseline is the best guess that ignores the inputs, each step's
class frequencies in the training labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from forecast.imports import resolve


def sine_long_gap(
    n_samples: int,
    gap: int,
    seed: int,
    segment_length: int = 20,
    min_amplitude: float = 0.1,
    max_amplitude: float = 1.0,
    min_period: float = 5.0,
    max_period: float = 15.0,
    noise_std: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Recall the amplitude of a sine shown ``gap`` noisy steps ago.

    Each sample is a sine ``A sin(2 pi t / P + phi)`` over ``segment_length`` steps, followed by
    ``gap`` steps of Gaussian noise drawn independently of ``A``. The target is ``A``. The
    segment spans at least one period, so ``A`` is readable from it; the noise carries nothing
    about ``A``, so a model must carry it across the whole gap.

    Trivial baseline: predicting the mean amplitude scores the variance of
    ``U(min_amplitude, max_amplitude)``, ``(max - min)**2 / 12`` (0.0675 with the defaults).
    """
    _check_task_args(n_samples, gap)
    if segment_length < max_period:
        raise ValueError(
            f"segment_length={segment_length} must cover a full period "
            f"(max_period={max_period}) so the amplitude is visible."
        )
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(min_amplitude, max_amplitude, size=(n_samples, 1))
    period = rng.uniform(min_period, max_period, size=(n_samples, 1))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n_samples, 1))
    steps = np.arange(segment_length)[None, :]
    inputs = np.empty((n_samples, segment_length + gap, 1), dtype=np.float32)
    inputs[:, :segment_length, 0] = amplitude * np.sin(2.0 * np.pi * steps / period + phase)
    # Drawn in float32: a 100k x 1000 task needs 0.4 GB per copy, not 0.8 GB.
    noise = rng.standard_normal((n_samples, gap), dtype=np.float32)
    inputs[:, segment_length:, 0] = noise * np.float32(noise_std)
    return inputs, amplitude.astype(np.float32)


def sine_long_gap_baseline_mse(min_amplitude: float = 0.1, max_amplitude: float = 1.0) -> float:
    """The MSE of always predicting the mean amplitude: the variance of a uniform."""
    return (max_amplitude - min_amplitude) ** 2 / 12.0


def adding_hochreiter(
    n_samples: int, gap: int, seed: int, segment_length: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem after Hochreiter & Schmidhuber (1997, section 5.4), with both
    markers early, then a gap. Both early is our layout: in theirs only the first marker lies
    in the first 10 steps, the second anywhere in the first half. (Their values are also drawn
    from U(-1, 1) and their lengths vary between T and 1.1 T; ours are U(0, 1), as in later
    work, and of one length.)

    Two channels: values drawn from U(0, 1) at every step, and a marker channel that is 1 at
    exactly two steps, both within the first ``segment_length`` steps, and 0 elsewhere. The
    target is the sum of the two marked values. ``gap`` steps of unmarked values follow the
    segment, so the last marked value lies at least ``gap`` steps before the end.

    Trivial baseline: predicting the mean sum, 1, scores the variance of a sum of two U(0, 1),
    1/6 ~ 0.167 (the figure usually quoted for this task).
    """
    _check_task_args(n_samples, gap)
    if segment_length < 2:
        raise ValueError(f"segment_length must be >= 2 to hold two markers, got {segment_length}.")
    rng = np.random.default_rng(seed)
    length = segment_length + gap
    values = rng.random((n_samples, length), dtype=np.float32)
    # Two distinct positions per sample: the ranks of random keys within the segment.
    positions = np.argsort(rng.random((n_samples, segment_length)), axis=1)[:, :2]
    markers = np.zeros((n_samples, length), dtype=np.float32)
    np.put_along_axis(markers, positions, 1.0, axis=1)
    targets = np.take_along_axis(values, positions, axis=1).sum(axis=1, keepdims=True)
    return np.stack([values, markers], axis=-1), targets


def adding_arjovsky(n_samples: int, gap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem as Arjovsky, Shah & Bengio (2016) pose it; ``gap`` is the sequence
    length T, the axis their results are reported on.

    Two channels over T steps: values drawn from U(0, 1), and a marker channel that is 1 at one
    step drawn uniformly from the first half (steps ``0 .. T//2 - 1``) and at one from the
    second half, 0 elsewhere. The target is the sum of the two marked values. The first marked
    value lies more than T/2 steps before the end, on average 3T/4.

    Trivial baseline: predicting 1 scores the variance of the sum, 1/6 ~ 0.167, the baseline
    they report against.
    """
    _check_task_args(n_samples, gap)
    if gap < 2:
        raise ValueError(f"gap is the sequence length T here and must be >= 2, got {gap}.")
    rng = np.random.default_rng(seed)
    half = gap // 2
    values = rng.random((n_samples, gap), dtype=np.float32)
    first = rng.integers(0, half, size=(n_samples, 1))
    second = rng.integers(half, gap, size=(n_samples, 1))
    positions = np.concatenate([first, second], axis=1)
    markers = np.zeros((n_samples, gap), dtype=np.float32)
    np.put_along_axis(markers, positions, 1.0, axis=1)
    targets = np.take_along_axis(values, positions, axis=1).sum(axis=1, keepdims=True)
    return np.stack([values, markers], axis=-1), targets


ADDING_BASELINE_MSE = 1.0 / 6.0  # of both forms: the variance of a sum of two U(0, 1)


def delayed_recall(
    n_samples: int, gap: int, seed: int, n_values: int = 3, noise_std: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Show ``n_values`` numbers, then ``gap`` steps of noise, recall all of them (a copy task).

    Inputs have two channels: the numbers, drawn from U(-1, 1), on the first ``n_values``
    steps, then Gaussian noise (``noise_std``) that carries nothing about them; and a cue that
    is 1 on the last step. The target is the vector of the numbers, in order. Unlike the adding
    problems the model must store several values at once, and unlike ``sine_long_gap`` each is
    shown only once. Without the noise a vanilla RNN with orthogonal weights keeps the values
    through a silent gap of a hundred steps, so the noise is what makes the gap hard.

    Trivial baseline: predicting 0 for each number scores the variance of U(-1, 1), 1/3.
    """
    _check_task_args(n_samples, gap)
    if n_values < 1:
        raise ValueError(f"n_values must be >= 1, got {n_values}.")
    rng = np.random.default_rng(seed)
    length = n_values + gap
    numbers = rng.uniform(-1.0, 1.0, size=(n_samples, n_values)).astype(np.float32)
    inputs = np.zeros((n_samples, length, 2), dtype=np.float32)
    inputs[:, :n_values, 0] = numbers
    noise = rng.standard_normal((n_samples, gap), dtype=np.float32)
    inputs[:, n_values:, 0] = noise * np.float32(noise_std)
    inputs[:, -1, 1] = 1.0
    return inputs, numbers


DELAYED_RECALL_BASELINE_MSE = 1.0 / 3.0


def copy_memory(
    n_samples: int, gap: int, seed: int, n_symbols: int = 8, n_copied: int = 10
) -> tuple[np.ndarray, np.ndarray, int]:
    """The copy task as Arjovsky, Shah & Bengio (2016) pose it; ``gap`` is their T.

    Classes: 0 is the blank, 1 .. ``n_symbols`` the symbols, ``n_symbols + 1`` the delimiter.
    The input, one-hot over all of them, shows ``n_copied`` symbols drawn uniformly, then
    T - 1 blanks, the delimiter, and ``n_copied`` more blanks: T + 2 ``n_copied`` steps. The
    target at every step is a label: blanks for the first T + ``n_copied`` steps, then the
    symbols in order, so the first symbol must be carried T + ``n_copied`` steps.

    Returns ``(inputs, labels, n_symbols + 1)``: the delimiter is never a target.

    Trivial baseline: blanks where the target is always blank, then a uniform guess over the
    symbols, a cross-entropy of ``n_copied log(n_symbols) / (T + 2 n_copied)`` per step (10 log 8
    / (T + 20) with the defaults, the baseline they report against).
    """
    _check_task_args(n_samples, gap)
    if gap < 1:
        raise ValueError(
            f"gap is T here, the steps from the last symbol to the delimiter, >= 1; got {gap}."
        )
    if n_symbols < 2 or n_copied < 1:
        raise ValueError(
            f"n_symbols must be >= 2 and n_copied >= 1, got {n_symbols} and {n_copied}."
        )
    rng = np.random.default_rng(seed)
    length = gap + 2 * n_copied
    symbols = rng.integers(1, n_symbols + 1, size=(n_samples, n_copied))
    shown = np.zeros((n_samples, length), dtype=np.int64)
    shown[:, :n_copied] = symbols
    shown[:, n_copied + gap - 1] = n_symbols + 1  # the delimiter: recall starts next step
    inputs = np.eye(n_symbols + 2, dtype=np.float32)[shown]
    labels = np.zeros((n_samples, length), dtype=np.int32)
    labels[:, -n_copied:] = symbols
    return inputs, labels, n_symbols + 1


def copy_memory_baseline(gap: int, n_symbols: int = 8, n_copied: int = 10) -> float:
    """The cross-entropy per step of the memoryless guess: see :func:`copy_memory`."""
    return n_copied * float(np.log(n_symbols)) / (gap + 2 * n_copied)


def associative_recall(
    n_samples: int,
    gap: int,
    seed: int,
    n_pairs: int = 8,
    n_keys: int = 16,
    n_values: int = 16,
    n_queries: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Multi-query associative recall (MQAR) after Arora et al. (2023, "Zoology"), with
    ``gap`` blanks between the pairs and the queries: how many bindings a model can store and
    for how long (Beck et al. 2024 measure the xLSTM's storage capacity with it).

    Tokens, one-hot over ``1 + n_keys + n_values``: 0 is the blank, 1 .. ``n_keys`` the keys,
    ``n_keys + 1`` .. ``n_keys + n_values`` the values. A sample shows ``n_pairs`` distinct keys
    each followed by its value (key, value, key, value, ...: 2 ``n_pairs`` steps; the values
    are distinct too, as Zoology draws them), then ``gap`` blanks, then ``n_queries`` of the
    keys (all of them by default) in a random order, one a step: 2 ``n_pairs`` + ``gap`` +
    ``n_queries`` steps. The label at a query is the value bound to its key, as class
    1 .. ``n_values``; everywhere else it is the blank, 0.

    Zoology scatters its queries at random positions after the pairs; here they follow the gap
    at fixed steps, so that the gap is a length to sweep, the per-step class frequencies are
    the memoryless guess (see below), and position alone tells a query from a pair's key (at
    gap 0 the first query directly follows the last value).

    Trivial baseline: blanks where the label is always blank, a uniform guess over the values
    at each query, a cross-entropy of ``n_queries log(n_values) / steps`` per step
    (:func:`associative_recall_baseline`; 8 log 16 / (24 + gap) with the defaults). A model
    that remembers which values were shown but not whose they are guesses among those
    ``n_pairs``: ``log(n_pairs) / log(n_values)`` of the baseline (0.75 with the defaults);
    only below that does it bind keys to values.

    Args:
        n_samples: sequences to draw.
        gap: blank steps between the last value and the first query; 0 allowed.
        seed: of the draw; the same seed gives the same sequences.
        n_pairs: key-value pairs shown in each sequence.
        n_keys: size of the key vocabulary, at least ``n_pairs``.
        n_values: size of the value vocabulary, at least ``n_pairs`` and 2.
        n_queries: keys asked for, 1 .. ``n_pairs``; None asks for every one.

    Returns:
        ``(inputs, labels, n_values + 1)``: inputs float32 (n_samples, steps, 1 + n_keys +
        n_values), labels int32 (n_samples, steps); keys are never a target.

    Raises:
        ValueError: ``n_samples`` or ``gap`` out of range, or vocabularies too small for
            ``n_pairs`` distinct keys and values, or ``n_queries`` outside 1 .. ``n_pairs``.
    """
    _check_task_args(n_samples, gap)
    n_queries = n_pairs if n_queries is None else n_queries
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}.")
    if n_keys < n_pairs:
        raise ValueError(f"n_pairs={n_pairs} distinct keys need n_keys >= n_pairs, got {n_keys}.")
    if n_values < max(n_pairs, 2):
        raise ValueError(
            f"n_pairs={n_pairs} distinct values need n_values >= n_pairs (and >= 2), "
            f"got {n_values}."
        )
    if not 1 <= n_queries <= n_pairs:
        raise ValueError(f"n_queries must be in 1 .. n_pairs={n_pairs}, got {n_queries}.")
    rng = np.random.default_rng(seed)
    # Distinct draws per sample: the first n_pairs ranks of random numbers.
    keys = np.argsort(rng.random((n_samples, n_keys)), axis=1)[:, :n_pairs] + 1
    values = np.argsort(rng.random((n_samples, n_values)), axis=1)[:, :n_pairs]
    asked = np.argsort(rng.random((n_samples, n_pairs)), axis=1)[:, :n_queries]
    first_query = 2 * n_pairs + gap
    shown = np.zeros((n_samples, first_query + n_queries), dtype=np.int64)
    shown[:, 0 : 2 * n_pairs : 2] = keys
    shown[:, 1 : 2 * n_pairs : 2] = n_keys + 1 + values
    shown[:, first_query:] = np.take_along_axis(keys, asked, axis=1)
    inputs = np.eye(1 + n_keys + n_values, dtype=np.float32)[shown]
    labels = np.zeros(shown.shape, dtype=np.int32)
    labels[:, first_query:] = np.take_along_axis(values, asked, axis=1) + 1
    return inputs, labels, n_values + 1


def associative_recall_baseline(
    gap: int, n_pairs: int = 8, n_values: int = 16, n_queries: int | None = None
) -> float:
    """The cross-entropy per step of the memoryless guess: see :func:`associative_recall`."""
    n_queries = n_pairs if n_queries is None else n_queries
    return n_queries * float(np.log(n_values)) / (2 * n_pairs + gap + n_queries)


def _check_task_args(n_samples: int, gap: int) -> None:
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}.")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}.")


Task = Callable[..., tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, int]]

TASKS: dict[str, Task] = {
    "sine_long_gap": sine_long_gap,
    "adding_hochreiter": adding_hochreiter,
    "adding_arjovsky": adding_arjovsky,
    "delayed_recall": delayed_recall,
    "copy_memory": copy_memory,
    "associative_recall": associative_recall,
}


def task_function(name: str) -> Task:
    """The task ``name`` names: a key of :data:`TASKS` or an import path
    ``package.module:function`` of a function with the same contract as ours.

    Raises:
        ValueError: an unknown name, or an import path that does not import.
    """
    found = resolve(name, TASKS, "task")
    if not callable(found):
        raise ValueError(f"{name} is not a function")
    return found
