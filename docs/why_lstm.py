"""The figures of docs/why-lstm.md, from a real run: ``make why-lstm``.

Trains three small models of ``forecast.layers`` on one ``sine_long_gap`` task (20 steps of a
sine with a random amplitude A, then ``GAP`` steps of noise; the target is A): a vanilla
``SimpleRNN``, an ``LSTM`` started as Keras starts one (forget-gate bias 1), and an ``LSTM``
with chrono initialisation (forget-gate biases spread so that memory times reach about ``GAP``
steps; Tallec & Ollivier 2018). Then it draws, into docs/:

- ``why_lstm_gradient_flow.png``: how strongly the loss still "hears" the input k steps back,
  ``mean ||dLoss/dx_(T-k)||``, at initialisation and trained.
- ``why_lstm_gates.png``: the chrono LSTM's forget, input and output gates over time in the units
  that carry A, and every unit's forget gate in both LSTMs, at initialisation and trained.
- ``why_lstm_cell_state.png``: the inputs, one LSTM unit's cell state and one RNN unit's hidden
  state for samples coloured by A, and at every step how much of A a linear read-out recovers
  from each model's state.

It prints every number docs/why-lstm.md quotes. Seeded (``--seed``), so a rerun draws nearly
the same figures; one to two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

# Before TensorFlow loads: its C++ start-up lines say nothing a reader of the figures needs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from forecast.evaluation import make_gradient_flow  # noqa: E402
from forecast.layers import LSTM, SimpleRNN  # noqa: E402
from forecast.tasks import sine_long_gap, sine_long_gap_baseline_mse  # noqa: E402

DOCS = Path(__file__).resolve().parent
GAP = 100  # long enough that the RNN learns nothing, short enough to train in seconds
SEGMENT = 20  # sine_long_gap's default: the sine fills the first 20 input steps
STEPS = SEGMENT + GAP
UNITS = 32
MODELS = ("rnn", "lstm", "chrono lstm")
COLORS = {"rnn": "tab:red", "lstm": "tab:orange", "chrono lstm": "tab:blue"}
LABELS = {"rnn": "RNN", "lstm": "LSTM, Keras' init", "chrono lstm": "LSTM, chrono init"}
UNIT_COLORS = ("tab:purple", "tab:brown", "tab:cyan")  # not the models' colours
SINE, NOISE = slice(0, SEGMENT), slice(SEGMENT, STEPS)


@dataclass
class Run:
    """One trained model and what the figures read from it."""

    name: str
    layer: keras.layers.Layer
    flow_init: np.ndarray  # gradient norm against the lag k, before training
    flow_trained: np.ndarray  # the same after training
    init_forget: np.ndarray | None  # an LSTM's forget gates before training (batch, time, units)
    ratios: list[float]  # validation MSE / trivial-baseline MSE after each epoch
    test_ratio: float


def make_layer(name: str) -> keras.layers.Layer:
    """The recurrent layer of each model; the two LSTMs differ only in their gate biases."""
    if name == "rnn":
        return SimpleRNN(UNITS)
    if name == "lstm":
        return LSTM(UNITS)  # forget-gate bias 1, as Keras' LSTM starts
    # b_f = log U(1, GAP - 1), b_i = -b_f: some units start with memory times near GAP steps.
    return LSTM(UNITS, chrono_init=GAP)


Data = dict[str, tuple[np.ndarray, np.ndarray]]  # "train", "val", "test" -> (inputs, targets)


def train(name: str, data: Data, epochs: int, seed: int) -> Run:
    """Build one model, measure it at initialisation, train it, measure it again."""
    keras.utils.set_random_seed(seed)  # every model sees the same batches in the same order
    layer = make_layer(name)
    model = keras.Sequential([keras.Input((STEPS, 1)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0), loss="mse")
    flow = make_gradient_flow(model)
    x_probe, y_probe = data["test"][0][:256], data["test"][1][:256]
    flow_init = flow(x_probe, y_probe)
    init_forget = layer.gate_activations(x_probe).get("forget")
    history = model.fit(
        *data["train"], validation_data=data["val"], epochs=epochs, batch_size=64, verbose=0
    )
    baseline = sine_long_gap_baseline_mse()  # the MSE of always answering the mean amplitude
    ratios = [loss / baseline for loss in history.history["val_loss"]]
    test_mse = model.evaluate(*data["test"], batch_size=256, verbose=0)
    trained = flow(x_probe, y_probe)
    return Run(name, layer, flow_init, trained, init_forget, ratios, test_mse / baseline)


def shade_task(axes: plt.Axes, lag: bool = False) -> None:
    """Shade the sine (the only steps that tell A) and the gap of noise after it.

    ``lag``: the x axis counts steps back from the prediction instead of forward in time."""
    sine = (GAP, STEPS - 1) if lag else (0, SEGMENT - 1)
    gap = (0, GAP) if lag else (SEGMENT - 1, STEPS - 1)
    axes.axvspan(*sine, color="tab:green", alpha=0.13, label="the sine")
    axes.axvspan(*gap, color="grey", alpha=0.07, label="noise: the gap")


def gradient_flow_figure(runs: list[Run]) -> Figure:
    """Gradient norm against lag, one colour per model, dashed at initialisation."""
    figure, axes = plt.subplots(figsize=(8, 4.6))
    shade_task(axes, lag=True)
    lags = np.arange(STEPS)
    for run in runs:
        # A gradient can underflow float32 to 0 (a longer gap, another seed): drawn at 1e-30,
        # it stays on the log axis instead of vanishing from the plot.
        initial, trained = np.maximum(run.flow_init, 1e-30), np.maximum(run.flow_trained, 1e-30)
        axes.plot(lags, initial, "--", color=COLORS[run.name], linewidth=1)
        axes.plot(lags, trained, color=COLORS[run.name], linewidth=2, label=LABELS[run.name])
    axes.plot([], [], "--", color="grey", linewidth=1, label="(dashed: at initialisation)")
    axes.set(
        xlabel="k: steps before the prediction",
        ylabel="mean ||dLoss / dx_(T-k)||",
        yscale="log",
        title=f"How much the loss hears the input k steps back (gap {GAP})",
    )
    axes.legend(fontsize=8, loc="lower left")
    axes.grid(alpha=0.3, which="both")
    figure.subplots_adjust(left=0.11, right=0.97, top=0.93, bottom=0.12)
    return figure


def correlation(states: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """Correlation over samples of each unit's state with A: states (samples, ..., units)."""
    centred = states - states.mean(axis=0)
    target = (amplitude - amplitude.mean()).reshape(-1, *[1] * (states.ndim - 1))
    spread = np.sqrt((centred**2).mean(axis=0) * (target**2).mean()) + 1e-12
    return (centred * target).mean(axis=0) / spread


