"""The vanilla (Elman) recurrent network, the baseline that cannot bridge long gaps.

    h_t = tanh(W x_t + U h_{t-1} + b)

Backpropagated through time, the gradient reaching ``x_{t-k}`` is a product of ``k`` Jacobians
``U^T diag(tanh'(.))``; unless they sit exactly at norm one it vanishes or explodes
exponentially in ``k`` (Hochreiter 1991; Bengio et al. 1994), which is why this network stops
learning once the useful input lies more than a few dozen steps back.

Weights use the layout of ``keras.layers.SimpleRNN`` (``kernel`` (input_dim, units),
``recurrent_kernel`` (units, units), ``bias`` (units,)).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.layers.lstm import _check_units


@keras.saving.register_keras_serializable(package="forecast")
class SimpleRNNCell(keras.layers.Layer):
    """One vanilla RNN time step.

    Args:
        units: Size of the hidden state.
        activation: Squashing function (``tanh``).
        use_bias: Whether to add a bias.
        kernel_initializer: Initializer of the input weights ``kernel``.
        recurrent_initializer: Initializer of the recurrent weights ``recurrent_kernel``.
        bias_initializer: Initializer of ``bias``.
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            name="kernel",
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,), name="bias", initializer=self.bias_initializer
            )
        self.built = True

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, list]:
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        hidden = self.activation(z)
        return hidden, [hidden]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


_CELL_ARGS = (
    "units",
    "activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
)


@keras.saving.register_keras_serializable(package="forecast")
class SimpleRNN(keras.layers.RNN):
    """Vanilla RNN layer; a drop-in for ``keras.layers.SimpleRNN``.

    Takes the cell arguments of :class:`SimpleRNNCell` and the sequence arguments of
    ``keras.layers.RNN``.
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        **kwargs: Any,
    ) -> None:
        cell = SimpleRNNCell(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dtype=kwargs.get("dtype"),
            name="simple_rnn_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    @property
    def units(self) -> int:
        return self.cell.units

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("cell", None)
        cell_config = self.cell.get_config()
        return {**config, **{key: cell_config[key] for key in _CELL_ARGS}}

    @classmethod
    def from_config(cls, config: dict) -> SimpleRNN:
        return cls(**config)
