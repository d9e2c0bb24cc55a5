"""sLSTM: the scalar-memory LSTM of xLSTM (Beck et al. 2024, arXiv:2405.04517, section 2.2).

One time step, as :class:`sLSTMCell` computes it (tanh is ``activation``; ``*`` is
elementwise; the pre-activations are ``W x_t + R h_{t-1} + b``, with ``R`` block-diagonal over
heads)::

    z_t  = tanh(z~_t)                          candidate values
    i_t  = exp(i~_t)                           input gate, exponential: can outweigh the past
    f_t  = sigmoid(f~_t)  or  exp(f~_t)        forget gate (``forget_gate``)
    o_t  = sigmoid(o~_t)                       output gate
    c_t  = f_t * c_{t-1} + i_t * z_t           cell state
    n_t  = f_t * n_{t-1} + i_t                 normaliser: the total weight written so far
    h_t  = o_t * c_t / n_t                     hidden state: a gated weighted mean of the z's

An exponential input gate lets a new input outweigh everything stored (the LSTM's sigmoid gate
cannot: the paper's "revising storage decisions"); the normaliser keeps ``c / n`` a weighted
mean. ``exp`` overflows float32 from a pre-activation of 89, so the cell keeps the states
divided by ``exp(m_t)``, the stabiliser::

    m_t  = max(log f_t + m_{t-1}, i~_t)
    i'_t = exp(i~_t - m_t)                     both in (0, 1]
    f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t  = f'_t * c_{t-1} + i'_t * z_t,   n_t = f'_t * n_{t-1} + i'_t

which changes neither ``h_t`` (``c / n`` is scale-free) nor the gradients, and keeps
``n_t >= 1``: at every step ``i'_t = 1`` or ``f'_t = 1``. At the first step from the zero
state (``n_{t-1} = 0``) ``m_t = i~_t``, as the paper's reference code starts. ``i'``/``f'`` are the
gates ``gate_activations`` reports: what is actually applied to the stored state.

Heads: the units split into ``heads`` groups of ``units / heads``; each head's gates see only
its own part of ``h_{t-1}`` (the paper's block-diagonal ``R``, memory mixing within a head).
The input weights are dense, as in our LSTM.

Weights: ``kernel`` (input_dim, 4 units), ``recurrent_kernel`` (heads, units / heads,
4 units / heads), ``bias`` (4 units,), gates in the order i, f, z, o, each gate's units ordered
by head.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.layers.base import RecurrentCell, RecurrentLayer, cell_attribute, check_chrono

FORGET_GATES = ("sigmoid", "exponential")


def check_heads(units: int, heads: Any) -> int:
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or units % heads:
        raise ValueError(
            f"Argument `heads` must be a positive integer dividing units={units}, "
            f"got heads={heads!r}."
        )
    return heads


def check_forget_gate(forget_gate: Any) -> str:
    if forget_gate not in FORGET_GATES:
        raise ValueError(
            f"Argument `forget_gate` must be one of {', '.join(FORGET_GATES)}, "
            f"got forget_gate={forget_gate!r}."
        )
    return forget_gate


def log_forget(forget_preactivation: Any, forget_gate: str) -> Any:
    """``log f_t``: ``log sigmoid(f~)``, or ``f~`` itself for an exponential forget gate."""
    if forget_gate == "exponential":
        return forget_preactivation
    return ops.log_sigmoid(forget_preactivation)


def forget_bias(memory_times: Any, forget_gate: str) -> Any:
    """The forget bias whose gate keeps ``u / (1 + u)`` of the memory at every step, a memory
    of about ``u`` steps (Tallec & Ollivier 2018's chrono initialisation), for either gate."""
    if forget_gate == "exponential":
        return ops.log(memory_times / (1.0 + memory_times))
    return ops.log(memory_times)


@keras.saving.register_keras_serializable(package="forecast")
class sLSTMCell(RecurrentCell):
    """One sLSTM time step; use it in :class:`sLSTM` or in ``keras.layers.RNN``.

    Args:
        units: Size of the hidden state; a multiple of ``heads``.
        heads: Groups of units with their own recurrent weights (block-diagonal ``R``). 4.
        forget_gate: ``"sigmoid"`` (default) or ``"exponential"``.
        activation: Squashing of the candidate ``z`` (``tanh``).
        unit_forget_bias: Start the forget bias at 1 (as Keras' LSTM), when ``chrono_init`` is
            not set. True.
        chrono_init: ``T_max`` of the chrono initialisation of the forget bias: memory times
            ``u ~ U(1, T_max - 1)``, ``f = u / (1 + u)`` at the start. The input bias stays at
            its initializer's: a constant input bias cancels in ``c / n``. None.
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed: as in
            :class:`forecast.layers.LSTMCell`.
    """

    activation_names = (
        "forget",
        "input",
        "candidate",
        "output",
        "cell",
        "normalizer",
        "stabilizer",
        "hidden",
    )

    def __init__(
        self,
        units: int,
        heads: int = 4,
        forget_gate: str = "sigmoid",
        activation: Any = "tanh",
        unit_forget_bias: bool = True,
        chrono_init: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, **kwargs)
        self.heads = check_heads(self.units, heads)
        self.forget_gate = check_forget_gate(forget_gate)
        self.activation = keras.activations.get(activation)
        self.unit_forget_bias = unit_forget_bias
        self.chrono_init = check_chrono(chrono_init, self.use_bias)
        self.head_units = self.units // self.heads
        # h, c, n, m: the stored c, n are divided by exp(m), the stabiliser.
        self.state_size = [self.units] * 4
        self.output_size = self.units

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_kernel("kernel", (input_shape[-1], 4 * self.units))
        self.recurrent_kernel = self.add_kernel(
            "recurrent_kernel", (self.heads, self.head_units, 4 * self.head_units)
        )
        self.bias = self.add_bias((4 * self.units,), self._initial_bias) if self.use_bias else None
        self.built = True

    def _initial_bias(self, shape: tuple, dtype: Any = None) -> Any:
        i, f, z, o = ops.split(self.bias_initializer(shape, dtype=dtype), 4)
        if self.chrono_init is not None:
            memory_times = keras.random.uniform(
                (self.units,), 1.0, self.chrono_init - 1.0, dtype=dtype, seed=self.seed
            )
            f = forget_bias(memory_times, self.forget_gate)
        elif self.unit_forget_bias:
            f = ops.ones((self.units,), dtype=dtype)
        return ops.concatenate([i, f, z, o])

    def recurrent_part(self, h_in: Any) -> Any:
        """``R h_{t-1}`` with block-diagonal ``R``: (batch, units) -> (batch, 4 units), laid
        out as the kernel's gates (i, f, z, o), each gate's units by head."""
        # One matmul with R spelled out as a dense (units, 4 units) matrix, zeros off the
        # blocks: per head (reshape, einsum, transpose, reshape) trained 1.3-2x slower at 64
        # units and 420 steps on 2 CPU cores, the step's extra ops costing more than the zeros.
        d, heads = self.head_units, self.heads
        blocks = ops.reshape(self.recurrent_kernel, (heads, d, 4, d))
        dense = ops.einsum("higj,hk->higkj", blocks, ops.eye(heads, dtype=blocks.dtype))
        return ops.matmul(h_in, ops.reshape(dense, (self.units, 4 * self.units)))

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        h_prev, c_prev, n_prev, m_prev = states
        h_in = h_prev if state_mask is None else h_prev * state_mask
        z_i, z_f, z_z, z_o = ops.split(projected + self.recurrent_part(h_in), 4, axis=-1)

        # n = 0 only in the zero state, before the first write: nothing to forget there, so
        # log f + m is -inf and m_t = i~_t (not 0 + ..., whose f' could overflow).
        log_f_plus_m = ops.where(
            n_prev == 0.0, float("-inf"), log_forget(z_f, self.forget_gate) + m_prev
        )
        stabilizer = ops.maximum(log_f_plus_m, z_i)
        input_gate = ops.exp(z_i - stabilizer)
        forget = ops.exp(log_f_plus_m - stabilizer)
        candidate = self.activation(z_z)
        output = ops.sigmoid(z_o)
        cell = forget * c_prev + input_gate * candidate
        normalizer = forget * n_prev + input_gate
        hidden = output * cell / normalizer

        activations = {
            "forget": forget,
            "input": input_gate,
            "candidate": candidate,
            "output": output,
            "cell": cell,
            "normalizer": normalizer,
            "stabilizer": stabilizer,
            "hidden": hidden,
        }
        return hidden, [hidden, cell, normalizer, stabilizer], activations

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "heads": self.heads,
            "forget_gate": self.forget_gate,
            "activation": keras.activations.serialize(self.activation),
            "unit_forget_bias": self.unit_forget_bias,
            "chrono_init": self.chrono_init,
        }


