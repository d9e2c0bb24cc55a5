"""The vanilla (Elman) recurrent network, the baseline that cannot bridge long gaps::

    h_t = tanh(W x_t + U h_{t-1} + b)

Backpropagated through time, the gradient that reaches ``x_{t-k}`` is a product of ``k``
Jacobians ``diag(tanh'(.)) U``; unless they sit at norm one it vanishes or explodes
exponentially in ``k`` (Hochreiter 1991; Bengio et al. 1994), which is why this network stops
learning once the useful input lies more than a few dozen steps back.

Weights follow ``keras.layers.SimpleRNN``: ``kernel`` (input_dim, units), ``recurrent_kernel``
(units, units), ``bias`` (units,).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.layers.base import RecurrentCell, RecurrentLayer


@keras.saving.register_keras_serializable(package="forecast")
class SimpleRNNCell(RecurrentCell):
    """One vanilla RNN time step; use it in :class:`SimpleRNN` or in ``keras.layers.RNN``.

    Args:
        units: Size of the hidden state.
        activation: Squashing function (``tanh``).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed: as in
            :class:`forecast.layers.LSTMCell`.
    """

    activation_names = ("hidden",)

    def __init__(self, units: int, activation: Any = "tanh", **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_kernel("kernel", (input_shape[-1], self.units))
        self.recurrent_kernel = self.add_kernel("recurrent_kernel", (self.units, self.units))
        self.bias = self.add_bias((self.units,)) if self.use_bias else None
        self.built = True

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        h_prev = states[0]
        h_in = h_prev if state_mask is None else h_prev * state_mask
        hidden = self.activation(projected + ops.matmul(h_in, self.recurrent_kernel))
        return hidden, [hidden], {"hidden": hidden}

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="forecast")
class SimpleRNN(RecurrentLayer):
    """Vanilla RNN layer; a drop-in for ``keras.layers.SimpleRNN``.

    Takes the arguments of :class:`SimpleRNNCell` and the sequence arguments of
    ``keras.layers.RNN`` (``return_sequences``, ``return_state``, ``go_backwards``,
    ``stateful``, ``unroll``), and ``activity_regularizer``.
    ``layer.gate_activations(inputs)`` returns ``{"hidden": (batch, time, units)}``.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
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
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="simple_rnn_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
