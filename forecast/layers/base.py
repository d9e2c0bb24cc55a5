"""What our recurrent cells and layers share: weights, dropout masks, the time loop.

A cell splits one time step in two: ``project_inputs`` applies the input weights ``x W + b``,
and ``step`` does the recurrent part from that projection, returning, besides the output and
the new states, the named activations of the step (gates, cell state) that
:meth:`RecurrentLayer.gate_activations` exposes. ``call`` chains the two, so a cell also works
inside a plain ``keras.layers.RNN``.

Projecting all time steps at once before the loop (one large matmul) measured slower on CPU
than projecting inside the loop, at 1 and at 32 input features (TensorFlow 2.21): the wide
(batch, time, 4 units) projection costs more to materialise and transpose than the small
per-step matmuls it saves. So the loop projects step by step, as Keras does.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

# Keras' own LSTM/GRU/SimpleRNN are built on these two; our parity tests pin their behaviour.
from keras.src.backend import rnn as run_time_loop
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell


def check_units(units: Any) -> int:
    if not isinstance(units, int | np.integer) or isinstance(units, bool) or units <= 0:
        raise ValueError(f"Argument `units` must be a positive integer, got units={units!r}.")
    return int(units)


def check_chrono(chrono_init: Any, use_bias: bool) -> float | None:
    """``chrono_init``, T_max of a chrono initialisation of gate biases, checked."""
    if chrono_init is not None and not chrono_init > 2:
        raise ValueError(
            "Argument `chrono_init` is T_max, the longest memory in steps, and must be > 2; "
            f"got chrono_init={chrono_init!r}."
        )
    if chrono_init is not None and not use_bias:
        raise ValueError("Argument `chrono_init` sets gate biases and needs use_bias=True.")
    return chrono_init


def check_rate(name: str, rate: float) -> float:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Argument `{name}` is a drop probability in [0, 1), got {rate!r}.")
    return float(rate)


class RecurrentCell(DropoutRNNCell, keras.layers.Layer):
    """Base of our cells: the weight arguments of Keras' cells, and input/recurrent dropout.

    Subclasses set ``activation_names`` and implement ``build`` and ``step``; the default
    ``project_inputs`` suits a ``kernel`` and a one-row ``bias``.
    """

    activation_names: tuple[str, ...] = ()

    def __init__(
        self,
        units: int,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = check_units(units)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

    def add_kernel(self, name: str, shape: tuple, initializer: Any = None) -> keras.Variable:
        """A weight with the regularizer and constraint of ``kernel`` or ``recurrent_kernel``."""
        kind = "recurrent" if name.startswith("recurrent") else "kernel"
        return self.add_weight(
            shape=shape,
            name=name,
            initializer=initializer or getattr(self, f"{kind}_initializer"),
            regularizer=getattr(self, f"{kind}_regularizer"),
            constraint=getattr(self, f"{kind}_constraint"),
        )

    def add_bias(self, shape: tuple, initializer: Any = None) -> keras.Variable:
        return self.add_weight(
            shape=shape,
            name="bias",
            initializer=initializer or self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def input_mask(self, inputs: Any, training: bool) -> Any:
        """The input dropout mask of this call (one for all time steps), or None."""
        if training and self.dropout > 0:
            return self.get_dropout_mask(inputs)
        return None

    def state_mask(self, state: Any, training: bool) -> Any:
        """The recurrent dropout mask on the hidden state (Gal & Ghahramani 2016), or None."""
        if training and self.recurrent_dropout > 0:
            return self.get_recurrent_dropout_mask(state)
        return None

    def project_inputs(self, inputs: Any, dropout_mask: Any = None) -> Any:
        """``x W (+ b)`` for one step's inputs (batch, features), after input dropout."""
        if dropout_mask is not None:
            inputs = inputs * dropout_mask
        projected = ops.matmul(inputs, self.kernel)
        # ops.add, not `+`: it turns a 1-D bias into a BiasAdd, which TensorFlow fuses with the
        # MatMul on CPU; `+` (an AddV2) left SimpleRNN at 0.87-0.95x of Keras (make bench-layers).
        return ops.add(projected, self.bias) if self.use_bias else projected

    def step(self, projected: Any, states: list, state_mask: Any = None) -> tuple:
        """One time step from projected inputs: returns (output, new_states, activations)."""
        raise NotImplementedError

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, list]:
        states = list(states) if isinstance(states, list | tuple) else [states]
        projected = self.project_inputs(inputs, self.input_mask(inputs, training))
        output, new_states, _ = self.step(projected, states, self.state_mask(states[0], training))
        return output, new_states

    def get_config(self) -> dict:
        serialize = {
            "initializer": keras.initializers.serialize,
            "regularizer": keras.regularizers.serialize,
            "constraint": keras.constraints.serialize,
        }
        config = {"units": self.units, "use_bias": self.use_bias}
        for kind in ("kernel", "recurrent", "bias"):
            for part, to_config in serialize.items():
                config[f"{kind}_{part}"] = to_config(getattr(self, f"{kind}_{part}"))
        config.update(
            dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed
        )
        return {**super().get_config(), **config}


