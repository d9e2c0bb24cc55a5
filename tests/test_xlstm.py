"""sLSTM and mLSTM against plain NumPy step-by-step references of the xLSTM paper's equations
(Beck et al. 2024, arXiv:2405.04517, eqs. 8-17 and 19-27), without the stabiliser: forward,
gradients (central differences of the reference), large pre-activations, and the mLSTM's
parallel form against its step loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from forecast.layers import mLSTM, mLSTMCell, sLSTM, sLSTMCell
from forecast.models import build_model

BATCH, TIME, FEATURES, UNITS, HEADS = 2, 6, 3, 4, 2


def inputs(batch=BATCH, time=TIME, features=FEATURES, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(batch, time, features))).astype("float32")


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forget_gate(z, kind):
    return np.exp(z) if kind == "exponential" else sigmoid(z)


def slstm_reference(x, kernel, recurrent_kernel, bias, heads, kind="sigmoid"):
    """The paper's sLSTM, step by step in float64, no stabiliser: hidden states (b, t, units)."""
    x, kernel, recurrent_kernel, bias = (
        np.asarray(a, np.float64) for a in (x, kernel, recurrent_kernel, bias)
    )
    batch, time, _ = x.shape
    units = kernel.shape[1] // 4
    d = units // heads
    h, c, n = np.zeros((batch, units)), np.zeros((batch, units)), np.zeros((batch, units))
    hidden = []
    for t in range(time):
        recurrent = np.zeros((batch, 4 * units))
        for head in range(heads):  # R is block-diagonal: head g's h feeds head g's gates
            mixed = h[:, head * d : (head + 1) * d] @ recurrent_kernel[head]  # (batch, 4 d)
            for gate in range(4):
                block = slice(gate * units + head * d, gate * units + (head + 1) * d)
                recurrent[:, block] = mixed[:, gate * d : (gate + 1) * d]
        z_i, z_f, z_z, z_o = np.split(x[:, t] @ kernel + recurrent + bias, 4, axis=-1)
        i, f = np.exp(z_i), forget_gate(z_f, kind)
        c = f * c + i * np.tanh(z_z)
        n = f * n + i
        h = sigmoid(z_o) * c / n
        hidden.append(h)
    return np.stack(hidden, axis=1)


def mlstm_reference(x, kernel, bias, heads, kind="sigmoid", conv_kernel=None, conv_bias=None):
    """The paper's mLSTM, step by step in float64, no stabiliser: hidden states (b, t, units).
    With ``conv_kernel`` (w, features), q and k read silu(sum_j c_j x_{t-j} + c_b) instead."""
    x, kernel, bias = (np.asarray(a, np.float64) for a in (x, kernel, bias))
    if conv_kernel is not None:
        conv_kernel, conv_bias = np.asarray(conv_kernel, np.float64), np.asarray(conv_bias)
    batch, time, _ = x.shape
    units = (kernel.shape[1] - 2 * heads) // 4
    d = units // heads
    memory = np.zeros((batch, heads, d, d))
    n = np.zeros((batch, heads, d))
    hidden = []
    for t in range(time):
        z = x[:, t] @ kernel + bias
        if conv_kernel is not None:  # inputs before the first step: zeros
            convolved = conv_bias + sum(
                conv_kernel[j] * x[:, t - j] for j in range(len(conv_kernel)) if t >= j
            )
            features = convolved / (1.0 + np.exp(-convolved))  # silu
            z[:, : 2 * units] = features @ kernel[:, : 2 * units] + bias[: 2 * units]
        q, k, v, z_o = (
            z[:, j * units : (j + 1) * units].reshape(batch, heads, d) for j in range(4)
        )
        k = k / np.sqrt(d)
        i = np.exp(z[:, 4 * units : 4 * units + heads])[..., None]
        f = forget_gate(z[:, 4 * units + heads :], kind)[..., None]
        memory = f[..., None] * memory + i[..., None] * np.einsum("bhi,bhj->bhij", v, k)
        n = f * n + i * k
        read = np.einsum("bhij,bhj->bhi", memory, q)
        scale = np.maximum(np.abs(np.sum(n * q, axis=-1, keepdims=True)), 1.0)
        hidden.append((sigmoid(z_o) * read / scale).reshape(batch, units))
    return np.stack(hidden, axis=1)


def built(layer, features=FEATURES):
    layer.build((None, TIME, features))
    return layer


def reference_of(layer, x, weights=None):
    weights = [np.asarray(w) for w in (weights or layer.get_weights())]
    cell = layer.cell
    if isinstance(layer, sLSTM):
        return slstm_reference(x, *weights, cell.heads, cell.forget_gate)
    return mlstm_reference(x, *weights[:2], cell.heads, cell.forget_gate, *weights[2:])


