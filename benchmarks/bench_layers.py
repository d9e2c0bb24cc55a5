"""Speed of our recurrent layers (``forecast.layers``): each against a reference, in one process.

Each row compares a candidate layer ("ours") with a reference layer at one (batch, time,
units) grid point, both in the same model, ``Sequential([Input((time, 1)), layer, Dense(1)])``:

* LSTM, SimpleRNN, GRU: ours against Keras' layer of the same name, with the Keras model's
  weights copied into ours and the forward outputs checked to agree before anything is timed;
* sLSTM, mLSTM-loop (``mLSTM(parallel=False)``, the step loop): against our LSTM at the same
  units. Different functions with different weights, so nothing is copied or checked; the
  ratio is the cost per step, and the params columns say what each pays it for (at 64 units an
  LSTM has 16,961 weights, an sLSTM 4,673, an mLSTM 593: no recurrent weights);
* mLSTM-parallel (``mLSTM(parallel=True)``, the layer's default: the parallel form,
  ``--chunk-size`` steps at a time) against mLSTM-loop, with copied weights and the agreement
  check: the same function.

sLSTM and mLSTM take ``--heads`` heads (4), which must divide every grid point's units.

We measure:

* train ms: one Adam step on the MSE of one batch, in a ``tf.function`` built around
  ``tf.GradientTape`` (forward, backward through time, optimizer update);
* infer ms: one forward pass, ``model(x, training=False)`` in a ``tf.function``.

Each figure is the median over ``--repeats`` timed calls after an untimed warm-up call that
traces the graph. The ratio columns are ``reference ms / ours ms``: above 1 ours is faster,
below 1 the reference is, e.g. 0.8 means ours takes 1.25 times as long. The per-row-kind
summary is the geometric mean of the ratios over the grid, the right mean for ratios (0.5 and
2.0 average to 1.0).

Memory: the parallel mLSTM computes each chunk with (batch, heads, chunk, chunk) float32
matrices and a train step keeps every chunk's for the backward pass, about
``PARALLEL_TRAIN_MATRICES`` of them per chunk: 7.7 (peak RSS less the model's) at 32x1000x64
in one 1,000-step chunk, 8.4 at 128x1000x64 in chunks of 128. In one chunk, as
``--chunk-size 1000`` asks, the default grid's 128x1000x64 would hold ~16 GB, more than a
shared machine should be asked for; so a grid point whose estimate exceeds
``--parallel-max-gb`` is skipped for mLSTM-parallel, and the output says so in its row. In the
layer's default chunks of 32 the matrices are small and other per-chunk tensors dominate (that
point peaked at 3.9 GB, the loop at 1.4 GB), so the estimate is a floor there, not a forecast.

Run ``python benchmarks/bench_layers.py --help`` for the options, e.g.
``--grid 64x200x64 --layers LSTM --repeats 3`` for a quick look.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

# Must be set before TensorFlow is imported, or its C++ start-up logging is already out.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import inspect
import logging
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

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
KERAS_PAIRS: tuple[str, ...] = ("LSTM", "SimpleRNN", "GRU")  # ours against Keras' namesake
XLSTM_NAMES: tuple[str, ...] = ("sLSTM", "mLSTM-loop", "mLSTM-parallel")  # these take heads
LAYER_NAMES: tuple[str, ...] = KERAS_PAIRS + XLSTM_NAMES
# Forward outputs of ours and the reference must agree this closely before we time anything.
MAX_ABS_DIFF = 1e-4
SEED = 0
# A parallel mLSTM train step's (batch, heads, chunk, chunk) float32 matrices per chunk, all
# kept for the backward pass: 7.7 measured at 32x1000x64 in one chunk, 8.4 at 128x1000x64 in
# chunks of 128 (peak RSS less the model's); see the module docstring.
PARALLEL_TRAIN_MATRICES = 8
MLSTM_CHUNK_SIZE = inspect.signature(forecast.layers.mLSTM).parameters["chunk_size"].default


@dataclass(frozen=True)
class Comparison:
    """One kind of row: a candidate layer ("ours") timed against a reference layer."""

    name: str  # the layer column, and the name --layers takes
    reference: str  # the reference column
    make_ours: Callable[[int], keras.layers.Layer]  # units -> layer
    make_reference: Callable[[int], keras.layers.Layer]
    # The same function with the same weight layout: the reference model's weights are copied
    # into ours and the forward outputs must agree before anything is timed.
    same_function: bool
    # Ours holds (batch, heads, chunk, chunk) matrices per chunk: skipped over --parallel-max-gb.
    quadratic_memory: bool = False


def comparisons(heads: int, chunk_size: int) -> dict[str, Comparison]:
    mlstm_loop = partial(forecast.layers.mLSTM, heads=heads, parallel=False)
    rows = [
        Comparison(
            name,
            f"Keras {name}",
            getattr(forecast.layers, name),
            getattr(keras.layers, name),
            same_function=True,
        )
        for name in KERAS_PAIRS
    ]
    rows += [
        Comparison(
            "sLSTM",
            "LSTM",
            partial(forecast.layers.sLSTM, heads=heads),
            forecast.layers.LSTM,
            same_function=False,
        ),
        Comparison("mLSTM-loop", "LSTM", mlstm_loop, forecast.layers.LSTM, same_function=False),
        Comparison(
            "mLSTM-parallel",
            "mLSTM-loop",
            partial(forecast.layers.mLSTM, heads=heads, parallel=True, chunk_size=chunk_size),
            mlstm_loop,
            same_function=True,
            quadratic_memory=True,
        ),
    ]
    return {comparison.name: comparison for comparison in rows}


@dataclass
class Timings:
    reference_train_ms: float
    ours_train_ms: float
    reference_infer_ms: float
    ours_infer_ms: float

    @property
    def train_ratio(self) -> float:
        return self.reference_train_ms / self.ours_train_ms

    @property
    def infer_ratio(self) -> float:
        return self.reference_infer_ms / self.ours_infer_ms


@dataclass
class Row:
    layer: str
    reference: str
    batch: int
    time: int
    units: int
    reference_params: int
    ours_params: int
    timings: Timings | None  # None: skipped, for the reason in `skipped`
    skipped: str = ""


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
        description="Time forecast.layers recurrent layers against a reference layer each.",
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
    # 25 runs the LSTM, SimpleRNN and GRU rows on the default grid in under 2 minutes on 2 idle
    # cores (128x1000x64 dominates, at ~0.3-0.6 s per train step), so a busy machine still stays
    # under ~6 minutes; with 5, ratios of the slow points moved by up to 0.3 between back-to-back
    # runs. The sLSTM and mLSTM rows take several times longer (their layers are slower).
    parser.add_argument("--repeats", type=int, default=25, help="timed calls per measurement")
    parser.add_argument(
        "--heads", type=int, default=4, help="heads of sLSTM and mLSTM; must divide the units"
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=MLSTM_CHUNK_SIZE,
        help="mLSTM-parallel's chunk_size (the layer's default); at least the time steps: "
        "the whole sequence in one chunk",
    )
    parser.add_argument(
        "--parallel-max-gb",
        type=float,
        default=4.0,
        help="skip mLSTM-parallel where its train step's estimated peak memory exceeds this",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.heads < 1:
        parser.error("--heads must be at least 1")
    if args.chunk_size < 1:
        parser.error("--chunk-size must be at least 1")
    if set(args.layers) & set(XLSTM_NAMES):
        for _, _, units in args.grid:
            if units % args.heads:
                parser.error(f"--heads {args.heads} does not divide units={units} (sLSTM, mLSTM)")
    return args


def build_model(
    make_layer: Callable[[int], keras.layers.Layer], steps: int, units: int
) -> keras.Model:
    return keras.Sequential([keras.Input((steps, 1)), make_layer(units), keras.layers.Dense(1)])


def parallel_too_large(point: GridPoint, heads: int, chunk_size: int, max_gb: float) -> str:
    """Why the parallel mLSTM skips this point, or "" where it fits in ``max_gb``."""
    batch, steps, _ = point
    chunk = min(chunk_size, steps)
    chunks = math.ceil(steps / chunk)
    matrix_gb = batch * heads * chunk * chunk * 4 / 1e9
    train_gb = PARALLEL_TRAIN_MATRICES * chunks * matrix_gb
    if train_gb <= max_gb:
        return ""
    return (
        f"skipped: its train step would hold ~{train_gb:.0f} GB, ~{PARALLEL_TRAIN_MATRICES} "
        f"float32 matrices ({batch}, {heads}, {chunk}, {chunk}) of {matrix_gb:.3g} GB for each "
        f"of {chunks} chunk(s); over --parallel-max-gb {max_gb:g}"
    )


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
    reference_fn: TFFunction,
    ours_fn: TFFunction,
    args: tuple[tf.Tensor, ...],
    repeats: int,
) -> tuple[float, float]:
    """Median ms of each function, timed alternately so machine-load drifts hit both alike."""
    # Warm-up: traces the graph and lets TensorFlow allocate its buffers; not timed.
    reference_fn(*args).numpy()
    ours_fn(*args).numpy()
    reference_ms: list[float] = []
    ours_ms: list[float] = []
    for repeat in range(repeats):
        # Swapping who goes first every round (A B, B A, ...) also cancels any edge the
        # second call of a pair gets from the first one's warm caches.
        if repeat % 2 == 0:
            reference_ms.append(time_call_ms(reference_fn, *args))
            ours_ms.append(time_call_ms(ours_fn, *args))
        else:
            ours_ms.append(time_call_ms(ours_fn, *args))
            reference_ms.append(time_call_ms(reference_fn, *args))
    for fn in (reference_fn, ours_fn):
        # A retrace inside the timed loop would add seconds of tracing to one side's median.
        traces = fn.experimental_get_tracing_count()
        assert traces == 1, f"{fn.__name__} was traced {traces} times, timings include tracing"
    return statistics.median(reference_ms), statistics.median(ours_ms)


def bench_point(comparison: Comparison, point: GridPoint, repeats: int, skip: str = "") -> Row:
    """Time ``comparison`` at ``point``; with ``skip`` (the reason), only count the weights."""
    name, reference = comparison.name, comparison.reference
    batch, steps, units = point
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    x = tf.constant(rng.standard_normal((batch, steps, 1)), dtype=tf.float32)
    y = tf.constant(rng.standard_normal((batch, 1)), dtype=tf.float32)

    reference_model = build_model(comparison.make_reference, steps, units)
    ours_model = build_model(comparison.make_ours, steps, units)
    row = Row(
        name,
        reference,
        batch,
        steps,
        units,
        reference_model.count_params(),
        ours_model.count_params(),
        timings=None,
        skipped=skip,
    )
    if skip:
        return row

    reference_infer = make_infer_step(reference_model)
    ours_infer = make_infer_step(ours_model)
    if comparison.same_function:
        try:
            ours_model.set_weights(reference_model.get_weights())
        except ValueError as error:
            raise SystemExit(
                f"{name}: cannot copy the {reference} weights into ours ({error}); "
                "the layers must share a weight layout to be compared."
            ) from error
        # Checked on the compiled functions that get timed, before any train step moves weights.
        diff = float(np.max(np.abs(reference_infer(x).numpy() - ours_infer(x).numpy())))
        log(f"{name} {batch}x{steps}x{units}: max |ours - {reference}| forward = {diff:.2e}")
        assert diff <= MAX_ABS_DIFF, (
            f"{name} {batch}x{steps}x{units}: ours and {reference} disagree by {diff:.2e} "
            f"> {MAX_ABS_DIFF:.0e}; refusing to time wrong numbers"
        )

    reference_infer_ms, ours_infer_ms = interleaved_medians(
        reference_infer, ours_infer, (x,), repeats
    )
    reference_train_ms, ours_train_ms = interleaved_medians(
        make_train_step(reference_model), make_train_step(ours_model), (x, y), repeats
    )
    row.timings = Timings(reference_train_ms, ours_train_ms, reference_infer_ms, ours_infer_ms)
    return row


COLUMNS = (
    "layer",
    "reference",
    "batch",
    "time",
    "units",
    "reference params",
    "ours params",
    "reference train ms",
    "ours train ms",
    "train ratio",
    "reference infer ms",
    "ours infer ms",
    "infer ratio",
)


def row_cells(row: Row) -> list[str]:
    cells = [
        row.layer,
        row.reference,
        str(row.batch),
        str(row.time),
        str(row.units),
        str(row.reference_params),
        str(row.ours_params),
    ]
    t = row.timings
    if t is None:
        return [*cells, "-", "skipped", "-", "-", "skipped", "-"]
    return [
        *cells,
        f"{t.reference_train_ms:.1f}",
        f"{t.ours_train_ms:.1f}",
        f"{t.train_ratio:.2f}",
        f"{t.reference_infer_ms:.1f}",
        f"{t.ours_infer_ms:.1f}",
        f"{t.infer_ratio:.2f}",
    ]


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(value) for value in values))


def summary_cells(rows: Sequence[Row]) -> list[list[str]]:
    timed: dict[tuple[str, str], list[Timings]] = {}
    for row in rows:
        timed.setdefault((row.layer, row.reference), [])
        if row.timings is not None:
            timed[row.layer, row.reference].append(row.timings)
    return [
        [
            layer,
            reference,
            str(len(timings)),
            f"{geomean([t.train_ratio for t in timings]):.2f}" if timings else "-",
            f"{geomean([t.infer_ratio for t in timings]):.2f}" if timings else "-",
        ]
        for (layer, reference), timings in timed.items()
    ]


SUMMARY_COLUMNS = ("layer", "reference", "points", "geomean train ratio", "geomean infer ratio")


# Both tables start with two name columns (layer, reference); numbers follow.
NAME_COLUMNS = 2


def format_text(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    # Left-align the name columns, right-align the numbers so their digits line up.
    lines = [
        "  ".join(
            cell.ljust(width) if index < NAME_COLUMNS else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in (header, *body)
    ]
    return "\n".join(lines)


def format_markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    align = ["---"] * NAME_COLUMNS + ["---:"] * (len(header) - NAME_COLUMNS)
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
        f"({len(os.sched_getaffinity(0))} usable), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"repeats={args.repeats}, "
        f"heads={args.heads} (sLSTM, mLSTM), chunk_size={args.chunk_size} (mLSTM-parallel)"
    )

    by_name = comparisons(args.heads, args.chunk_size)
    chosen = [by_name[name] for name in args.layers]

    rows: list[Row] = []
    total = len(chosen) * len(args.grid)
    started = time.perf_counter()
    for comparison in chosen:
        for point in args.grid:
            log(
                f"[{len(rows) + 1}/{total}] {comparison.name} against {comparison.reference}, "
                f"batch={point[0]} time={point[1]} units={point[2]} ..."
            )
            skip = ""
            if comparison.quadratic_memory:
                skip = parallel_too_large(point, args.heads, args.chunk_size, args.parallel_max_gb)
            point_started = time.perf_counter()
            row = bench_point(comparison, point, args.repeats, skip)
            rows.append(row)
            t = row.timings
            log(
                f"    {row.skipped}"
                if t is None
                else f"    train reference {t.reference_train_ms:.1f} ms / ours "
                f"{t.ours_train_ms:.1f} ms, infer reference {t.reference_infer_ms:.1f} ms / ours "
                f"{t.ours_infer_ms:.1f} ms ({time.perf_counter() - point_started:.0f} s)"
            )
            # Free the finished models' graphs before building the next pair.
            keras.backend.clear_session()

    body = [row_cells(row) for row in rows]
    summary = summary_cells(rows)
    skipped = [
        f"{row.layer} {row.batch}x{row.time}x{row.units} {row.skipped}"
        for row in rows
        if row.timings is None
    ]
    print()
    print(format_text(COLUMNS, body))
    for line in skipped:
        print(line)
    print()
    print("ratio = reference ms / ours ms (> 1: ours faster); geometric mean over the grid:")
    print(format_text(SUMMARY_COLUMNS, summary))
    if args.markdown:
        print()
        print(format_markdown(COLUMNS, body))
        print()
        print(format_markdown(SUMMARY_COLUMNS, summary))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
