"""Gated recurrent unit (Cho et al. 2014), in the two conventions Keras offers::

    z_t  = sigma(W_z x_t + U_z h_{t-1} + b_z)                 update gate
    r_t  = sigma(W_r x_t + U_r h_{t-1} + b_r)                 reset gate
    h~_t = tanh(W_h x_t + r_t * (U_h h_{t-1} + b'_h) + b_h)   candidate, reset_after=True
    h~_t = tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)          candidate, reset_after=False
    h_t  = z_t * h_{t-1} + (1 - z_t) * h~_t

A GRU merges the LSTM's cell and hidden state and couples forgetting and writing through one
update gate. ``reset_after=True`` (Keras' default, and cuDNN's) applies the reset gate after the
recurrent matmul and gives the recurrent part its own bias ``b'``; ``reset_after=False`` is the
original formulation.

Weights follow ``keras.layers.GRU``: ``kernel`` (input_dim, 3 units), ``recurrent_kernel``
(units, 3 units), gates in the order z, r, h; ``bias`` (3 units,), or (2, 3 units) with
``reset_after`` (row 0 for the inputs, row 1 for the recurrent part).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.layers.base import RecurrentCell, RecurrentLayer, cell_attribute


@keras.saving.register_keras_serializable(package="forecast")
class GRUCell(RecurrentCell):
    """One GRU time step; use it in :class:`GRU` or in ``keras.layers.RNN``.

    Args:
        units: Size of the hidden state.
        activation: Squashing of the candidate (``tanh``).
        recurrent_activation: Gate activation (``sigmoid``).
        reset_after: Apply the reset gate after the recurrent matmul (see the module docstring).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed: as in
            :class:`forecast.layers.LSTMCell`.
        implementation: Accepted for compatibility with Keras and ignored. In Keras it picks
            one matmul per gate (1) or one for all gates (2), which compute the same; we always
            do the latter. As in Keras, it is kept on the cell and left out of the config.
    """

    activation_names = ("update", "reset", "candidate", "hidden")

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        reset_after: bool = True,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.reset_after = reset_after
        self.implementation = implementation
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_kernel("kernel", (input_shape[-1], 3 * self.units))
        self.recurrent_kernel = self.add_kernel("recurrent_kernel", (self.units, 3 * self.units))
        self.bias = None
        if self.use_bias:
            shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
            self.bias = self.add_bias(shape)
        self.built = True

    def project_inputs(self, inputs: Any, dropout_mask: Any = None) -> Any:
        if dropout_mask is not None:
            inputs = inputs * dropout_mask
        projected = ops.matmul(inputs, self.kernel)
        if not self.use_bias:
            return projected
        # ops.add: a BiasAdd, fused with the MatMul (see RecurrentCell.project_inputs).
        return ops.add(projected, self.bias[0] if self.reset_after else self.bias)

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        h_prev = states[0]
        h_in = h_prev if state_mask is None else h_prev * state_mask
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        units = self.units
        if self.reset_after:
            recurrent = ops.matmul(h_in, self.recurrent_kernel)
            if self.use_bias:
                recurrent = ops.add(recurrent, self.bias[1])
            rec_z, rec_r, rec_h = ops.split(recurrent, 3, axis=-1)
        else:
            rec_z, rec_r = ops.split(ops.matmul(h_in, self.recurrent_kernel[:, : 2 * units]), 2, -1)

        update = self.recurrent_activation(x_z + rec_z)
        reset = self.recurrent_activation(x_r + rec_r)
        if self.reset_after:
            candidate = self.activation(x_h + reset * rec_h)
        else:
            candidate = self.activation(
                x_h + ops.matmul(reset * h_in, self.recurrent_kernel[:, 2 * units :])
            )
        hidden = update * h_prev + (1.0 - update) * candidate
        activations = {"update": update, "reset": reset, "candidate": candidate, "hidden": hidden}
        return hidden, [hidden], activations

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
        }


@keras.saving.register_keras_serializable(package="forecast")
class GRU(RecurrentLayer):
    """GRU layer; a drop-in for ``keras.layers.GRU``.

    Takes the arguments of :class:`GRUCell` and the sequence arguments of ``keras.layers.RNN``
    (``return_sequences``, ``return_state``, ``go_backwards``, ``stateful``, ``unroll``), and
    ``activity_regularizer``. ``layer.gate_activations(inputs)`` returns the ``update``,
    ``reset``, ``candidate`` and ``hidden`` activations (batch, time, units).
    """

    recurrent_activation = cell_attribute("recurrent_activation")
    reset_after = cell_attribute("reset_after")

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
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
        reset_after: bool = True,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        cell = GRUCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=reset_after,
            implementation=implementation,
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
            name="gru_cell",
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
