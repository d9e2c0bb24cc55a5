"""Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

One time step, as :class:`LSTMCell` computes it (sigma is ``recurrent_activation``, tanh is
``activation``; ``*`` is elementwise)::

    f_t  = sigma(W_f x_t + U_f h_{t-1} + b_f)      forget gate: how much of C_{t-1} to keep
    i_t  = sigma(W_i x_t + U_i h_{t-1} + b_i)      input gate: how much of C~_t to write
    C~_t = tanh(W_c x_t + U_c h_{t-1} + b_c)       candidate values
    C_t  = f_t * C_{t-1} + i_t * C~_t              cell state: the additive memory path
    o_t  = sigma(W_o x_t + U_o h_{t-1} + b_o)      output gate
    h_t  = o_t * tanh(C_t)                         hidden state and output

Because ``C_t`` depends on ``C_{t-1}`` through a product with ``f_t`` only, the gradient along
the cell state is scaled by the forget gates, not squashed by a Jacobian at every step: with
``f_t`` near 1 it survives hundreds of steps (the "constant error carousel").

Weights follow ``keras.layers.LSTM``: ``kernel`` (input_dim, 4 units), ``recurrent_kernel``
(units, 4 units), ``bias`` (4 units,), gates in the order i, f, c, o, so that
``ours.set_weights(keras_lstm.get_weights())`` computes what the Keras layer computes.

Variants, each off by default:

- ``peephole=True`` (Gers & Schmidhuber 2000, "Recurrent nets that time and count"): the input
  and forget gates also see ``C_{t-1}`` and the output gate sees ``C_t``, through diagonal
  weights ``p_i, p_f, p_o``: ``i_t = sigma(... + p_i * C_{t-1})``, and so on. Extra weight
  ``peephole_kernel`` (3, units), rows i, f, o; zeros at first, so training starts from the
  standard LSTM.
- ``coupled_gates=True`` (CIFG in Greff et al. 2017, "LSTM: A Search Space Odyssey"): no input
  gate; ``i_t = 1 - f_t``, so the cell writes exactly as much as it forgets. Kernels then hold
  three gates, (input_dim, 3 units) and (units, 3 units), in the order f, c, o.
- ``chrono_init=T_max`` (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"):
  ``b_f = log(u)`` with ``u ~ U(1, T_max - 1)`` and ``b_i = -b_f``, which spreads the forget
  gates' memory times between 1 and about ``T_max`` steps; use it when dependencies span about
  ``T_max`` steps.

On CPU with the TensorFlow backend and up to ``FUSED_MAX_UNITS`` units, :class:`LSTM` runs the
whole sequence as one TensorFlow kernel (``BlockLSTM``) where it computes exactly what the step
loop would: sigmoid gates, tanh, no mask, no recurrent dropout, no coupled gates. Small layers
are where the loop's cost per step, not its arithmetic, sets the pace; from 64 units on the
kernel lost to the loop on some shapes, so there the loop runs (measured in
docs/performance.md, "The fused LSTM kernel"). XLA has no such kernel: under
``jit_compile=True`` the loop runs too. ``fused=False`` always runs the loop.
``BlockLSTMV2``, the kernel with our gate order, is not used: in TensorFlow 2.21 its gradient
comes back in the other kernel's gate order (measured against the step loop).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.layers.base import RecurrentCell, RecurrentLayer, cell_attribute, check_chrono

FUSED_MAX_UNITS = 32  # the largest layer that runs as one kernel; see the module docstring


def compiling_with_xla() -> bool:
    """Whether the function now being traced will be compiled by XLA, which has no
    ``BlockLSTM``: ``compile(jit_compile=True)``, or ``tf.function(jit_compile=True)`` here or
    in any enclosing function.

    Asked at trace time, when the layer picks its kernel, because that is the one place that
    sees every road to XLA; a layer option or the model's ``jit_compile`` would miss a user's
    own ``tf.function(jit_compile=True)``, and ``tf.config.optimizer.get_jit()`` is only the
    global auto-clustering switch (which leaves ``BlockLSTM`` out of its clusters anyway).
    TensorFlow has no public call for it: ``tf.function(jit_compile=True)`` traces inside an
    XLA control-flow context, and this is TensorFlow's own test for one (the one ``tf.function``
    uses to tell nested compilation apart).
    """
    import tensorflow as tf

    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:  # moved in a later TensorFlow: run the step loop, which XLA compiles
        return True
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@keras.saving.register_keras_serializable(package="forecast")
class LSTMCell(RecurrentCell):
    """One LSTM time step; use it in :class:`LSTM` or in ``keras.layers.RNN``.

    Args:
        units: Size of the hidden state ``h`` and of the cell state ``C``.
        activation: Squashing of the candidate and of the cell output (``tanh``).
        recurrent_activation: Gate activation (``sigmoid``).
        use_bias: Whether the gates have biases.
        kernel_initializer, recurrent_initializer, bias_initializer: Initializers of ``kernel``
            (input weights), ``recurrent_kernel`` and ``bias``.
        unit_forget_bias: Start the forget-gate bias at 1 (Jozefowicz et al. 2015), so the
            cell remembers by default. Ignored with ``chrono_init``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Weight regularizers.
        kernel_constraint, recurrent_constraint, bias_constraint: Weight constraints.
        dropout: Drop probability of the inputs; one mask for all time steps.
        recurrent_dropout: Drop probability of ``h_{t-1}`` in the recurrent matmul; one mask
            for all time steps (Gal & Ghahramani 2016).
        seed: Seed of the dropout masks and of ``chrono_init``.
        peephole: Add peephole connections (see the module docstring).
        peephole_initializer: Initializer of ``peephole_kernel`` (zeros).
        coupled_gates: Couple the input gate to the forget gate, ``i_t = 1 - f_t``.
        chrono_init: ``T_max`` of the chrono initialisation of the gate biases, or None.
        implementation: Accepted for compatibility with Keras and ignored. In Keras it picks
            one matmul per gate (1) or one for all gates (2), which compute the same; we always
            do the latter. As in Keras, it is kept on the cell and left out of the config.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        peephole: bool = False,
        peephole_initializer: Any = "zeros",
        coupled_gates: bool = False,
        chrono_init: float | None = None,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            units,
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
            **kwargs,
        )
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias
        self.peephole = peephole
        self.peephole_initializer = keras.initializers.get(peephole_initializer)
        self.coupled_gates = coupled_gates
        self.chrono_init = check_chrono(chrono_init, use_bias)
        self.implementation = implementation
        self.gate_count = 3 if coupled_gates else 4
        self.state_size = [self.units, self.units]
        self.output_size = self.units

    activation_names = ("forget", "input", "candidate", "output", "cell", "hidden")

    def build(self, input_shape: tuple) -> None:
        width = self.gate_count * self.units
        self.kernel = self.add_kernel("kernel", (input_shape[-1], width))
        self.recurrent_kernel = self.add_kernel("recurrent_kernel", (self.units, width))
        self.bias = self.add_bias((width,), self._initial_bias) if self.use_bias else None
        self.peephole_kernel = None
        if self.peephole:
            self.peephole_kernel = self.add_weight(
                shape=(3, self.units), name="peephole_kernel", initializer=self.peephole_initializer
            )
        self.built = True

    def _initial_bias(self, shape: tuple, dtype: Any = None) -> Any:
        blocks = dict(
            zip(
                self._gate_order(),
                ops.split(self.bias_initializer(shape, dtype=dtype), self.gate_count),
                strict=True,
            )
        )
        if self.chrono_init is not None:
            memory_times = keras.random.uniform(
                (self.units,), 1.0, self.chrono_init - 1.0, dtype=dtype, seed=self.seed
            )
            blocks["f"] = ops.log(memory_times)
            if "i" in blocks:
                blocks["i"] = -blocks["f"]
        elif self.unit_forget_bias:
            blocks["f"] = ops.ones((self.units,), dtype=dtype)
        return ops.concatenate([blocks[gate] for gate in self._gate_order()])

    def _gate_order(self) -> tuple[str, ...]:
        return ("f", "c", "o") if self.coupled_gates else ("i", "f", "c", "o")

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        h_prev, c_prev = states
        h_in = h_prev if state_mask is None else h_prev * state_mask
        z = projected + ops.matmul(h_in, self.recurrent_kernel)
        if self.coupled_gates:
            z_f, z_c, z_o = ops.split(z, 3, axis=-1)
        else:
            z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        if self.peephole:
            p_i, p_f, p_o = (
                self.peephole_kernel[0],
                self.peephole_kernel[1],
                self.peephole_kernel[2],
            )
            z_f = z_f + p_f * c_prev
            if not self.coupled_gates:
                z_i = z_i + p_i * c_prev

        forget = self.recurrent_activation(z_f)
        input_gate = 1.0 - forget if self.coupled_gates else self.recurrent_activation(z_i)
        candidate = self.activation(z_c)
        cell = forget * c_prev + input_gate * candidate
        if self.peephole:
            z_o = z_o + p_o * cell
        output = self.recurrent_activation(z_o)
        hidden = output * self.activation(cell)

        activations = {
            "forget": forget,
            "input": input_gate,
            "candidate": candidate,
            "output": output,
            "cell": cell,
            "hidden": hidden,
        }
        return hidden, [hidden, cell], activations

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
            "peephole": self.peephole,
            "peephole_initializer": keras.initializers.serialize(self.peephole_initializer),
            "coupled_gates": self.coupled_gates,
            "chrono_init": self.chrono_init,
        }


