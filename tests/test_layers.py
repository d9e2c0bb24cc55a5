"""Our layers against Keras' built-in ones with the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from forecast.layers import LSTM, SimpleRNN

PAIRS = [(LSTM, keras.layers.LSTM), (SimpleRNN, keras.layers.SimpleRNN)]
TOLERANCE = 1e-5


def _inputs(batch=3, time=7, features=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, time, features)).astype("float32")


def _twin_layers(ours_cls, keras_cls, x, **kwargs):
    reference = keras_cls(5, **kwargs)
    reference(x)
    ours = ours_cls(5, **kwargs)
    ours(x)
    ours.set_weights(reference.get_weights())
    return ours, reference


@pytest.mark.parametrize("ours_cls, keras_cls", PAIRS)
@pytest.mark.parametrize(
    "options",
    [{}, {"return_sequences": True}, {"return_state": True}, {"go_backwards": True}],
    ids=["last", "sequences", "state", "backwards"],
)
def test_outputs_match_keras_with_copied_weights(ours_cls, keras_cls, options):
    x = _inputs()
    ours, reference = _twin_layers(ours_cls, keras_cls, x, **options)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in reference.get_weights()]
    ours_out = keras.tree.flatten(ours(x))
    reference_out = keras.tree.flatten(reference(x))
    assert len(ours_out) == len(reference_out)
    for a, b in zip(ours_out, reference_out, strict=True):
        np.testing.assert_allclose(a, b, atol=TOLERANCE)


@pytest.mark.parametrize("ours_cls, keras_cls", PAIRS)
def test_gradients_match_keras(ours_cls, keras_cls):
    x = tf.constant(_inputs(time=12))
    ours, reference = _twin_layers(ours_cls, keras_cls, x, return_sequences=True)
    grads = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, atol=TOLERANCE)


def test_lstm_forget_bias_starts_at_one():
    layer = LSTM(4)
    layer(_inputs())
    bias = layer.get_weights()[2]
    np.testing.assert_array_equal(bias[4:8], 1.0)
    np.testing.assert_array_equal(np.delete(bias, range(4, 8)), 0.0)


def test_chrono_init_biases_lie_in_range():
    t_max = 100
    layer = LSTM(64, chrono_init=t_max, seed=3)
    layer(_inputs())
    bias = layer.get_weights()[2]
    forget, input_gate = bias[64:128], bias[:64]
    assert np.all(forget >= 0.0) and np.all(forget <= np.log(t_max - 1))
    np.testing.assert_allclose(input_gate, -forget)
    assert forget.std() > 0.5  # spread over time scales, not one constant


@pytest.mark.parametrize("ours_cls", [LSTM, SimpleRNN])
def test_config_and_keras_file_round_trip(ours_cls, tmp_path):
    x = _inputs()
    model = keras.Sequential([keras.Input((7, 2)), ours_cls(5), keras.layers.Dense(1)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], ours_cls)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    clone = ours_cls.from_config(model.layers[0].get_config())
    assert clone.get_config()["units"] == 5


@pytest.mark.parametrize("ours_cls", [LSTM, SimpleRNN])
@pytest.mark.parametrize("units", [0, -3])
def test_nonpositive_units_are_rejected(ours_cls, units):
    with pytest.raises(ValueError, match="units"):
        ours_cls(units)
