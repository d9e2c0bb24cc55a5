"""mLSTM: the matrix-memory LSTM of xLSTM (Beck et al. 2024, arXiv:2405.04517, section 2.3).

Each of ``heads`` heads stores a (d, d) matrix, d = ``units / heads``, written with the
covariance (outer-product) rule and read with a query, as an associative memory. One time step,
per head, as :class:`mLSTMCell` computes it (``*`` elementwise, ``k^T`` a row)::

    q_t = W_q x_t + b_q,   k_t = (W_k x_t + b_k) / sqrt(d),   v_t = W_v x_t + b_v
    i_t = exp(i~_t),   i~_t = w_i x_t + b_i              input gate, a scalar per head
    f_t = sigmoid(f~_t)  or  exp(f~_t)                   forget gate, a scalar per head
    o_t = sigmoid(W_o x_t + b_o)                         output gate, per unit
    C_t = f_t C_{t-1} + i_t v_t k_t^T                    matrix memory: stores v under key k
    n_t = f_t n_{t-1} + i_t k_t                          normaliser: the keys' weighted sum
    h_t = o_t * C_t q_t / max(|n_t . q_t|, 1)            read v back with query q

Nothing depends on ``h_{t-1}``: the gates and q, k, v see only the input, so the whole sequence
can be computed at once (the parallel form below). As in :mod:`forecast.layers.slstm`, the
states are kept divided by ``exp(m_t)``, ``m_t = max(log f_t + m_{t-1}, i~_t)``, with
``i'_t = exp(i~_t - m_t)`` and ``f'_t = exp(log f_t + m_{t-1} - m_t)``, both in (0, 1]; the
read-out's floor of 1 becomes ``exp(-m_t)``, so ``h_t`` is unchanged (the paper's reference
code does the same, but for the zero state: see :func:`empty_memory`).

Parallel form: unrolled, ``C_t q_t = sum_j D_tj (q_t . k_j) v_j`` with
``log D_tj = log f_{j+1} + ... + log f_t + i~_j`` for ``j <= t`` (and a term for the initial
state), so one (time, time) matrix per head gives every step; its row maxima are exactly the
recurrent ``m_t``, so both forms compute the same states. Its cost grows with time squared, so
:class:`mLSTM` runs it chunkwise, as the paper's kernels do: ``chunk_size`` steps at once, each
chunk starting from the last one's states: faster than the step loop in training on the CPU,
slower in one chunk over a long sequence (``make bench-layers``; docs/performance.md).

``conv_width=w`` adds the causal convolution of the paper's mLSTM block (its Figure 11; our
layers have no block around the cell): q and k read ``silu(sum_j c_j * x_{t-j} + c_b)``,
j = 0 .. w - 1, a per-feature filter over the last w inputs, instead of ``x_t``, so a key can
be written together with the token after it; v and the gates still read ``x_t``. Without it the
mLSTM sees one input at a time and binds neighbouring tokens only through a layer below it.

Weights: ``kernel`` (input_dim, 4 units + 2 heads) and ``bias`` (4 units + 2 heads,), in the
order q, k, v, o (``units`` each, by head), then the input and forget pre-activations (one per
head); with ``conv_width``, ``conv_kernel`` (w, input_dim), row j weighing ``x_{t-j}``, and
``conv_bias`` (input_dim,). No recurrent weights.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from forecast.layers.base import RecurrentCell, RecurrentLayer, cell_attribute, check_chrono
from forecast.layers.slstm import (
    check_forget_gate,
    check_heads,
    forget_bias,
    log_forget,
)

EPSILON = 1e-6  # keeps the read-out finite where exp(-m_t) underflows


def empty_memory(normalizer: Any) -> Any:
    """Per head, whether nothing is stored yet (the zero state): (batch, heads, d) -> (batch,
    heads). Its stabiliser, 0, would count as a stored weight of ``exp(0)``: the first write's
    ``i'`` would be ``exp(i~ - max(log f, i~))``, which underflows float32 where the true ``h``
    is finite. So nothing is forgotten there (``log f + m = -inf``) and ``m_t = i~_t``."""
    return ops.all(normalizer == 0.0, axis=-1)


@keras.saving.register_keras_serializable(package="forecast")
class mLSTMCell(RecurrentCell):
    """One mLSTM time step; use it in :class:`mLSTM` or in ``keras.layers.RNN``.

    States: the matrix memory C (flattened, heads x d x d), the normaliser n (units) and the
    stabiliser m (heads), C and n divided by ``exp(m)``.

    Args:
        units: Size of the output, ``heads`` x d; a multiple of ``heads``.
        heads: Memories, each (d, d). 4.
        forget_gate: ``"sigmoid"`` (default) or ``"exponential"``.
        chrono_init: ``T_max`` of a chrono initialisation of the forget biases (one per head,
            memory times ``u ~ U(1, T_max - 1)``, ``f = u / (1 + u)`` at the start). None: the
            xLSTM reference code's, spread evenly from 3 to 6 over the heads (``f`` from 0.95
            to 0.998).
        conv_width: Width of a causal convolution over the inputs that q and k read (see the
            module docstring); 0, the default: none. The convolution's last ``conv_width - 1``
            inputs are a fourth state, sized when the cell is built: use it in :class:`mLSTM`,
            since ``keras.layers.RNN`` reads its cell's state sizes before that.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint, dropout, seed: as in
            :class:`forecast.layers.LSTMCell`; ``dropout`` drops inputs, one mask for all steps.
            No recurrent weights, so no recurrent dropout.
    """

    activation_names = ("forget", "input", "output", "normalizer", "stabilizer", "hidden")

    def __init__(
        self,
        units: int,
        heads: int = 4,
        forget_gate: str = "sigmoid",
        chrono_init: float | None = None,
        conv_width: int = 0,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        is_width = isinstance(conv_width, int) and not isinstance(conv_width, bool)
        if not is_width or conv_width < 0 or conv_width == 1:
            raise ValueError(
                "Argument `conv_width` must be 0 (no convolution) or a width of at least 2 "
                f"steps, got conv_width={conv_width!r}."
            )
        super().__init__(
            units,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            seed=seed,
            **kwargs,
        )
        self.heads = check_heads(self.units, heads)
        self.forget_gate = check_forget_gate(forget_gate)
        self.chrono_init = check_chrono(chrono_init, self.use_bias)
        self.head_units = self.units // self.heads
        self.conv_width = conv_width
        self.state_size = [self.heads * self.head_units**2, self.units, self.heads]
        self.output_size = self.units

    def build(self, input_shape: tuple) -> None:
        features = input_shape[-1]
        width = 4 * self.units + 2 * self.heads
        self.kernel = self.add_kernel("kernel", (features, width))
        self.bias = self.add_bias((width,), self._initial_bias) if self.use_bias else None
        self.conv_kernel = self.conv_bias = None
        if self.conv_width:
            self.conv_kernel = self.add_kernel("conv_kernel", (self.conv_width, features))
            self.conv_bias = self.add_weight(
                shape=(features,), name="conv_bias", initializer="zeros"
            )
            # The last conv_width - 1 inputs, oldest first: a state, as the memory is.
            self.state_size = [*self.state_size, (self.conv_width - 1) * features]
        self.built = True

    def project_inputs(self, inputs: Any, dropout_mask: Any = None) -> Any:
        """``x W + b``; with a convolution, followed by ``x`` itself, which :meth:`step` needs
        for the convolution's window."""
        if dropout_mask is not None:
            inputs = inputs * dropout_mask
        projected = super().project_inputs(inputs)
        return ops.concatenate([projected, inputs], axis=-1) if self.conv_width else projected

    def convolved_query_and_key(self, projected: Any, window: Any) -> Any:
        """``projected`` (..., 4 units + 2 heads) with q and k read from the convolution of
        ``window`` (..., conv_width, features), oldest input first, instead of the input."""
        flipped = ops.flip(self.conv_kernel, axis=0)  # row i of the window is x_{t - (w-1-i)}
        features = ops.silu(ops.sum(window * flipped, axis=-2) + self.conv_bias)
        query_key = ops.matmul(features, self.kernel[:, : 2 * self.units])
        if self.use_bias:
            query_key = query_key + self.bias[: 2 * self.units]
        return ops.concatenate([query_key, projected[..., 2 * self.units :]], axis=-1)

    def _initial_bias(self, shape: tuple, dtype: Any = None) -> Any:
        qkvo, input_bias, _ = ops.split(
            self.bias_initializer(shape, dtype=dtype), [4 * self.units, 4 * self.units + self.heads]
        )
        if self.chrono_init is not None:
            memory_times = keras.random.uniform(
                (self.heads,), 1.0, self.chrono_init - 1.0, dtype=dtype, seed=self.seed
            )
            forget = forget_bias(memory_times, self.forget_gate)
        else:
            forget = ops.linspace(3.0, 6.0, self.heads, dtype=dtype)
            if self.forget_gate == "exponential":  # the same f as the sigmoid gate's
                forget = ops.log_sigmoid(forget)
        return ops.concatenate([qkvo, input_bias, forget])

    def split_projection(self, projected: Any) -> tuple:
        """``q, k, v, o~, i~, f~`` from projected inputs (..., 4 units + 2 heads): q, k, v,
        o~ shaped (..., heads, d), k already divided by sqrt(d); i~, f~ (..., heads)."""
        u, h = self.units, self.heads
        q, k, v, o, i, f = ops.split(projected, [u, 2 * u, 3 * u, 4 * u, 4 * u + h], axis=-1)
        per_head = (-1, *ops.shape(projected)[1:-1], h, self.head_units)
        q, k, v, o = (ops.reshape(part, per_head) for part in (q, k, v, o))
        return q, k / math.sqrt(self.head_units), v, o, i, f

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        memory_prev, n_prev, m_prev, *past_inputs = states
        if self.conv_width and not past_inputs:
            raise ValueError(
                f"mLSTMCell(conv_width={self.conv_width}) keeps its last inputs as a state sized "
                "when it is built, which keras.layers.RNN reads earlier: use "
                "forecast.layers.mLSTM(..., conv_width=...) instead"
            )
        if self.conv_width:
            projected, inputs = ops.split(projected, [4 * self.units + 2 * self.heads], axis=-1)
            features = ops.shape(inputs)[-1]
            past = ops.reshape(past_inputs[0], (-1, self.conv_width - 1, features))
            window = ops.concatenate([past, inputs[:, None]], axis=1)  # oldest first
            projected = self.convolved_query_and_key(projected, window)
            past_inputs = [ops.reshape(window[:, 1:], (-1, (self.conv_width - 1) * features))]
        q, k, v, z_o, z_i, z_f = self.split_projection(projected)
        d = self.head_units
        memory_prev = ops.reshape(memory_prev, (-1, self.heads, d, d))
        n_prev = ops.reshape(n_prev, (-1, self.heads, d))

        log_f_plus_m = ops.where(  # (batch, heads); see empty_memory
            empty_memory(n_prev), float("-inf"), log_forget(z_f, self.forget_gate) + m_prev
        )
        stabilizer = ops.maximum(log_f_plus_m, z_i)
        input_gate = ops.exp(z_i - stabilizer)
        forget = ops.exp(log_f_plus_m - stabilizer)
        write = v[..., :, None] * k[..., None, :]  # v k^T: (batch, heads, d, d)
        memory = forget[..., None, None] * memory_prev + input_gate[..., None, None] * write
        normalizer = forget[..., None] * n_prev + input_gate[..., None] * k
        read = ops.einsum("bhij,bhj->bhi", memory, q)  # C q
        scale = ops.maximum(ops.abs(ops.sum(normalizer * q, axis=-1)), ops.exp(-stabilizer))
        output = ops.sigmoid(z_o)
        hidden = ops.reshape(output * read / (scale[..., None] + EPSILON), (-1, self.units))

        def by_unit(per_head: Any) -> Any:  # a head's scalar, repeated over its units
            return ops.reshape(ops.repeat(per_head[..., None], d, axis=-1), (-1, self.units))

        activations = {
            "forget": by_unit(forget),
            "input": by_unit(input_gate),
            "output": ops.reshape(output, (-1, self.units)),
            "normalizer": ops.reshape(normalizer, (-1, self.units)),
            "stabilizer": by_unit(stabilizer),
            "hidden": hidden,
        }
        states = [ops.reshape(memory, (-1, self.heads * d * d)), activations["normalizer"]]
        return hidden, [*states, stabilizer, *past_inputs], activations

    def get_config(self) -> dict:
        config = super().get_config()
        for unused in ("recurrent_initializer", "recurrent_regularizer", "recurrent_constraint"):
            del config[unused]
        del config["recurrent_dropout"]
        return {
            **config,
            "heads": self.heads,
            "forget_gate": self.forget_gate,
            "chrono_init": self.chrono_init,
            "conv_width": self.conv_width,
        }


