"""Windowing a long series: memory and throughput of ``forecast.data`` against Keras.

Windows of a 10-million-step series with ``input_width`` 512 would take
``n * 512 * 4`` bytes, about 20 GB, if materialised. ``forecast.data.make_windows`` returns
strided views instead, and ``forecast.data.windowed_dataset`` gathers each batch from the series
when it is needed. This script measures, in one process:

* the extra resident memory (RSS) and time of ``make_windows`` over the whole series;
* windows per second and extra RSS while iterating ``--batches`` batches of
  ``windowed_dataset`` and of ``keras.utils.timeseries_dataset_from_array`` over the same
  series; the ratio is ours / Keras' (above 1: ours is faster).

Run ``python benchmarks/bench_windows.py --help`` for the options.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import sys
import time
from collections.abc import Callable, Iterable

import keras
import numpy as np

from forecast.data import make_windows, windowed_dataset


def rss_bytes() -> int:
    """Resident memory of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(step: Callable[[], object]) -> tuple[object, float, int]:
    """(result, seconds, extra RSS bytes) of one call."""
    before = rss_bytes()
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start, rss_bytes() - before


def consume(batches: Iterable, limit: int) -> int:
    """Windows seen in the first ``limit`` batches; each batch's tensors are touched."""
    windows = 0
    for index, (inputs, _) in enumerate(batches):
        if index == limit:
            break
        windows += int(inputs.shape[0])
    return windows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=10_000_000, help="steps in the series")
    parser.add_argument("--input-width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=400, help="batches timed per pipeline")
    args = parser.parse_args(argv)

    print(
        f"series {args.length:,} steps, input_width {args.input_width}, batch {args.batch_size},"
        f" {args.batches} batches per pipeline"
    )
    values = np.random.default_rng(0).standard_normal((args.length, 1), dtype=np.float32)
    materialised = (args.length - args.input_width) * args.input_width * 4
    gigabytes = materialised / 1e9
    print(f"series: {values.nbytes / 1e6:.0f} MB; windows if materialised: {gigabytes:.1f} GB")

    (inputs, _), seconds, extra = measure(lambda: make_windows(values, args.input_width))
    print(
        f"make_windows: {len(inputs):,} windows in {seconds * 1e3:.1f} ms, "
        f"extra RSS {extra / 1e6:.1f} MB (views of the series)"
    )

    pipelines = {
        "forecast.data.windowed_dataset": lambda: windowed_dataset(
            values, args.input_width, batch_size=args.batch_size
        ),
        "keras timeseries_dataset_from_array": lambda: keras.utils.timeseries_dataset_from_array(
            values[:-1],
            values[args.input_width :],
            sequence_length=args.input_width,
            batch_size=args.batch_size,
        ),
    }
    rates = {}
    for name, make in pipelines.items():
        print(f"{name}: building and iterating ...", file=sys.stderr, flush=True)
        dataset, build_seconds, build_extra = measure(make)
        consume(dataset, 5)  # warm-up: graph tracing, first buffers
        windows, seconds, extra = measure(lambda: consume(dataset, args.batches))  # noqa: B023
        rates[name] = windows / seconds
        print(
            f"{name}: built in {build_seconds:.2f} s (+{build_extra / 1e6:.0f} MB); "
            f"{rates[name]:,.0f} windows/s over {windows:,} windows (+{extra / 1e6:.0f} MB)"
        )
    ours, theirs = rates.values()
    print(f"throughput ratio ours / keras: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