def loss_weights(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


LAYERS = {
    "slstm": lambda **o: sLSTM(UNITS, heads=HEADS, return_sequences=True, **o),
    "slstm_exponential": lambda **o: sLSTM(
        UNITS, heads=HEADS, forget_gate="exponential", return_sequences=True, **o
    ),
    "mlstm": lambda **o: mLSTM(UNITS, heads=HEADS, return_sequences=True, **o),
    "mlstm_loop": lambda **o: mLSTM(UNITS, heads=HEADS, return_sequences=True, parallel=False, **o),
    "mlstm_exponential": lambda **o: mLSTM(
        UNITS, heads=HEADS, forget_gate="exponential", return_sequences=True, **o
    ),
    "mlstm_conv": lambda **o: mLSTM(UNITS, heads=HEADS, conv_width=3, return_sequences=True, **o),
    "mlstm_conv_loop": lambda **o: mLSTM(
        UNITS, heads=HEADS, conv_width=3, parallel=False, return_sequences=True, **o
    ),
}


def randomized(layer, seed=0, scale=0.5):
    """Random weights (biases too), so no gate sits at its initial value."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [scale * rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()]
    )
    return layer


@pytest.mark.parametrize("name", LAYERS)
def test_forward_matches_the_papers_equations(name):
    layer = randomized(built(LAYERS[name]()))
    x = inputs()
    np.testing.assert_allclose(layer(x), reference_of(layer, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LAYERS)
def test_gradients_match_central_differences_of_the_reference(name):
    layer = randomized(built(LAYERS[name]()), seed=2)
    x = inputs(seed=3)
    mix = loss_weights((BATCH, TIME, UNITS))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x), tf.float64) * mix)
    ours = [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]

    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    step = 1e-6
    for index, weight in enumerate(weights):
        numeric = np.zeros_like(weight)
        for position in np.ndindex(weight.shape):
            shifted = [w.copy() for w in weights]
            shifted[index][position] += step
            up = np.sum(reference_of(layer, x, shifted) * mix)
            shifted[index][position] -= 2 * step
            down = np.sum(reference_of(layer, x, shifted) * mix)
            numeric[position] = (up - down) / (2 * step)
        np.testing.assert_allclose(ours[index], numeric, rtol=2e-3, atol=2e-5)


def gate_columns(layer):
    """The kernel's and bias' columns of the input and forget pre-activations."""
    units, heads = layer.cell.units, layer.cell.heads
    if isinstance(layer, sLSTM):  # i, f, z, o
        return slice(0, units), slice(units, 2 * units)
    return slice(4 * units, 4 * units + heads), slice(4 * units + heads, 4 * units + 2 * heads)


@pytest.mark.parametrize("name", LAYERS)
def test_large_preactivations_stay_finite_and_exact(name):
    """exp overflows float32 from 89: input gate pre-activations of a few hundred, and for an
    exponential forget gate a pre-activation of 100 at every step. The float64 reference
    (exp overflows at 709) still holds the exact value; the float32 layer, stabilised, must
    reach it, with finite gradients."""
    layer = randomized(built(LAYERS[name]()), seed=4)
    weights = layer.get_weights()
    kernel, bias = weights[0], weights[-1]
    input_columns, forget_columns = gate_columns(layer)
    kernel[:, input_columns] *= 100.0
    if layer.cell.forget_gate == "exponential":  # f = e^100 each step: e^600 after six
        kernel[:, forget_columns] = 0.0
        bias[forget_columns] = 100.0
    layer.set_weights(weights)
    x = inputs(seed=5)
    assert np.abs(x @ kernel[:, input_columns]).max() > 100  # beyond float32's exp
    expected = reference_of(layer, x)
    assert np.isfinite(expected).all()
    with tf.GradientTape() as tape:
        outputs = layer(x)
        loss = tf.reduce_sum(outputs)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
    assert all(np.isfinite(g.numpy()).all() for g in tape.gradient(loss, layer.trainable_weights))


def test_slstm_stabiliser_keeps_the_normaliser_at_least_one():
    layer = randomized(built(sLSTM(UNITS, heads=HEADS)), seed=6, scale=2.0)
    activations = layer.gate_activations(inputs(scale=10.0))
    assert activations["normalizer"].min() >= 1.0 - 1e-6
    for gate in ("forget", "input"):  # the stabilised gates, what is applied to the state
        assert activations[gate].min() >= 0.0 and activations[gate].max() <= 1.0 + 1e-6
    # at every step one of them is 1: the stabiliser is the larger of the two log-weights
    largest = np.maximum(activations["forget"][:, 1:], activations["input"][:, 1:])
    np.testing.assert_allclose(largest, 1.0, rtol=1e-6)


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("forget, conv_width", [("sigmoid", 0), ("exponential", 0), ("sigmoid", 3)])
@pytest.mark.parametrize("chunk_size", [32, 4, 1])  # one chunk, two uneven ones, every step
def test_mlstm_parallel_form_computes_what_the_loop_computes(
    forget, conv_width, return_state, chunk_size
):
    options = {
        "forget_gate": forget,
        "conv_width": conv_width,
        "return_sequences": True,
        "return_state": return_state,
    }
    parallel = randomized(
        built(mLSTM(8, heads=2, chunk_size=chunk_size, **options)), seed=7, scale=1.5
    )
    loop = built(mLSTM(8, heads=2, parallel=False, **options))
    loop.set_weights(parallel.get_weights())
    x = inputs(time=TIME, scale=2.0, seed=8)
    first = [keras.tree.flatten(layer(x)) for layer in (parallel, loop)]
    for ours, theirs in zip(*first, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    if return_state:  # continuing from a state: the parallel form's initial-state term
        initial = first[1][1:]
        again = [keras.tree.flatten(layer(x, initial_state=initial)) for layer in (parallel, loop)]
        for ours, theirs in zip(*again, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)

    def gradients(layer):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(keras.tree.flatten(layer(x))[0]))
        return tape.gradient(loss, layer.trainable_weights)

    for ours, theirs in zip(gradients(parallel), gradients(loop), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_gate_activations_agree_with_the_outputs(name):
    layer = randomized(built(LAYERS[name]()), seed=9)
    x = inputs(seed=10)
    activations = layer.gate_activations(x)
    np.testing.assert_allclose(activations["hidden"], layer(x), rtol=1e-5, atol=1e-6)
    if name == "slstm":
        expected = activations["output"] * activations["cell"] / activations["normalizer"]
        np.testing.assert_allclose(activations["hidden"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer_cls", [sLSTM, mLSTM])
@pytest.mark.parametrize("forget", ["sigmoid", "exponential"])
def test_chrono_init_forget_gates_start_at_the_stated_memory_times(layer_cls, forget):
    layer = built(layer_cls(8, heads=2, forget_gate=forget, chrono_init=100, seed=0), features=1)
    bias = layer.get_weights()[-1]
    forget_bias = bias[8:16] if layer_cls is sLSTM else bias[-2:]
    kept = np.exp(forget_bias) if forget == "exponential" else sigmoid(forget_bias)
    memory_times = kept / (1 - kept)  # f = u / (1 + u)
    assert memory_times.min() >= 1 - 1e-4 and memory_times.max() <= 99 + 1e-3


@pytest.mark.parametrize(
    "layer_cls, options", [(sLSTM, {}), (mLSTM, {}), (mLSTM, {"conv_width": 4})]
)
def test_keras_file_round_trip_predicts_identically(layer_cls, options, tmp_path):
    model = build_model(layer_cls.__name__, 8, (TIME, FEATURES), (1,), depth=2, heads=2, **options)
    x = inputs()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    layer = model.layers[0]
    again = layer_cls.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("cell_cls", [sLSTMCell, mLSTMCell])
def test_cells_work_inside_keras_rnn(cell_cls):
    ours = built(LAYERS["slstm" if cell_cls is sLSTMCell else "mlstm_loop"]())
    wrapped = keras.layers.RNN(cell_cls(UNITS, heads=HEADS), return_sequences=True)
    wrapped.build((None, TIME, FEATURES))
    wrapped.set_weights(ours.get_weights())
    x = inputs()
    np.testing.assert_allclose(wrapped(x), ours(x), rtol=1e-6)


@pytest.mark.parametrize("layer_cls", [sLSTM, mLSTM])
def test_a_model_compiled_with_jit_compile_trains(layer_cls):
    x, y = inputs(batch=16), np.random.default_rng(0).normal(size=(16, 1)).astype("float32")
    losses = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(layer_cls.__name__, UNITS, (TIME, FEATURES), (1,), heads=HEADS)
        model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=jit)
        losses[jit] = model.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert losses[True][-1] < losses[True][0]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


@pytest.mark.parametrize(
    "arguments, named",
    [
        ({"units": 6, "heads": 4}, "heads"),
        ({"units": 8, "heads": 0}, "heads"),
        ({"units": 8, "forget_gate": "tanh"}, "forget_gate"),
        ({"units": 8, "chrono_init": 1}, "chrono_init"),
        ({"units": 0}, "units"),
    ],
)
@pytest.mark.parametrize("layer_cls", [sLSTM, mLSTM])
def test_bad_arguments_raise_value_errors_that_name_them(layer_cls, arguments, named):
    with pytest.raises(ValueError, match=named):
        layer_cls(**arguments)


def test_a_bad_chunk_size_or_conv_width_is_named():
    with pytest.raises(ValueError, match="chunk_size"):
        mLSTM(8, chunk_size=0)
    for width in (-1, 1, 2.5):
        with pytest.raises(ValueError, match="conv_width"):
            mLSTM(8, conv_width=width)


def test_a_convolving_cell_in_keras_rnn_is_refused_in_one_line():
    layer = keras.layers.RNN(mLSTMCell(UNITS, heads=HEADS, conv_width=3))
    with pytest.raises(ValueError, match=r"use forecast.layers.mLSTM\(\.\.\., conv_width=\.\.\.\)"):
        layer(inputs())