@keras.saving.register_keras_serializable(package="forecast")
class mLSTM(RecurrentLayer):
    """mLSTM layer over (batch, time, features) inputs (see the module docstring).

    Takes every argument of :class:`mLSTMCell`, and those of ``keras.layers.RNN``:
    ``return_sequences``, ``return_state`` (the states are C, n, m), ``go_backwards``,
    ``stateful``, ``unroll``; and ``activity_regularizer``.

    ``parallel`` (default True): compute the sequence in the parallel form, ``chunk_size``
    steps at a time (see the module docstring), holding a (batch, heads, chunk_size,
    chunk_size) matrix; False, or with a mask, ``go_backwards`` or an unknown number of time
    steps: the step loop. Both give the same outputs and states.

    ``layer.gate_activations(inputs)`` returns the stabilised forget and input gates (a head's
    value on each of its units), the output gate, the normaliser, the stabiliser and the
    output at every step, as numpy arrays (batch, time, units).

    Example::

        model = keras.Sequential([keras.Input((None, 1)), mLSTM(32, heads=4),
                                  keras.layers.Dense(1)])
    """

    activation = None  # Keras' layers name their squashing; the mLSTM has none
    recurrent_initializer = recurrent_regularizer = recurrent_constraint = None
    recurrent_dropout = 0.0
    heads = cell_attribute("heads")
    forget_gate = cell_attribute("forget_gate")
    chrono_init = cell_attribute("chrono_init")
    conv_width = cell_attribute("conv_width")

    def __init__(
        self,
        units: int,
        heads: int = 4,
        forget_gate: str = "sigmoid",
        chrono_init: float | None = None,
        conv_width: int = 0,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        parallel: bool = True,
        chunk_size: int = 32,
        **kwargs: Any,
    ) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(
                f"Argument `chunk_size` must be a positive integer, got chunk_size={chunk_size!r}."
            )
        self.parallel = parallel
        self.chunk_size = chunk_size
        cell = mLSTMCell(
            units,
            heads=heads,
            forget_gate=forget_gate,
            chrono_init=chrono_init,
            conv_width=conv_width,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="mlstm_cell",
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

    def build(self, sequences_shape: tuple, initial_state_shape: Any = None) -> None:
        super().build(sequences_shape, initial_state_shape)
        # keras.layers.RNN reads its cell's state sizes when it is made; the convolution's
        # state is known once the cell has seen the input's width.
        self.state_size = list(self.cell.state_size)

    def inner_loop(self, sequences: Any, initial_state: list, mask: Any, training: bool = False):
        time = sequences.shape[1]
        if not self.parallel or time is None or mask is not None or self.go_backwards:
            return super().inner_loop(sequences, initial_state, mask, training)
        cell = self.cell
        input_mask = cell.input_mask(sequences[:, 0, :], training)  # one mask for all steps
        if input_mask is not None:
            sequences = sequences * ops.expand_dims(input_mask, 1)
        projected = ops.matmul(sequences, cell.kernel)
        if cell.use_bias:
            projected = ops.add(projected, cell.bias)
        states, past_inputs = list(initial_state[:3]), []
        if cell.conv_width:  # each step's window of inputs, the state's earlier ones first
            features = sequences.shape[-1]
            past = ops.reshape(initial_state[3], (-1, cell.conv_width - 1, features))
            padded = ops.concatenate([past, sequences], axis=1)
            windows = ops.stack(
                [padded[:, start : start + time] for start in range(cell.conv_width)], axis=2
            )  # (batch, time, conv_width, features)
            projected = cell.convolved_query_and_key(projected, windows)
            past_inputs = [ops.reshape(padded[:, time:], (-1, (cell.conv_width - 1) * features))]
        outputs = []
        for start in range(0, time, self.chunk_size):  # a Python loop: `time` is known here
            chunk, states = self.parallel_form(
                projected[:, start : start + self.chunk_size], states
            )
            outputs.append(chunk)
        outputs = ops.concatenate(outputs, axis=1) if len(outputs) > 1 else outputs[0]
        last = outputs[:, -1]
        return last, outputs if self.return_sequences else last[:, None], states + past_inputs

    def parallel_form(self, projected: Any, initial_state: list) -> tuple[Any, list]:
        """Outputs (batch, time, units) and last states of the steps whose projected inputs
        are ``projected`` (batch, time, 4 units + 2 heads), from ``initial_state``, all at once:
        what the step loop computes."""
        cell = self.cell
        q, k, v, z_o, z_i, z_f = cell.split_projection(projected)  # (batch, time, heads, ...)
        q, k, v = (ops.transpose(part, (0, 2, 1, 3)) for part in (q, k, v))  # heads first
        z_i, z_f = ops.transpose(z_i, (0, 2, 1)), ops.transpose(z_f, (0, 2, 1))
        d, time = cell.head_units, projected.shape[1]
        memory_0 = ops.reshape(initial_state[0], (-1, cell.heads, d, d))
        n_0, m_0 = ops.reshape(initial_state[1], (-1, cell.heads, d)), initial_state[2]
        # log f_1 + ... + log f_t, per head: (batch, heads, time)
        log_f_sum = ops.cumsum(log_forget(z_f, cell.forget_gate), axis=-1)
        # log D_tj = log f_{j+1} + ... + log f_t + i~_j for j <= t: (batch, heads, time, time)
        log_decay = log_f_sum[..., :, None] - log_f_sum[..., None, :] + z_i[..., None, :]
        causal = ops.tril(ops.ones((time, time), dtype="bool"))
        log_decay = ops.where(causal, log_decay, float("-inf"))
        # the initial state's weight at each t; see empty_memory
        log_decay_0 = ops.where(
            empty_memory(n_0)[..., None], float("-inf"), log_f_sum + m_0[..., None]
        )
        stabilizer = ops.maximum(ops.max(log_decay, axis=-1), log_decay_0)  # the recurrent m_t
        decay = ops.exp(log_decay - stabilizer[..., None])
        decay_0 = ops.exp(log_decay_0 - stabilizer)

        weights = ops.einsum("bhtd,bhsd->bhts", q, k) * decay  # D_tj (q_t . k_j)
        read = ops.einsum("bhts,bhsd->bhtd", weights, v)
        read += decay_0[..., None] * ops.einsum("bhij,bhtj->bhti", memory_0, q)
        q_dot_n = ops.sum(weights, axis=-1) + decay_0 * ops.einsum("bhd,bhtd->bht", n_0, q)
        scale = ops.maximum(ops.abs(q_dot_n), ops.exp(-stabilizer))
        read = ops.transpose(read / (scale[..., None] + EPSILON), (0, 2, 1, 3))
        outputs = ops.reshape(ops.sigmoid(z_o) * read, (-1, time, cell.units))

        # The last step's states, as the loop would leave them.
        last_decay, last_decay_0 = decay[..., -1, :], decay_0[..., -1]  # (b, h, time), (b, h)
        memory = ops.einsum("bhs,bhsi,bhsj->bhij", last_decay, v, k)
        memory += last_decay_0[..., None, None] * memory_0
        normalizer = ops.einsum("bhs,bhsd->bhd", last_decay, k) + last_decay_0[..., None] * n_0
        states = [
            ops.reshape(memory, (-1, cell.heads * d * d)),
            ops.reshape(normalizer, (-1, cell.units)),
            stabilizer[..., -1],
        ]
        return outputs, states

    def get_config(self) -> dict:
        return {**super().get_config(), "parallel": self.parallel, "chunk_size": self.chunk_size}
