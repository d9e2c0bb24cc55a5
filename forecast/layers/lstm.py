"""Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

The cell writes the gates out one by one so the code reads like the equations::

    f_t = sigma(W_f x_t + U_f h_{t-1} + b_f)      forget gate
    i_t = sigma(W_i x_t + U_i h_{t-1} + b_i)      input gate
    C~_t = tanh(W_c x_t + U_c h_{t-1} + b_c)      candidate cell state
    C_t = f_t * C_{t-1} + i_t * C~_t              cell state
    o_t = sigma(W_o x_t + U_o h_{t-1} + b_o)      output gate
    h_t = o_t * tanh(C_t)                         hidden state

Weights use the layout of ``keras.layers.LSTM`` (``kernel`` (input_dim, 4 units),
``recurrent_kernel`` (units, 4 units), ``bias`` (4 units,), gates in the order i, f, c, o), so
``ours.set_weights(keras_lstm.get_weights())`` reproduces a Keras LSTM.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _check_units(units: int) -> int:
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise ValueError(f"Argument `units` must be a positive integer, got units={units!r}.")
    return units


@keras.saving.register_keras_serializable(package="forecast")
class LSTMCell(keras.layers.Layer):
    """One LSTM time step, for use inside ``keras.layers.RNN`` or our :class:`LSTM`.

    Args:
        units: Size of the hidden and cell state.
        activation: Squashing function of the candidate and of the cell output (``tanh``).
        recurrent_activation: Gate activation (``sigmoid``).
        use_bias: Whether the gates have biases.
        kernel_initializer: Initializer of the input weights ``kernel``.
        recurrent_initializer: Initializer of the recurrent weights ``recurrent_kernel``.
        bias_initializer: Initializer of ``bias``.
        unit_forget_bias: Start the forget-gate bias at 1 (Jozefowicz et al. 2015), so the cell
            remembers by default. Ignored when ``chrono_init`` is set.
        chrono_init: ``T_max`` of the chrono initialisation (Tallec & Ollivier 2018):
            ``b_f ~ log(U(1, T_max - 1))`` and ``b_i = -b_f``, which sets the forget gates'
            characteristic memory times between 1 and ``T_max`` steps. ``None`` disables it.
        seed: Seed of the chrono sampling.
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        chrono_init: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _check_units(units)
        if chrono_init is not None and chrono_init <= 2:
            raise ValueError(
                f"Argument `chrono_init` is T_max, the longest memory in steps, and must be > 2; "
                f"got chrono_init={chrono_init!r}."
            )
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.chrono_init = chrono_init
        self.seed = seed
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape: tuple) -> None:
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(4 * self.units,), name="bias", initializer=self._initial_bias
            )
        self.built = True

    def _initial_bias(self, shape: tuple, dtype: Any = None) -> Any:
        bias_i, bias_f, bias_c, bias_o = ops.split(
            self.bias_initializer((4 * self.units,), dtype=dtype), 4
        )
        if self.chrono_init is not None:
            timescales = keras.random.uniform(
                (self.units,), 1.0, self.chrono_init - 1.0, dtype=dtype, seed=self.seed
            )
            bias_f = ops.log(timescales)
            bias_i = -bias_f
        elif self.unit_forget_bias:
            bias_f = ops.ones((self.units,), dtype=dtype)
        return ops.concatenate([bias_i, bias_f, bias_c, bias_o])

    def call(self, inputs: Any, states: list, training: bool = False) -> tuple[Any, list]:
        h_prev, c_prev = states
        # One matmul per operand for all four gates, then split: same numbers, fewer kernels.
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)

        forget = self.recurrent_activation(z_f)
        input_gate = self.recurrent_activation(z_i)
        candidate = self.activation(z_c)
        cell = forget * c_prev + input_gate * candidate
        output = self.recurrent_activation(z_o)
        hidden = output * self.activation(cell)
        return hidden, [hidden, cell]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "chrono_init": self.chrono_init,
            "seed": self.seed,
        }


_CELL_ARGS = (
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "chrono_init",
    "seed",
)


@keras.saving.register_keras_serializable(package="forecast")
class LSTM(keras.layers.RNN):
    """LSTM layer over a (batch, time, features) input; a drop-in for ``keras.layers.LSTM``.

    Takes the cell arguments of :class:`LSTMCell` and the sequence arguments of
    ``keras.layers.RNN`` (``return_sequences``, ``return_state``, ``go_backwards``,
    ``stateful``, ``unroll``).
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        chrono_init: float | None = None,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        **kwargs: Any,
    ) -> None:
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            chrono_init=chrono_init,
            seed=seed,
            dtype=kwargs.get("dtype"),
            name="lstm_cell",
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
    def from_config(cls, config: dict) -> LSTM:
        return cls(**config)
