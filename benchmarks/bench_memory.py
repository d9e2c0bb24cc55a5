"""Peak memory of one training epoch: windows streamed from the series held once, against
today's copies of every window, measured in the same run.

Two cases: one long series (``--steps`` steps, ``--input-width`` 512 by default) and a panel of
``--series`` series of ``--series-steps`` steps each (``--panel-width``). Each is split as a
trial splits it (``series_splits`` / ``panel_splits``), then a small LSTM trains one epoch on
the train part and validates on the validation part:

* streaming: ``to_dataset`` of the parts' window views, each batch gathered from the series;
* copying (the path before streaming): every window of the train and validation parts
  materialised as arrays, then ``to_dataset`` of the arrays (``from_tensor_slices``).

Each path of each case runs in its own child process, so that peaks do not mix; the peak is the
child's ``ru_maxrss``. The copying path's windows alone would take ``windows x width x 4`` bytes
(about 20 GB at 10 million steps and width 512), more than this machine should be asked for: it
is measured on a smaller size (``--copy-steps``, ``--copy-series``) and its peak above the
imports extrapolated linearly in the number of windows, labelled as such.

An epoch over millions of windows takes hours on a CPU, so training and validation stop after
``--max-steps`` batches each (0: the whole epoch); memory does not depend on it, time does.
Run ``python benchmarks/bench_memory.py --help`` for the options.
"""

# ruff: noqa: E402  (TF_CPP_MIN_LOG_LEVEL has to be set above the TensorFlow import)

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def random_walk(steps: int, seed: int) -> pd.DataFrame:
    values = np.cumsum(np.random.default_rng(seed).normal(size=steps))
    return pd.DataFrame({"y": values})


def child(args: argparse.Namespace) -> dict[str, float]:
    """Split one case, train one (capped) epoch on it by one path; what it cost."""
    import keras

    from forecast.data import panel_splits, series_splits, to_dataset

    keras.utils.set_random_seed(0)
    imported = peak_rss()
    start = time.perf_counter()
    if args.case == "series":
        data = series_splits(random_walk(args.size, 0), args.width, relative=True)
    else:
        frames = {f"s{index}": random_walk(args.series_steps, index) for index in range(args.size)}
        (data,) = panel_splits(frames, "series", input_width=args.width, relative=True)
    splits = data.splits
    x_train, y_train, x_val, y_val = splits.x_train, splits.y_train, splits.x_val, splits.y_val
    if args.path == "copying":  # every window of the parts as arrays, as before streaming
        x_train, y_train, x_val, y_val = (
            np.asarray(part) for part in (x_train, y_train, x_val, y_val)
        )
    train_data = to_dataset(x_train, y_train, args.batch, shuffle=True, seed=0)
    val_data = to_dataset(x_val, y_val, args.batch)
    split_seconds = time.perf_counter() - start

    model = keras.Sequential(
        [keras.Input(splits.input_shape), keras.layers.LSTM(args.units), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    steps = args.max_steps or None
    start = time.perf_counter()
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=1,
        steps_per_epoch=steps,
        validation_steps=steps,
        verbose=0,
    )
    return {
        "windows": len(splits.x_train) + len(splits.x_val),
        "imports": imported,
        "peak": peak_rss(),
        "split_seconds": split_seconds,
        "fit_seconds": time.perf_counter() - start,
    }


def run_child(args: argparse.Namespace, case: str, path: str, size: int, width: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        case,
        path,
        str(size),
        str(width),
        *("--series-steps", str(args.series_steps), "--batch", str(args.batch)),
        *("--units", str(args.units), "--max-steps", str(args.max_steps)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{case} {path} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


GB = 1024**3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000, help="the long series' steps")
    parser.add_argument("--input-width", type=int, default=512, help="its input window")
    parser.add_argument("--copy-steps", type=int, default=1_000_000, help="the copying path's")
    parser.add_argument("--series", type=int, default=10_000, help="the panel's series")
    parser.add_argument("--series-steps", type=int, default=1_000, help="steps of each")
    parser.add_argument("--panel-width", type=int, default=128, help="the panel's input window")
    parser.add_argument("--copy-series", type=int, default=1_000, help="the copying path's")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--units", type=int, default=8, help="LSTM units")
    parser.add_argument("--max-steps", type=int, default=20, help="batches per epoch; 0: all")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "PATH", "SIZE", "WIDTH"))
    args = parser.parse_args(argv)
    if args.child:
        case, path, size, width = args.child
        args.case, args.path, args.size, args.width = case, path, int(size), int(width)
        print(json.dumps(child(args)))
        return

    capped = f"{args.max_steps} batches" if args.max_steps else "the whole epoch"
    print(f"one epoch of LSTM({args.units}), batch {args.batch}, training and validation capped")
    print(f"at {capped}; peak RSS of each path in its own process (GB; 'above' = above imports)\n")
    header = f"{'case':<34} {'path':<26} {'windows':>10} {'peak':>7} {'above':>7} {'fit s':>6}"
    print(header)
    print("-" * len(header))
    cases = (
        ("series", args.steps, args.copy_steps, args.input_width, "steps"),
        ("panel", args.series, args.copy_series, args.panel_width, "series"),
    )
    for case, size, copy_size, width, unit in cases:
        label = f"{case} {size:,} {unit}, width {width}"
        if case == "panel":
            label = f"panel {size:,} x {args.series_steps:,} steps, width {width}"
        rows = [("streaming", run_child(args, case, "streaming", size, width))]
        copied = run_child(args, case, "copying", copy_size, width)
        rows.append((f"copying at {copy_size:,} {unit}", copied))
        for path, row in rows:
            above = (row["peak"] - row["imports"]) / GB
            print(
                f"{label:<34} {path:<26} {row['windows']:>10,} {row['peak'] / GB:>7.2f} "
                f"{above:>7.2f} {row['fit_seconds']:>6.1f}"
            )
        # Windows grow with the size; the copies' memory above the imports grows with them.
        scale = rows[0][1]["windows"] / copied["windows"]
        above = (copied["peak"] - copied["imports"]) * scale
        print(
            f"{label:<34} {'copying, EXTRAPOLATED':<26} {rows[0][1]['windows']:>10,} "
            f"{(copied['imports'] + above) / GB:>7.2f} {above / GB:>7.2f} {'-':>6}"
        )


if __name__ == "__main__":
    main()