def gates_figure(
    activations: dict[str, np.ndarray],
    units: np.ndarray,
    sample: int,
    runs: list[Run],
    probe: np.ndarray,
) -> Figure:
    """Top: the chrono LSTM's gates over time for one sample, in ``units`` and on average.
    Bottom: each LSTM's forget gates on the inputs ``probe``, one point per unit (the mean over
    samples and steps), sorted, before and after training."""
    figure = plt.figure(figsize=(8, 8.8))
    # The fourth row is an empty spacer: room for the time axis and the lower panel's title.
    grid = figure.add_gridspec(5, 1, height_ratios=[1, 1, 1, 0.45, 1.5], hspace=0.12)
    rows = [figure.add_subplot(grid[0])]
    rows += [figure.add_subplot(grid[index], sharex=rows[0]) for index in (1, 2)]
    for axes, gate in zip(rows, ("forget", "input", "output"), strict=True):
        shade_task(axes)
        values = activations[gate][sample]  # (time, units)
        for unit, color in zip(units, UNIT_COLORS, strict=False):
            axes.plot(values[:, unit], color=color, linewidth=1.4, label=f"unit {unit}")
        axes.plot(values.mean(axis=1), color="black", linewidth=2, label=f"mean of {UNITS} units")
        axes.set(ylabel=f"{gate} gate", ylim=(-0.03, 1.03))
        axes.grid(alpha=0.3)
        if gate != "output":
            axes.tick_params(labelbottom=False)
    rows[0].legend(fontsize=7, loc="lower right", ncol=3)
    rows[0].set_title("Chrono LSTM, one test sample: the units that carry A, and the mean")
    rows[2].set_xlabel("time step")
    bottom = figure.add_subplot(grid[4])
    for run in runs:
        if run.init_forget is None:
            continue
        trained = run.layer.gate_activations(probe)["forget"]
        for values, style, when in ((run.init_forget, "--", "initial"), (trained, "-", "trained")):
            per_unit = np.sort(values.mean(axis=(0, 1)))
            label = f"{LABELS[run.name]}, {when}"
            bottom.plot(per_unit, style, marker=".", color=COLORS[run.name], label=label)
    for level in (0.73, 0.99):
        bottom.axhline(level, color="grey", linewidth=0.6, linestyle=":")
        bottom.text(0.2, level + 0.008, f"f = {level}: f^{GAP} = {level**GAP:.2g}", fontsize=7)
    bottom.set(
        xlabel="units, sorted by forget gate",
        ylabel="forget gate, mean over time",
        ylim=(0.6, 1.02),
    )
    bottom.set_title("Every unit's forget gate in both LSTMs", fontsize=10)
    bottom.legend(fontsize=7, loc="lower right")
    bottom.grid(alpha=0.3)
    figure.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.06)
    return figure


