"""Synthetic tasks whose answer lies a known number of steps in the past.

Each task is a function ``task(n_samples, gap, seed, **params) -> (inputs, targets)`` with
``inputs`` shaped (n_samples, time, features) and ``targets`` shaped (n_samples, outputs), both
float32, deterministic per seed. The trivial baseline of a task is the best constant guess,
the mean target, whose MSE is the target variance; a model solves the task when its MSE is a
small fraction of that.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
    segment = amplitude * np.sin(2.0 * np.pi * steps / period + phase)
    noise = rng.normal(0.0, noise_std, size=(n_samples, gap))
    inputs = np.concatenate([segment, noise], axis=1)[..., None]
    return inputs.astype(np.float32), amplitude.astype(np.float32)


def sine_long_gap_baseline_mse(min_amplitude: float = 0.1, max_amplitude: float = 1.0) -> float:
    """The MSE of always predicting the mean amplitude: the variance of a uniform."""
    return (max_amplitude - min_amplitude) ** 2 / 12.0


def _check_task_args(n_samples: int, gap: int) -> None:
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}.")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}.")


Task = Callable[..., tuple[np.ndarray, np.ndarray]]

TASKS: dict[str, Task] = {"sine_long_gap": sine_long_gap}