@keras.saving.register_keras_serializable(package="forecast")
class LSTM(RecurrentLayer):
    """LSTM layer over (batch, time, features) inputs; a drop-in for ``keras.layers.LSTM``.

    Takes every argument of :class:`LSTMCell`, and those of ``keras.layers.RNN``:
    ``return_sequences``, ``return_state``, ``go_backwards``, ``stateful`` (reset with
    ``reset_state()``), ``unroll``; and ``activity_regularizer``. Call it as Keras' LSTM:
    ``layer(inputs, mask=None, training=None, initial_state=None)``.

    ``layer.gate_activations(inputs)`` returns the forget, input, candidate and output gates,
    the cell state and the hidden state at every step, as numpy arrays (batch, time, units).

    ``fused`` (default True): on CPU with the TensorFlow backend and up to ``FUSED_MAX_UNITS``
    units, run the sequence as one TensorFlow kernel where it computes what the step loop
    computes (see the module docstring); results agree with the loop's to float rounding.
    Under XLA (``compile(jit_compile=True)``) the loop runs, since XLA has no such kernel.
    False: always the loop.

    Example::

        model = keras.Sequential([keras.Input((None, 1)), LSTM(32, chrono_init=200),
                                  keras.layers.Dense(1)])
    """

    recurrent_activation = cell_attribute("recurrent_activation")
    unit_forget_bias = cell_attribute("unit_forget_bias")

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
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
        peephole: bool = False,
        peephole_initializer: Any = "zeros",
        coupled_gates: bool = False,
        chrono_init: float | None = None,
        fused: bool = True,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        self.fused = fused
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            peephole=peephole,
            peephole_initializer=peephole_initializer,
            coupled_gates=coupled_gates,
            chrono_init=chrono_init,
            implementation=implementation,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
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

    def inner_loop(self, sequences: Any, initial_state: list, mask: Any, training: bool = False):
        if not self._can_fuse(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training)
        return self._fused_loop(sequences, initial_state, training)

    def _can_fuse(self, sequences: Any, mask: Any, training: bool) -> bool:
        """Whether ``BlockLSTM`` computes what the step loop would, at a size and on a device
        where it pays (on a GPU, cuDNN and XLA are the fast paths; XLA cannot compile it)."""
        cell = self.cell
        if not self.fused or keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        return (
            cell.units <= FUSED_MAX_UNITS
            and mask is None
            and not self.go_backwards
            and not self.unroll
            and not cell.coupled_gates
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and not (training and cell.recurrent_dropout > 0)
            and sequences.dtype in (tf.float32, tf.float16)
            and not tf.config.list_logical_devices("GPU")
            and not compiling_with_xla()
        )

    def _fused_loop(self, sequences: Any, initial_state: list, training: bool) -> tuple:
        """The step loop's ``(last_output, outputs, states)``, from one ``BlockLSTM`` kernel."""
        import tensorflow as tf

        cell = self.cell
        input_mask = cell.input_mask(sequences[:, 0, :], training)  # one mask for all steps
        if input_mask is not None:
            sequences = sequences * ops.expand_dims(input_mask, 1)

        def icfo(weights: Any) -> Any:  # BlockLSTM's gate order, from ours (i, f, c, o)
            i, f, c, o = tf.split(weights, 4, axis=-1)
            return tf.concat([i, c, f, o], axis=-1)

        dtype = sequences.dtype
        weights = icfo(tf.concat([cell.kernel, cell.recurrent_kernel], axis=0))
        bias = icfo(cell.bias) if cell.use_bias else tf.zeros((4 * cell.units,), dtype)
        if cell.peephole:  # rows i, f, o; BlockLSTM's peepholes are ours, step for step
            peep_i, peep_f, peep_o = tf.unstack(tf.convert_to_tensor(cell.peephole_kernel))
        else:
            peep_i = peep_f = peep_o = tf.zeros((cell.units,), dtype)
        h_prev, c_prev = initial_state

        def run_kernel() -> tuple:
            _, cells, _, _, _, _, hidden = tf.raw_ops.BlockLSTM(
                seq_len_max=tf.cast(tf.shape(sequences)[1], tf.int64),
                x=tf.transpose(sequences, [1, 0, 2]),  # time-major
                cs_prev=c_prev,
                h_prev=h_prev,
                w=weights,
                wci=peep_i,
                wcf=peep_f,
                wco=peep_o,
                b=bias,
                forget_bias=0.0,  # the bias holds ours (unit_forget_bias, chrono_init)
                cell_clip=-1.0,  # no clipping
                use_peephole=cell.peephole,
            )
            last = hidden[-1]
            outputs = tf.transpose(hidden, [1, 0, 2]) if self.return_sequences else last[:, None]
            return last, outputs, cells[-1]

        def empty_batch() -> tuple:
            steps = tf.shape(sequences)[1] if self.return_sequences else 1
            return h_prev, tf.zeros([0, steps, cell.units], dtype), c_prev

        # On an empty batch (a replica's share of a short last batch under tf.distribute) the
        # kernel's weight gradients are uninitialised memory (measured: 1e35), not zeros.
        last, outputs, last_cell = tf.cond(tf.shape(sequences)[0] > 0, run_kernel, empty_batch)
        return last, outputs, [last, last_cell]

    def get_config(self) -> dict:
        return {**super().get_config(), "fused": self.fused}