def cell_attribute(name: str) -> property:
    """A read-only layer attribute that is the cell's: Keras' LSTM, GRU and SimpleRNN expose
    their cell's arguments on the layer (``layer.dropout``), and code written for them reads
    them there. Read-only, as in Keras: the cell has already built its weights from them."""
    return property(
        lambda layer: getattr(layer.cell, name), doc=f"The cell's ``{name}`` (read-only)."
    )


class RecurrentLayer(keras.layers.RNN):
    """Base of our layers: the time loop over a :class:`RecurrentCell`, and inspection."""

    # The cell arguments that Keras' three layers all expose on the layer; each layer adds its
    # own (``recurrent_activation``, ``unit_forget_bias``, ``reset_after``).
    units = cell_attribute("units")
    activation = cell_attribute("activation")
    use_bias = cell_attribute("use_bias")
    kernel_initializer = cell_attribute("kernel_initializer")
    recurrent_initializer = cell_attribute("recurrent_initializer")
    bias_initializer = cell_attribute("bias_initializer")
    kernel_regularizer = cell_attribute("kernel_regularizer")
    recurrent_regularizer = cell_attribute("recurrent_regularizer")
    bias_regularizer = cell_attribute("bias_regularizer")
    kernel_constraint = cell_attribute("kernel_constraint")
    recurrent_constraint = cell_attribute("recurrent_constraint")
    bias_constraint = cell_attribute("bias_constraint")
    dropout = cell_attribute("dropout")
    recurrent_dropout = cell_attribute("recurrent_dropout")

    def __init__(self, cell: RecurrentCell, **kwargs: Any) -> None:
        super().__init__(cell, **kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def build(self, sequences_shape: tuple, initial_state_shape: Any = None) -> None:
        if self.unroll and sequences_shape[1] is None:
            raise ValueError(
                "Argument `unroll=True` needs a known number of time steps, but the input shape "
                f"is {tuple(sequences_shape)}; give keras.Input a fixed time length or use "
                "unroll=False."
            )
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences: Any, initial_state: list, mask: Any, training: bool = False):
        return self._run(sequences, initial_state, mask, training, self.return_sequences)

    def _run(
        self,
        sequences: Any,
        initial_state: list,
        mask: Any,
        training: bool,
        return_all_outputs: bool,
        with_activations: bool = False,
    ) -> tuple[Any, Any, list]:
        cell = self.cell
        input_mask = cell.input_mask(sequences[:, 0, :], training)
        state_mask = cell.state_mask(initial_state[0], training)

        def step(inputs_t: Any, states: list) -> tuple[Any, list]:
            projected = cell.project_inputs(inputs_t, input_mask)
            output, new_states, activations = cell.step(projected, list(states), state_mask)
            if with_activations:
                output = ops.concatenate([activations[n] for n in cell.activation_names], -1)
            return output, new_states

        return run_time_loop(
            step,
            sequences,
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=return_all_outputs,
        )

    def gate_activations(self, inputs: Any, initial_state: Any = None) -> dict[str, np.ndarray]:
        """Run the layer on ``inputs`` and return its internal activations per time step.

        Returns a dict of numpy arrays shaped (batch, time, units), keyed by the cell's
        ``activation_names`` (for an LSTM: ``forget``, ``input``, ``candidate``, ``output``,
        ``cell``, ``hidden``). Time runs in processing order (reversed if ``go_backwards``).
        Inference mode: no dropout. A stateful layer starts from, but does not update, its
        stored state.
        """
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if len(inputs.shape) != 3:
            raise ValueError(
                f"gate_activations expects (batch, time, features), got {inputs.shape}"
            )
        if not self.built:
            self.build(inputs.shape)
        if initial_state is None:
            initial_state = self.states if self.stateful else None
        if initial_state is None:
            initial_state = self.get_initial_state(ops.shape(inputs)[0])
        initial_state = [ops.convert_to_tensor(s) for s in keras.tree.flatten(initial_state)]
        _, sequence, _ = self._run(
            inputs, initial_state, None, False, return_all_outputs=True, with_activations=True
        )
        parts = np.split(ops.convert_to_numpy(sequence), len(self.cell.activation_names), -1)
        return dict(zip(self.cell.activation_names, parts, strict=True))

    def get_config(self) -> dict:
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        activity = keras.regularizers.serialize(self.activity_regularizer)
        return {**config, **cell_config, "activity_regularizer": activity}

    @classmethod
    def from_config(cls, config: dict) -> RecurrentLayer:
        return cls(**config)