def readout_r2(
    fit_states: np.ndarray, fit_y: np.ndarray, states: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """At every step, the R² on test samples of a linear read-out of A from the whole state:
    how much of A is still there to be read, whatever the model's own Dense layer does with
    it. Fitted on training samples, so it cannot memorise the test ones."""
    scores = []
    total = ((y - y.mean()) ** 2).sum()
    for step in range(states.shape[1]):
        design = np.c_[fit_states[:, step, :], np.ones(len(fit_states))]
        weights, *_ = np.linalg.lstsq(design, fit_y, rcond=None)
        guess = np.c_[states[:, step, :], np.ones(len(states))] @ weights
        scores.append(1.0 - ((y - guess) ** 2).sum() / total)
    return np.array(scores)


def cell_state_figure(
    inputs: np.ndarray,
    panels: list[tuple[str, np.ndarray]],
    amplitude: np.ndarray,
    r2: dict[str, np.ndarray],
) -> Figure:
    """The inputs and one unit's state per model for 8 samples of rising A (colour), then the
    read-out R² of each model's state against time."""
    shown = np.argsort(amplitude)[np.linspace(0, len(amplitude) - 1, 8).astype(int)]
    colour = plt.get_cmap("viridis")
    figure, rows = plt.subplots(2 + len(panels), 1, figsize=(8, 9), sharex=True)
    for axes, (label, states) in zip(rows, [("input x_t", inputs), *panels], strict=False):
        shade_task(axes)
        for sample in shown:
            axes.plot(states[sample], color=colour(amplitude[sample]), linewidth=1.1)
        axes.set_ylabel(label, fontsize=8)
        axes.grid(alpha=0.3)
    bar = figure.colorbar(
        plt.cm.ScalarMappable(cmap=colour, norm=plt.Normalize(0, 1)),
        ax=rows[:-1].tolist(),
        fraction=0.03,
        pad=0.01,
    )
    bar.set_label("amplitude A of the sample", fontsize=8)
    shade_task(rows[-1])
    for name, scores in r2.items():
        label = f"{LABELS[name]}: from {'h_t' if name == 'rnn' else 'C_t'}"
        rows[-1].plot(np.clip(scores, -0.05, 1), color=COLORS[name], linewidth=1.8, label=label)
    rows[-1].set(ylabel="R² of A, read\nlinearly from the state", ylim=(-0.05, 1.03))
    rows[-1].set_xlabel("time step")
    rows[-1].legend(fontsize=7, loc="center right")
    rows[-1].grid(alpha=0.3)
    rows[0].set_title("What each model keeps of the amplitude A across the gap")
    figure.subplots_adjust(left=0.11, right=0.88, top=0.96, bottom=0.06, hspace=0.1)
    return figure


def main() -> None:
    """Train the three models, draw the figures into ``--out``, print the page's numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0, help="of the weights and the batches")
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go")
    args = parser.parse_args()
    # One thread each: the figures need no speed, and the machine may be busy with tests.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    start = time.perf_counter()
    # Three independent draws of the task, as sine_long_gap.yaml sizes them.
    data = {
        part: sine_long_gap(count, GAP, seed)
        for part, count, seed in (("train", 2048, 0), ("val", 256, 1), ("test", 512, 2))
    }
    runs = []
    for name in MODELS:
        runs.append(train(name, data, args.epochs, args.seed))
        by_epoch = " ".join(f"{ratio:.2f}" for ratio in runs[-1].ratios)
        print(f"{name:>11}: test MSE / baseline {runs[-1].test_ratio:.3f}", flush=True)
        print(f"{'':>11}  validation ratio by epoch: {by_epoch}", flush=True)

    x_test, y_test = data["test"][0], data["test"][1][:, 0]
    x_fit, y_fit = data["train"][0][:1024], data["train"][1][:1024, 0]
    state = {"rnn": "hidden", "lstm": "cell", "chrono lstm": "cell"}  # what carries memory
    test = {run.name: run.layer.gate_activations(x_test) for run in runs}
    fit = {run.name: run.layer.gate_activations(x_fit)[state[run.name]] for run in runs}
    r2 = {name: readout_r2(fit[name], y_fit, test[name][state[name]], y_test) for name in MODELS}

    chrono = test["chrono lstm"]
    # The units that carry A: the steadiest correlation with A across the whole gap.
    carry = np.abs(correlation(chrono["cell"][:, NOISE], y_test)).min(axis=0)
    units = np.argsort(carry)[::-1][:3]
    # The RNN's unit that knows A best when the sine ends, to watch it forget.
    rnn_corr = np.abs(correlation(test["rnn"]["hidden"][:, SEGMENT - 1], y_test))
    rnn_unit = int(np.argmax(rnn_corr))
    sample = int(np.argmax(y_test))  # the largest amplitude
    figures = {
        "why_lstm_gradient_flow.png": gradient_flow_figure(runs),
        "why_lstm_gates.png": gates_figure(chrono, units, sample, runs, x_test[:256]),
        "why_lstm_cell_state.png": cell_state_figure(
            x_test[..., 0],
            [
                (f"chrono LSTM\ncell state C_t, unit {units[0]}", chrono["cell"][..., units[0]]),
                (f"RNN\nhidden state h_t, unit {rnn_unit}", test["rnn"]["hidden"][..., rnn_unit]),
            ],
            y_test,
            r2,
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for filename, figure in figures.items():
        figure.savefig(args.out / filename, dpi=110)
        plt.close(figure)
        print(f"wrote {args.out / filename}")

    print("\nThe numbers docs/why-lstm.md quotes:")
    for run in runs:
        print(
            f"{run.name:>11}: gradient at k=0, k={GAP} (the sine's last step), k={STEPS - 1}: "
            f"initial {run.flow_init[0]:.1e} {run.flow_init[GAP]:.1e} {run.flow_init[-1]:.1e}; "
            f"trained {run.flow_trained[0]:.1e} {run.flow_trained[GAP]:.1e} "
            f"{run.flow_trained[-1]:.1e}"
        )
    for name in MODELS:
        scores = r2[name]
        # When the state lets go of A: below 0.5 in the gap, and below 0.05 for good.
        lost = scores[NOISE] < 0.5
        below_half = SEGMENT + int(np.argmax(lost)) if lost.any() else None
        kept = np.flatnonzero(scores >= 0.05)
        gone = int(kept.max()) + 1 if kept.max() < STEPS - 1 else None
        print(
            f"{name:>11}: read-out R² of its {state[name]} state at steps {SEGMENT - 1}, "
            f"{SEGMENT + 10}, {SEGMENT + GAP // 2}, {STEPS - 1}: {scores[SEGMENT - 1]:.2f} "
            f"{scores[SEGMENT + 10]:.2f} {scores[SEGMENT + GAP // 2]:.2f} {scores[-1]:.2f}; "
            f"below 0.5 from step {below_half}, below 0.05 for good from step {gone}"
        )
    forget = {run.name: run.layer.gate_activations(x_test[:256])["forget"] for run in runs[1:]}
    for name, values in forget.items():
        per_unit = values.mean(axis=(0, 1))
        print(
            f"{name:>11}: forget gates per unit {per_unit.min():.3f} to {per_unit.max():.3f}, "
            f"{(per_unit > 0.97).sum()} of {UNITS} above 0.97"
        )
    print(f"carrying units {units.tolist()}; |corr(C_t, A)| in the gap >= {carry[units].round(3)}")
    for gate in ("forget", "input", "output"):
        values = chrono[gate][:, :, units]
        print(
            f"  {gate}: mean over the sine {values[:, SINE].mean(axis=(0, 1)).round(3)}, over "
            f"the gap {values[:, NOISE].mean(axis=(0, 1)).round(3)}; largest swing over time "
            f"in any unit and sample {np.ptp(chrono[gate], axis=1).max():.3f}"
        )
    print(f"RNN unit {rnn_unit}: |corr(h_t, A)| at step {SEGMENT - 1} {rnn_corr[rnn_unit]:.2f}")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