@keras.saving.register_keras_serializable(package="forecast")
class sLSTM(RecurrentLayer):
    """sLSTM layer over (batch, time, features) inputs (see the module docstring).

    Takes every argument of :class:`sLSTMCell`, and those of ``keras.layers.RNN``:
    ``return_sequences``, ``return_state`` (the states are h, c, n, m), ``go_backwards``,
    ``stateful``, ``unroll``; and ``activity_regularizer``.

    ``layer.gate_activations(inputs)`` returns the stabilised forget and input gates
    (``f'``, ``i'``), the candidate, the output gate, the cell state, the normaliser, the
    stabiliser and the hidden state at every step, as numpy arrays (batch, time, units).

    Example::

        model = keras.Sequential([keras.Input((None, 1)), sLSTM(32, heads=4, chrono_init=200),
                                  keras.layers.Dense(1)])
    """

    heads = cell_attribute("heads")
    forget_gate = cell_attribute("forget_gate")
    unit_forget_bias = cell_attribute("unit_forget_bias")
    chrono_init = cell_attribute("chrono_init")

    def __init__(
        self,
        units: int,
        heads: int = 4,
        forget_gate: str = "sigmoid",
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        chrono_init: float | None = None,
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
        cell = sLSTMCell(
            units,
            heads=heads,
            forget_gate=forget_gate,
            activation=activation,
            unit_forget_bias=unit_forget_bias,
            chrono_init=chrono_init,
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
            name="slstm_cell",
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
