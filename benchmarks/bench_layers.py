"""Speed of our recurrent layers (``forecast.layers``) against Keras' own, in one process.

For each layer pair (LSTM, SimpleRNN, GRU) and each (batch, time, units) grid point, both
layers sit in the same model, ``Sequential([Input((time, 1)), Layer(units), Dense(1)])``, with
the Keras model's weights copied into ours, and we measure:

* train ms: one Adam step on the MSE of one batch, in a ``tf.function`` built around
  ``tf.GradientTape`` (forward, backward through time, optimizer update);
* infer ms: one forward pass, ``model(x, training=False)`` in a ``tf.function``.

Each figure is the median over ``--repeats`` timed calls after an untimed warm-up call that
traces the graph. The ratio columns are ``keras ms / ours ms``: above 1 ours is faster, below 1
Keras is, e.g. 0.8 means ours takes 1.25 times as long. The per-layer summary is the geometric
mean of the ratios over the grid, the right mean for ratios (0.5 and 2.0 average to 1.0).

Run ``python benchmarks/bench_layers.py --help`` for the options, e.g.
``--grid 64x200x64 --layers LSTM --repeats 3`` for a quick look.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

# Must be set before TensorFlow is imported, or its C++ start-up logging is already out.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import logging
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

import forecast.layers

GridPoint = tuple[int, int, int]  # (batch, time, units)
# What tf.function returns; the timing helpers also ask it how often it was traced.
TFFunction = tf.types.experimental.PolymorphicFunction

# The last point is the default sweep's LSTM at its largest gap (sine_long_gap, gap 400).
DEFAULT_GRID: tuple[GridPoint, ...] = (
    (64, 200, 64),
    (128, 1000, 64),
    (256, 100, 128),
    (64, 420, 32),
)
LAYER_NAMES: tuple[str, ...] = ("LSTM", "SimpleRNN", "GRU")
# Forward outputs of ours and Keras' must agree this closely before we time anything.
MAX_ABS_DIFF = 1e-4
SEED = 0


@dataclass
class Row:
    layer: str
    batch: int
    time: int
    units: int
    keras_train_ms: float
    ours_train_ms: float
    keras_infer_ms: float
    ours_infer_ms: float

    @property
    def train_ratio(self) -> float:
        return self.keras_train_ms / self.ours_train_ms

    @property
    def infer_ratio(self) -> float:
        return self.keras_infer_ms / self.ours_infer_ms


class _HideRetracingWarning(logging.Filter):
    # We build one tf.function per model by design, each traced once (checked in
    # interleaved_medians); TensorFlow's heuristic counts them together and warns about
    # "retracing", which here is noise that would bury the progress lines.
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def log(message: str) -> None:
    # Progress goes to stderr so stdout holds only the results, ready to redirect to a file.
    print(message, file=sys.stderr, flush=True)


def parse_grid(text: str) -> list[GridPoint]:
    points = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            batch, steps, units = (int(part) for part in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"grid point {item!r} is not BATCHxTIMExUNITS, e.g. 64x200x64"
            ) from None
        if min(batch, steps, units) <= 0:
            raise argparse.ArgumentTypeError(f"grid point {item!r} has a non-positive size")
        points.append((batch, steps, units))
    return points


def parse_layers(text: str) -> list[str]:
    by_lower = {name.lower(): name for name in LAYER_NAMES}
    names = []
    for item in text.split(","):
        name = by_lower.get(item.strip().lower())
        if name is None:
            raise argparse.ArgumentTypeError(
                f"unknown layer {item!r}; choose from {', '.join(LAYER_NAMES)}"
            )
        names.append(name)
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time forecast.layers recurrent layers against keras.layers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--grid",
        type=parse_grid,
        default=list(DEFAULT_GRID),
        help="comma-separated BATCHxTIMExUNITS points",
    )
    parser.add_argument(
        "--layers",
        type=parse_layers,
        default=list(LAYER_NAMES),
        help=f"comma-separated subset of {','.join(LAYER_NAMES)}",
    )
    # 25 runs the default grid in under 2 minutes on 2 idle cores (128x1000x64 dominates, at
    # ~0.3-0.6 s per train step), so a busy machine still stays under ~6 minutes; with 5,
    # ratios of the slow points moved by up to 0.3 between back-to-back runs.
    parser.add_argument("--repeats", type=int, default=25, help="timed calls per measurement")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def build_model(layer_cls: type[keras.layers.Layer], steps: int, units: int) -> keras.Model:
    return keras.Sequential([keras.Input((steps, 1)), layer_cls(units), keras.layers.Dense(1)])


def make_train_step(model: keras.Model) -> TFFunction:
    # A hand-written GradientTape step rather than model.train_on_batch: train_on_batch goes
    # through compile(), whose jit_compile="auto" may XLA-compile one model and not the other
    # and which adds metric bookkeeping; here both models run the very same graph around their
    # layer, so the difference we time is the layer's.
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    # Creating the slot variables now keeps variable creation out of the traced function.
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.MeanSquaredError()

    @tf.function(jit_compile=False)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return train_step


def make_infer_step(model: keras.Model) -> TFFunction:
    @tf.function(jit_compile=False)
    def infer_step(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return infer_step


def time_call_ms(fn: TFFunction, *args: tf.Tensor) -> float:
    start = time.perf_counter()
    # .numpy() waits for the result, so the timing covers the whole computation.
    fn(*args).numpy()
    return (time.perf_counter() - start) * 1e3


def interleaved_medians(
    keras_fn: TFFunction,
    ours_fn: TFFunction,
    args: tuple[tf.Tensor, ...],
    repeats: int,
) -> tuple[float, float]:
    """Median ms of each function, timed alternately so machine-load drifts hit both alike."""
    # Warm-up: traces the graph and lets TensorFlow allocate its buffers; not timed.
    keras_fn(*args).numpy()
    ours_fn(*args).numpy()
    keras_ms: list[float] = []
    ours_ms: list[float] = []
    for repeat in range(repeats):
        # Swapping who goes first every round (A B, B A, ...) also cancels any edge the
        # second call of a pair gets from the first one's warm caches.
        if repeat % 2 == 0:
            keras_ms.append(time_call_ms(keras_fn, *args))
            ours_ms.append(time_call_ms(ours_fn, *args))
        else:
            ours_ms.append(time_call_ms(ours_fn, *args))
            keras_ms.append(time_call_ms(keras_fn, *args))
    for fn in (keras_fn, ours_fn):
        # A retrace inside the timed loop would add seconds of tracing to one side's median.
        traces = fn.experimental_get_tracing_count()
        assert traces == 1, f"{fn.__name__} was traced {traces} times, timings include tracing"
    return statistics.median(keras_ms), statistics.median(ours_ms)


def bench_point(
    name: str,
    ours_cls: type[keras.layers.Layer],
    keras_cls: type[keras.layers.Layer],
    point: GridPoint,
    repeats: int,
) -> Row:
    batch, steps, units = point
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    x = tf.constant(rng.standard_normal((batch, steps, 1)), dtype=tf.float32)
    y = tf.constant(rng.standard_normal((batch, 1)), dtype=tf.float32)

    keras_model = build_model(keras_cls, steps, units)
    ours_model = build_model(ours_cls, steps, units)
    try:
        ours_model.set_weights(keras_model.get_weights())
    except ValueError as error:
        raise SystemExit(
            f"{name}: cannot copy keras.layers.{name} weights into forecast.layers.{name} "
            f"({error}); the layers must share a weight layout to be compared."
        ) from error

    keras_infer = make_infer_step(keras_model)
    ours_infer = make_infer_step(ours_model)
    # Checked on the compiled functions that get timed, before any train step moves weights.
    diff = float(np.max(np.abs(keras_infer(x).numpy() - ours_infer(x).numpy())))
    log(f"{name} {batch}x{steps}x{units}: max |ours - keras| forward = {diff:.2e}")
    assert diff <= MAX_ABS_DIFF, (
        f"{name} {batch}x{steps}x{units}: ours and Keras disagree by {diff:.2e} "
        f"> {MAX_ABS_DIFF:.0e}; refusing to time wrong numbers"
    )

    keras_infer_ms, ours_infer_ms = interleaved_medians(keras_infer, ours_infer, (x,), repeats)
    keras_train_ms, ours_train_ms = interleaved_medians(
        make_train_step(keras_model), make_train_step(ours_model), (x, y), repeats
    )
    return Row(
        name, batch, steps, units, keras_train_ms, ours_train_ms, keras_infer_ms, ours_infer_ms
    )


COLUMNS = (
    "layer",
    "batch",
    "time",
    "units",
    "keras train ms",
    "ours train ms",
    "train ratio",
    "keras infer ms",
    "ours infer ms",
    "infer ratio",
)


def row_cells(row: Row) -> list[str]:
    return [
        row.layer,
        str(row.batch),
        str(row.time),
        str(row.units),
        f"{row.keras_train_ms:.1f}",
        f"{row.ours_train_ms:.1f}",
        f"{row.train_ratio:.2f}",
        f"{row.keras_infer_ms:.1f}",
        f"{row.ours_infer_ms:.1f}",
        f"{row.infer_ratio:.2f}",
    ]


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(value) for value in values))


def summary_cells(rows: Sequence[Row]) -> list[list[str]]:
    by_layer: dict[str, list[Row]] = {}
    for row in rows:
        by_layer.setdefault(row.layer, []).append(row)
    return [
        [
            layer,
            str(len(layer_rows)),
            f"{geomean([row.train_ratio for row in layer_rows]):.2f}",
            f"{geomean([row.infer_ratio for row in layer_rows]):.2f}",
        ]
        for layer, layer_rows in by_layer.items()
    ]


SUMMARY_COLUMNS = ("layer", "points", "geomean train ratio", "geomean infer ratio")


def format_text(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    # Left-align the first (name) column, right-align the numbers so their digits line up.
    lines = [
        "  ".join(
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in (header, *body)
    ]
    return "\n".join(lines)


def format_markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [f"| {' | '.join(cells)} |" for cells in (header, align, *body)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    tf.get_logger().addFilter(_HideRetracingWarning())
    # Our layers and the train step use tf.* directly, so only the TensorFlow backend makes sense.
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"needs KERAS_BACKEND=tensorflow, got {keras.backend.backend()!r}")

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable), repeats={args.repeats}"
    )

    pairs = [
        (name, getattr(forecast.layers, name), getattr(keras.layers, name)) for name in args.layers
    ]

    rows: list[Row] = []
    total = len(pairs) * len(args.grid)
    started = time.perf_counter()
    for name, ours_cls, keras_cls in pairs:
        for point in args.grid:
            log(
                f"[{len(rows) + 1}/{total}] {name} batch={point[0]} time={point[1]} "
                f"units={point[2]} ..."
            )
            point_started = time.perf_counter()
            row = bench_point(name, ours_cls, keras_cls, point, args.repeats)
            rows.append(row)
            log(
                f"    train keras {row.keras_train_ms:.1f} ms / ours {row.ours_train_ms:.1f} ms,"
                f" infer keras {row.keras_infer_ms:.1f} ms / ours {row.ours_infer_ms:.1f} ms"
                f" ({time.perf_counter() - point_started:.0f} s)"
            )
            # Free the finished models' graphs before building the next pair.
            keras.backend.clear_session()

    body = [row_cells(row) for row in rows]
    summary = summary_cells(rows)
    print()
    print(format_text(COLUMNS, body))
    print()
    print("ratio = keras ms / ours ms (> 1: ours faster); geometric mean over the grid:")
    print(format_text(SUMMARY_COLUMNS, summary))
    if args.markdown:
        print()
        print(format_markdown(COLUMNS, body))
        print()
        print(format_markdown(SUMMARY_COLUMNS, summary))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
