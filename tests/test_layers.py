"""Our layers against Keras' built-in ones with copied weights, and the variants' own laws."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from forecast.layers import GRU, LSTM, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell
from forecast.layers.lstm import FUSED_MAX_UNITS

TOLERANCE = 1e-5
BATCH, TIME, FEATURES, UNITS = 3, 6, 2, 4

REFERENCES = {
    "lstm": (LSTM, keras.layers.LSTM, {}),
    "gru": (GRU, keras.layers.GRU, {"reset_after": True}),
    "gru_reset_before": (GRU, keras.layers.GRU, {"reset_after": False}),
    "simple_rnn": (SimpleRNN, keras.layers.SimpleRNN, {}),
}
OPTIONS = {
    "last_output": {},
    "sequences": {"return_sequences": True},
    "state": {"return_state": True},
    "backwards": {"go_backwards": True, "return_sequences": True, "return_state": True},
    "unroll": {"unroll": True, "return_sequences": True},
    "no_bias": {"use_bias": False, "return_state": True},
}


def inputs(batch=BATCH, time=TIME, features=FEATURES, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, time, features)).astype("float32")


def twins(reference, **options):
    """(ours, keras) layers built on the same input shape, ours holding Keras' weights."""
    ours_cls, keras_cls, extra = REFERENCES[reference]
    options = {**extra, **options}
    theirs = keras_cls(UNITS, **options)
    ours = ours_cls(UNITS, **options)
    batch_size = BATCH if options.get("stateful") else None
    shape = (batch_size, TIME, FEATURES)
    theirs.build(shape)
    ours.build(shape)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def outputs_and_gradients(layer, x, **call_kwargs):
    """Every output of ``layer`` and the gradients of a loss over all of them."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = keras.tree.flatten(layer(x, **call_kwargs))
        loss = sum(tf.reduce_sum(tf.sin(o) * (i + 1)) for i, o in enumerate(outputs))
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [o.numpy() for o in outputs], [g.numpy() for g in grads]


def assert_all_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("reference", REFERENCES)
def test_outputs_states_and_gradients_match_keras(reference, option):
    ours, theirs = twins(reference, **OPTIONS[option])
    x = inputs()
    ours_out, ours_grads = outputs_and_gradients(ours, x)
    theirs_out, theirs_grads = outputs_and_gradients(theirs, x)
    assert_all_close(ours_out, theirs_out)
    assert_all_close(ours_grads, theirs_grads)


@pytest.mark.parametrize("reference", REFERENCES)
def test_right_padded_mask_matches_keras(reference):
    ours, theirs = twins(reference, return_sequences=True, return_state=True)
    lengths = np.array([TIME, 4, 1])
    mask = np.arange(TIME)[None, :] < lengths[:, None]
    x = inputs() * mask[..., None]
    ours_out, ours_grads = outputs_and_gradients(ours, x, mask=tf.constant(mask))
    theirs_out, theirs_grads = outputs_and_gradients(theirs, x, mask=tf.constant(mask))
    assert_all_close(ours_out, theirs_out)
    assert_all_close(ours_grads, theirs_grads)
    # The final state of a padded sequence is the state at its last real step.
    ours_sequences, ours_final = ours_out[0], ours_out[1]
    np.testing.assert_allclose(ours_final[1], ours_sequences[1, 3], atol=TOLERANCE)


@pytest.mark.parametrize("reference", REFERENCES)
def test_initial_state_matches_keras(reference):
    ours, theirs = twins(reference, return_state=True)
    state_count = 2 if reference == "lstm" else 1
    rng = np.random.default_rng(1)
    state = [rng.normal(size=(BATCH, UNITS)).astype("float32") for _ in range(state_count)]
    ours_out, ours_grads = outputs_and_gradients(ours, inputs(), initial_state=state)
    theirs_out, theirs_grads = outputs_and_gradients(theirs, inputs(), initial_state=state)
    assert_all_close(ours_out, theirs_out)
    assert_all_close(ours_grads, theirs_grads)


@pytest.mark.parametrize("reference", REFERENCES)
def test_stateful_carries_state_across_calls_like_keras(reference):
    ours, theirs = twins(reference, stateful=True)
    first, second = inputs(seed=1), inputs(seed=2)
    for layer in (ours, theirs):
        layer(first)
    carried = ours(second).numpy()
    np.testing.assert_allclose(carried, theirs(second), atol=TOLERANCE)
    ours.reset_state()
    theirs.reset_state()
    fresh = ours(second).numpy()
    np.testing.assert_allclose(fresh, theirs(second), atol=TOLERANCE)
    assert not np.allclose(carried, fresh)


@pytest.mark.parametrize("reference", REFERENCES)
def test_a_training_step_with_regularizers_and_constraints_matches_keras(reference):
    options = {
        "kernel_regularizer": keras.regularizers.L2(0.1),
        "recurrent_regularizer": keras.regularizers.L1(0.05),
        "bias_regularizer": keras.regularizers.L2(0.2),
        "activity_regularizer": keras.regularizers.L2(0.3),
        "kernel_constraint": keras.constraints.MaxNorm(0.5),
        "recurrent_constraint": keras.constraints.NonNeg(),
    }
    if reference == "simple_rnn":
        # keras.layers.SimpleRNN takes activity_regularizer but never applies it (Keras 3.15);
        # ours applies it, as its docstring and LSTM/GRU do. Compared without it.
        del options["activity_regularizer"]
    ours_layer, theirs_layer = twins(reference, **options)
    x, y = inputs(), np.ones((BATCH, UNITS), "float32")
    for layer in (ours_layer, theirs_layer):
        model = keras.Sequential([keras.Input((TIME, FEATURES)), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        layer.loss_after_one_step = model.train_on_batch(x, y)
    assert ours_layer.loss_after_one_step == pytest.approx(theirs_layer.loss_after_one_step)
    assert_all_close(ours_layer.get_weights(), theirs_layer.get_weights())
    assert np.all(ours_layer.cell.recurrent_kernel.numpy() >= 0)


def test_cells_work_inside_keras_rnn():
    x = inputs()
    for layer_cls, cell_cls in [(LSTM, LSTMCell), (GRU, GRUCell), (SimpleRNN, SimpleRNNCell)]:
        ours = layer_cls(UNITS, return_sequences=True)
        wrapped = keras.layers.RNN(cell_cls(UNITS), return_sequences=True)
        ours(x), wrapped(x)
        wrapped.set_weights(ours.get_weights())
        np.testing.assert_allclose(wrapped(x), ours(x), atol=TOLERANCE)


@pytest.mark.parametrize("layer_cls", [LSTM, GRU, SimpleRNN])
def test_input_dropout_uses_one_mask_for_all_time_steps(layer_cls):
    rate = 0.5
    layer = layer_cls(UNITS, dropout=rate, seed=7)
    x = inputs(batch=32)
    trained = layer(x, training=True).numpy()
    np.testing.assert_allclose(layer(x, training=False), layer(x), atol=0)
    assert not np.allclose(trained, layer(x))
    # Each sample's output must equal inference on x with one fixed feature mask, scaled.
    masks = [np.array(m, "float32") for m in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    candidates = np.stack([layer(x * m / (1 - rate)).numpy() for m in masks])
    distance = np.abs(candidates - trained[None]).max(axis=-1)  # (mask, batch)
    assert np.all(distance.min(axis=0) < TOLERANCE)


@pytest.mark.parametrize("layer_cls", [LSTM, GRU, SimpleRNN])
def test_recurrent_dropout_is_training_only(layer_cls):
    layer = layer_cls(UNITS, recurrent_dropout=0.5, seed=3)
    x = inputs()
    np.testing.assert_allclose(layer(x, training=False), layer(x), atol=0)
    assert not np.allclose(layer(x, training=True), layer(x))


def test_lstm_forget_bias_starts_at_one_like_keras():
    ours, theirs = LSTM(UNITS), keras.layers.LSTM(UNITS)
    ours.build((None, TIME, FEATURES))
    theirs.build((None, TIME, FEATURES))
    np.testing.assert_array_equal(ours.get_weights()[2], theirs.get_weights()[2])


def test_peephole_with_zero_peepholes_equals_the_standard_lstm():
    x = inputs()
    standard, peephole = (
        LSTM(UNITS, return_sequences=True),
        LSTM(UNITS, peephole=True, return_sequences=True),
    )
    standard(x), peephole(x)
    kernel, recurrent, bias = standard.get_weights()
    peephole.set_weights([kernel, recurrent, bias, np.zeros((3, UNITS), "float32")])
    np.testing.assert_allclose(peephole(x), standard(x), atol=TOLERANCE)
    # Non-zero peepholes change the output, and they are trained (they get gradients).
    peephole.set_weights([kernel, recurrent, bias, np.full((3, UNITS), 0.7, "float32")])
    assert not np.allclose(peephole(x), standard(x), atol=1e-3)
    _, grads = outputs_and_gradients(peephole, x)
    assert np.abs(grads[-1]).sum() > 0


def test_peephole_gates_see_the_cell_state():
    layer = LSTM(UNITS, peephole=True)
    x = inputs()
    layer(x)
    kernel, recurrent, bias, _ = layer.get_weights()
    layer.set_weights([kernel * 0, recurrent * 0, bias * 0, np.ones((3, UNITS), "float32")])
    acts = layer.gate_activations(x)
    # With all other weights zero: f_t = i_t = sigma(C_{t-1}), o_t = sigma(C_t).
    previous_cell = np.concatenate([np.zeros_like(acts["cell"][:, :1]), acts["cell"][:, :-1]], 1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(acts["forget"], sigmoid(previous_cell), atol=TOLERANCE)
    np.testing.assert_allclose(acts["input"], sigmoid(previous_cell), atol=TOLERANCE)
    np.testing.assert_allclose(acts["output"], sigmoid(acts["cell"]), atol=TOLERANCE)


def test_coupled_gates_write_what_they_forget():
    layer = LSTM(UNITS, coupled_gates=True)
    x = inputs()
    layer(x)
    assert layer.cell.kernel.shape == (FEATURES, 3 * UNITS)
    assert layer.cell.recurrent_kernel.shape == (UNITS, 3 * UNITS)
    acts = layer.gate_activations(x)
    np.testing.assert_allclose(acts["input"], 1.0 - acts["forget"], atol=1e-6)
    assert layer.count_params() == 3 * UNITS * (FEATURES + UNITS + 1)


@pytest.mark.parametrize("coupled", [False, True])
def test_chrono_init_biases_lie_in_the_stated_range(coupled):
    t_max, units = 100, 256
    layer = LSTM(units, chrono_init=t_max, coupled_gates=coupled, seed=3)
    layer.build((None, TIME, FEATURES))
    bias = layer.get_weights()[2]
    forget = bias[:units] if coupled else bias[units : 2 * units]
    assert np.all(forget >= 0.0) and np.all(forget <= np.log(t_max - 1) + 1e-6)
    # log of a uniform: the median memory time sits near T_max / 2.
    assert np.median(np.exp(forget)) == pytest.approx(t_max / 2, rel=0.2)
    if not coupled:
        np.testing.assert_allclose(bias[:units], -forget)
    np.testing.assert_array_equal(bias[-2 * units :], 0.0)


def test_lstm_gate_activations_are_consistent_with_the_outputs():
    layer = LSTM(UNITS, return_sequences=True, return_state=True)
    x = inputs()
    sequence, final_hidden, final_cell = layer(x)
    acts = layer.gate_activations(x)
    assert set(acts) == {"forget", "input", "candidate", "output", "cell", "hidden"}
    for value in acts.values():
        assert value.shape == (BATCH, TIME, UNITS) and isinstance(value, np.ndarray)
    np.testing.assert_allclose(acts["hidden"], sequence, atol=TOLERANCE)
    np.testing.assert_allclose(acts["cell"][:, -1], final_cell, atol=TOLERANCE)
    for gate in ("forget", "input", "output"):
        assert np.all((acts[gate] > 0) & (acts[gate] < 1))
    # C_t = f_t * C_{t-1} + i_t * C~_t, checked from the returned arrays alone.
    previous_cell = np.concatenate([np.zeros_like(acts["cell"][:, :1]), acts["cell"][:, :-1]], 1)
    expected = acts["forget"] * previous_cell + acts["input"] * acts["candidate"]
    np.testing.assert_allclose(acts["cell"], expected, atol=TOLERANCE)
    np.testing.assert_allclose(final_hidden, acts["hidden"][:, -1], atol=TOLERANCE)


def test_gru_and_simple_rnn_gate_activations():
    x = inputs()
    gru = GRU(UNITS, return_sequences=True)
    acts = gru.gate_activations(x)
    assert set(acts) == {"update", "reset", "candidate", "hidden"}
    np.testing.assert_allclose(acts["hidden"], gru(x), atol=TOLERANCE)
    previous = np.concatenate([np.zeros_like(acts["hidden"][:, :1]), acts["hidden"][:, :-1]], 1)
    expected = acts["update"] * previous + (1 - acts["update"]) * acts["candidate"]
    np.testing.assert_allclose(acts["hidden"], expected, atol=TOLERANCE)
    rnn = SimpleRNN(UNITS, return_sequences=True)
    np.testing.assert_allclose(rnn.gate_activations(x)["hidden"], rnn(x), atol=TOLERANCE)


def kernels_in_graph(layer, x, training=False):
    """The TensorFlow op types that a call of ``layer`` on ``x`` traces to, branches included."""
    spec = tf.TensorSpec(x.shape, tf.float32)
    function = tf.function(lambda v: layer(v, training=training)).get_concrete_function(spec)
    graph = function.graph.as_graph_def()
    branches = [node for branch in graph.library.function for node in branch.node_def]
    return {node.op for node in [*graph.node, *branches]}


FUSABLE = {
    "last_output": {},
    "sequences_and_state": {"return_sequences": True, "return_state": True},
    "no_bias": {"use_bias": False},
    "peephole": {"peephole": True, "return_sequences": True},
    "chrono_init": {"chrono_init": 50, "return_state": True},
    "stateful": {"stateful": True},
}


@pytest.mark.parametrize("option", FUSABLE)
def test_the_fused_kernel_computes_what_the_step_loop_computes(option):
    options = FUSABLE[option]
    fused, loop = LSTM(UNITS, **options), LSTM(UNITS, fused=False, **options)
    shape = (BATCH if options.get("stateful") else None, TIME, FEATURES)
    fused.build(shape)
    loop.build(shape)
    weights = [
        np.random.default_rng(i).normal(size=w.shape).astype("float32")
        for i, w in enumerate(loop.weights)
    ]
    if loop.cell.use_bias:  # open the input and forget gates: the cell state grows past 3,
        weights[2] += np.repeat([4.0, 4.0, 3.0, 0.0], UNITS).astype("float32")  # BlockLSTM's
    loop.set_weights(weights)  # default cell_clip, which must be off
    fused.set_weights(weights)
    x = inputs()
    assert "BlockLSTM" in kernels_in_graph(fused, x)
    assert "BlockLSTM" not in kernels_in_graph(loop, x)
    fused_out, fused_grads = outputs_and_gradients(fused, x)
    loop_out, loop_grads = outputs_and_gradients(loop, x)
    assert not loop.cell.use_bias or np.abs(loop.gate_activations(x)["cell"]).max() > 3
    assert_all_close(fused_out, loop_out)
    assert_all_close(fused_grads, loop_grads)
    if options.get("stateful"):  # the state carried into the next call is the same too
        np.testing.assert_allclose(fused(x), loop(x), atol=TOLERANCE)


def test_input_dropout_in_the_fused_kernel_draws_the_step_loops_mask():
    fused, loop = LSTM(UNITS, dropout=0.5, seed=5), LSTM(UNITS, dropout=0.5, seed=5, fused=False)
    x = inputs(batch=32)
    fused.build(x.shape)
    loop.build(x.shape)
    loop.set_weights(fused.get_weights())
    assert "BlockLSTM" in kernels_in_graph(fused, x, training=True)
    fused_out, fused_grads = outputs_and_gradients(fused, x, training=True)
    loop_out, loop_grads = outputs_and_gradients(loop, x, training=True)
    assert_all_close(fused_out, loop_out)
    assert_all_close(fused_grads, loop_grads)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_an_empty_batch_gives_the_fused_kernel_zero_gradients(return_sequences):
    # Under tf.distribute a replica can get no samples of a short last batch; BlockLSTM's own
    # weight gradients are then uninitialised memory.
    layer = LSTM(UNITS, return_sequences=return_sequences)
    layer.build((None, TIME, FEATURES))

    @tf.function  # as in a training step (in eager mode only the empty branch runs)
    def outputs_and_weight_gradients(x):
        with tf.GradientTape() as tape:
            outputs = layer(x)
            loss = tf.reduce_sum(outputs)
        return outputs, tape.gradient(loss, layer.trainable_weights)

    outputs, grads = outputs_and_weight_gradients(inputs(batch=0))
    assert outputs.shape == ((0, TIME, UNITS) if return_sequences else (0, UNITS))
    for grad in grads:
        np.testing.assert_array_equal(grad, 0.0)
    assert "BlockLSTM" in kernels_in_graph(layer, inputs(batch=0))


@pytest.mark.parametrize(
    "options",
    [
        {"recurrent_dropout": 0.3},
        {"coupled_gates": True},
        {"go_backwards": True},
        {"activation": "relu"},
        {"recurrent_activation": "hard_sigmoid"},
    ],
)
def test_what_the_kernel_cannot_compute_runs_the_step_loop(options):
    layer = LSTM(UNITS, **options)
    assert "BlockLSTM" not in kernels_in_graph(layer, inputs(), training=True)


def test_xla_compilation_runs_the_step_loop_which_it_can_compile():
    layer = LSTM(UNITS)
    layer.build((None, TIME, FEATURES))
    spec = tf.TensorSpec((None, TIME, FEATURES), tf.float32)
    graph = tf.function(layer, jit_compile=True).get_concrete_function(spec).graph.as_graph_def()
    branches = [node for branch in graph.library.function for node in branch.node_def]
    assert "BlockLSTM" not in {node.op for node in [*graph.node, *branches]}
    assert "BlockLSTM" in kernels_in_graph(layer, inputs())  # and without XLA, the kernel


@pytest.mark.slow
def test_a_model_compiled_with_jit_compile_trains_as_the_fused_kernel_does():
    x = inputs(batch=16, time=TIME, features=FEATURES)
    y = x.sum(axis=(1, 2))[:, None]

    def train(jit_compile):
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [keras.Input((TIME, FEATURES)), LSTM(UNITS), keras.layers.Dense(1)]
        )
        model.compile("adam", "mse", jit_compile=jit_compile)
        assert model.jit_compile is jit_compile  # Keras turns XLA off where it cannot run
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
        return history.history["loss"], model.get_weights()

    jit_losses, jit_weights = train(jit_compile=True)
    losses, weights = train(jit_compile=False)
    np.testing.assert_allclose(jit_losses, losses, rtol=1e-4)
    assert_all_close(jit_weights, weights)


def test_layers_above_the_fused_size_run_the_step_loop():
    assert "BlockLSTM" in kernels_in_graph(LSTM(FUSED_MAX_UNITS), inputs())
    assert "BlockLSTM" not in kernels_in_graph(LSTM(FUSED_MAX_UNITS + 1), inputs())


KERAS_ONLY_ARGS = {"use_cudnn", "implementation"}


@pytest.mark.parametrize("reference", ["lstm", "gru", "simple_rnn"])
def test_config_takes_every_keras_argument_and_round_trips(reference):
    ours, theirs = twins(reference)
    ours_config = ours.get_config()
    assert set(theirs.get_config()) - KERAS_ONLY_ARGS <= set(ours_config)
    clone = type(ours).from_config(ours_config)
    assert clone.get_config() == ours_config


VARIANTS = [
    (LSTM, {"peephole": True, "coupled_gates": True, "chrono_init": 50, "return_sequences": True}),
    (LSTM, {"dropout": 0.1, "recurrent_dropout": 0.1, "go_backwards": True}),
    (GRU, {"reset_after": False}),
    (SimpleRNN, {"activation": "relu"}),
]


@pytest.mark.parametrize("layer_cls, options", VARIANTS)
def test_keras_file_round_trip_predicts_identically(layer_cls, options, tmp_path):
    x = inputs()
    model = keras.Sequential([keras.Input((TIME, FEATURES)), layer_cls(UNITS, **options)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[0]) is layer_cls
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("layer_cls", [LSTM, GRU, SimpleRNN])
def test_bad_arguments_raise_value_errors_that_name_them(layer_cls):
    for units in (0, -3, 2.5):
        with pytest.raises(ValueError, match="units"):
            layer_cls(units)
    with pytest.raises(ValueError, match="dropout"):
        layer_cls(UNITS, dropout=1.5)
    with pytest.raises(ValueError, match="ndim=3"):
        layer_cls(UNITS)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="unroll"):
        keras.Sequential([keras.Input((None, 1)), layer_cls(UNITS, unroll=True)])
    with pytest.raises(ValueError, match="stateful"):
        keras.Sequential([keras.Input((TIME, 1)), layer_cls(UNITS, stateful=True)])


def test_bad_chrono_init_is_named():
    with pytest.raises(ValueError, match="chrono_init"):
        LSTM(UNITS, chrono_init=2)
    with pytest.raises(ValueError, match="chrono_init"):
        LSTM(UNITS, chrono_init=10, use_bias=False)


def keras_layer_properties(keras_cls):
    """The attributes Keras' layer class itself defines as properties (its cell's arguments)."""
    return sorted(n for n, v in vars(keras_cls).items() if isinstance(v, property))


@pytest.mark.parametrize("reference", REFERENCES)
def test_the_layer_exposes_the_cell_arguments_keras_exposes(reference):
    ours, theirs = twins(reference, dropout=0.25, kernel_regularizer="l2")
    names = keras_layer_properties(type(theirs))
    assert {"units", "activation", "dropout", "kernel_initializer"} <= set(names)
    for name in names:
        value = keras.saving.serialize_keras_object(getattr(ours, name))
        assert value == keras.saving.serialize_keras_object(getattr(theirs, name)), name
        with pytest.raises(AttributeError):  # read-only, as in Keras: the cell holds them
            setattr(ours, name, "changed")


@pytest.mark.parametrize("reference", REFERENCES)
def test_implementation_is_accepted_where_keras_accepts_it_and_changes_nothing(reference):
    ours_cls, keras_cls, extra = REFERENCES[reference]
    try:
        keras_cls(UNITS, implementation=1, **extra)
    except ValueError:  # Keras' SimpleRNN refuses it; so does ours
        with pytest.raises(ValueError, match="implementation"):
            ours_cls(UNITS, implementation=1, **extra)
        return
    ours, _ = twins(reference)
    config = {**ours.get_config(), "implementation": 1}
    legacy = ours_cls.from_config(config)
    legacy.build((None, TIME, FEATURES))
    legacy.set_weights(ours.get_weights())
    np.testing.assert_array_equal(legacy(inputs()), ours(inputs()))
    assert "implementation" not in legacy.get_config()  # as in Keras' config
