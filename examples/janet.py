"""JANET: an LSTM with only a forget gate, as a user would bring it to ``forecast``.

van der Westhuizen & Lasenby (2018), "The unreasonable effectiveness of the forget gate"
(arXiv:1804.04849), keep one gate of the LSTM and tie the input to it:

    s_t = W_f x_t + U_f h_{t-1} + b_f
    c_t = sigmoid(s_t) * c_{t-1} + (1 - sigmoid(s_t - beta)) * tanh(W_c x_t + U_c h_{t-1} + b_c)
    h_t = c_t

``beta`` (1 in the paper) lets a little more input in than the forget gate lets out. The forget
bias starts chrono-initialised (Tallec & Ollivier 2018), ``b_f = log(U[1, t_max - 1])``, so that
memory spans of up to ``t_max`` steps are there from the first step of training.

This module is plain Keras and imports nothing of ``forecast``: the cell follows Keras' cell
contract (``state_size``, ``call(inputs, states) -> (output, new_states)``, ``get_config``), and
an experiment names it by import path, ``layer: examples.janet:JANETCell``; ``forecast`` wraps
it in ``keras.layers.RNN``. See ``examples/janet.yaml`` and the README, "Bring your own layer".

>>> import keras, numpy as np
>>> layer = keras.layers.RNN(JANETCell(8, t_max=50))
>>> tuple(layer(np.zeros((2, 30, 1), "float32")).shape)
(2, 8)
"""

import keras
from keras import ops


class JANETCell(keras.layers.Layer):
    """One step of JANET: a forget gate and a candidate, half the weights of an LSTM's four.

    Args:
        units: size of the state (and the output).
        t_max: the longest memory span, in steps, the forget bias is initialised for
            (chrono initialisation); ``None`` starts the bias at zero. Default ``None``.
        beta: how much earlier the input gate opens than the forget gate closes. Default 1.0.
        seed: for the weight initialisers. Default ``None``.
    """

    def __init__(
        self,
        units: int,
        t_max: int | None = None,
        beta: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.t_max = t_max
        self.beta = beta
        self.seed = seed
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        features, units = input_shape[-1], self.units
        # Columns: forget pre-activation, then candidate.
        self.kernel = self.add_weight(
            shape=(features, 2 * units),
            initializer=keras.initializers.GlorotUniform(self.seed),
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(units, 2 * units),
            initializer=keras.initializers.Orthogonal(seed=self.seed),
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(
            shape=(2 * units,), initializer=self._bias_initializer, name="bias"
        )

    def _bias_initializer(self, shape, dtype=None):
        forget = ops.zeros((self.units,), dtype=dtype)
        if self.t_max is not None:
            spans = keras.random.uniform((self.units,), 1.0, self.t_max - 1.0, seed=self.seed)
            forget = ops.cast(ops.log(spans), dtype)
        return ops.concatenate([forget, ops.zeros((self.units,), dtype=dtype)])

    def call(self, inputs, states):
        previous = states[0] if isinstance(states, list | tuple) else states
        mixed = ops.matmul(inputs, self.kernel) + ops.matmul(previous, self.recurrent_kernel)
        forget, candidate = ops.split(mixed + self.bias, 2, axis=-1)
        state = ops.sigmoid(forget) * previous + (1.0 - ops.sigmoid(forget - self.beta)) * ops.tanh(
            candidate
        )
        return state, [state]

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, t_max=self.t_max, beta=self.beta, seed=self.seed)
        return config
