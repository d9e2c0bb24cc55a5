"""Models: a stack of recurrent layers followed by a linear read-out.

The recurrent layer is a class of ``forecast.layers`` by name (``LSTM``, ``GRU``,
``SimpleRNN``, ``sLSTM``, ``mLSTM``) or any class by import path (``keras.layers:LSTM``,
``my_cells:IndRNNCell``): a Keras layer is called as ``Name(units, **options)``; a Keras RNN
cell (a layer with a ``state_size``) is wrapped in ``keras.layers.RNN``. A ``builder``
function makes any other model instead.
"""

from __future__ import annotations

import math

import keras

from forecast import layers
from forecast.config import ModelConfig
from forecast.imports import import_object, is_import_path, public_objects, resolve

RECURRENT_LAYERS = {
    "SimpleRNN": layers.SimpleRNN,
    "LSTM": layers.LSTM,
    "GRU": layers.GRU,
    "sLSTM": layers.sLSTM,
    "mLSTM": layers.mLSTM,
}


def layer_class(layer: str) -> type:
    """The class ``layer`` names: a name of ``forecast.layers`` or an import path.

    Raises:
        ValueError: an unknown name, an import path that does not import, or a class that is
            not a Keras layer.
    """
    found = resolve(layer, RECURRENT_LAYERS, "layer")
    if not (isinstance(found, type) and issubclass(found, keras.layers.Layer)):
        raise ValueError(f"{layer} is neither a Keras layer nor a Keras RNN cell class")
    return found


def build_model(
    layer: str,
    units: int,
    input_shape: tuple[int, int],
    output_shape: tuple[int, ...],
    depth: int = 1,
    builder: str | None = None,
    per_step: bool = False,
    future_steps: int = 0,
    static_columns: int = 0,
    series_count: int = 0,
    series_embedding: int = 0,
    **options: object,
) -> keras.Model:
    """``Input -> depth x layer(units, **options) -> Dense`` shaped to ``output_shape``,
    uncompiled; every recurrent layer but the last returns its whole sequence.

    ``output_shape`` is one sample's output shape: ``(outputs,)``, ``(horizon, targets)``, or
    ``(steps, classes)`` for a categorical task. ``per_step``: the last layer returns its whole
    sequence too and the ``Dense`` reads out each step, so ``output_shape`` is
    ``(time, outputs)``: a label for every input step. With a
    ``builder`` (``package.module:function``), the model is
    ``function(input_shape, output_shape, **options)`` instead, for anything that is not a
    recurrent stack (a TCN, a Transformer, two branches).

    ``future_steps`` > 0: the input's last ``future_steps`` rows are the horizon's future-known
    covariates, after the input window (see :mod:`forecast.data.covariates`; a builder gets
    them in its ``input_shape`` the same way). The stack reads the input window; the horizon's
    rows, flattened, join its last state before the ``Dense`` read-out, which so weighs each
    target step's covariates for each output: as good as an encoder-decoder or better, with
    a third of its weights (measured in docs/results.md, "Future-known covariates"). So the
    read-out, not a decoder.

    ``static_columns`` > 0 or ``series_count`` > 0: each input row ends with a panel's
    per-series columns (see :mod:`forecast.data.panels`): ``static_columns`` static covariates,
    then, with ``series_count``, the series' index among that many, which a learned
    ``series_embedding``-dimensional embedding reads. They are cropped off the window's rows
    and, taken from the first row, given to the stack beside the window at every step (as
    neuralforecast's RNN takes ``stat_exog``) and to the read-out beside the last state: a
    linear read-out alone can only add a per-series offset, while a series' attribute often
    changes its dynamics (measured in docs/results.md, "Static covariates and series
    identity"). Not the initial state: it would need a projection per layer and per state shape
    (an LSTM's two), for any layer or cell a user names. A builder gets these columns in its
    ``input_shape`` the same way.

    Raises:
        ValueError: for an unknown ``layer`` or ``builder``, options they do not take, a class
            that is neither a Keras layer nor a cell, or a builder whose model does not fit
            the shapes.
    """
    if builder is not None:
        return _built_by(builder, input_shape, output_shape, options)
    cls = layer_class(layer)
    if future_steps or static_columns or series_count:
        return _with_extras(
            cls,
            layer,
            units,
            input_shape,
            output_shape,
            depth,
            options,
            future_steps,
            static_columns,
            series_count,
            series_embedding,
        )
    stack = [keras.Input(shape=input_shape)]
    try:
        # A cell (a layer with a `state_size`, not itself an RNN) computes one step.
        probe = cls(units, **options)
        is_cell = hasattr(probe, "state_size") and not isinstance(probe, keras.layers.RNN)
        for index in range(depth):
            sequences = {"return_sequences": True} if per_step or index < depth - 1 else {}
            if is_cell:
                stack.append(keras.layers.RNN(cls(units, **options), **sequences))
            else:
                stack.append(cls(units, **sequences, **options))
    except TypeError as error:
        raise ValueError(f"layer {layer}: {error}") from None
    if per_step:  # Dense on a sequence maps each step's state to that step's outputs
        if output_shape[:1] != input_shape[:1]:
            raise ValueError(
                f"a per-step read-out needs {input_shape[0]} steps of outputs, not {output_shape}"
            )
        stack.append(keras.layers.Dense(output_shape[-1]))
    else:
        stack.append(keras.layers.Dense(math.prod(output_shape)))
    if len(output_shape) > 1 and not per_step:
        stack.append(keras.layers.Reshape(output_shape))
    name = layer.rpartition(":")[2] if is_import_path(layer) else layer
    return keras.Sequential(stack, name=name.lower())


def _with_extras(
    cls: type,
    layer: str,
    units: int,
    input_shape: tuple[int, int],
    output_shape: tuple[int, ...],
    depth: int,
    options: dict[str, object],
    future_steps: int,
    static_columns: int,
    series_count: int,
    series_embedding: int,
) -> keras.Model:
    """:func:`build_model`'s model for windows followed by the horizon's covariates, or whose
    rows end with a panel's per-series columns, or both."""
    inputs = keras.Input(shape=input_shape)
    columns = input_shape[1] - static_columns - (1 if series_count else 0)
    rows = inputs[:, :, :columns]  # (time, columns): what varies along the series
    fixed = inputs[:, 0, columns:]  # (statics [+ index],): constant over the window
    width = input_shape[0] - future_steps
    window = rows[:, :width]  # (input_width, columns)
    per_series = []  # (statics,) and (series_embedding,): what is fixed for the series
    if static_columns:
        per_series.append(fixed[:, :static_columns])
    if series_count:
        if series_embedding < 1:
            raise ValueError("a series index needs an embedding dimension >= 1")
        embedded = keras.layers.Embedding(series_count, series_embedding, name="series")
        per_series.append(embedded(fixed[:, static_columns]))
    state = window
    if per_series:  # read at every step too: see build_model's docstring
        series = per_series[0] if len(per_series) == 1 else keras.layers.Concatenate()(per_series)
        beside = keras.layers.RepeatVector(width)(series)  # (input_width, fixed)
        state = keras.layers.Concatenate()([window, beside])
    try:
        probe = cls(units, **options)
        is_cell = hasattr(probe, "state_size") and not isinstance(probe, keras.layers.RNN)
        for index in range(depth):
            sequences = {"return_sequences": True} if index < depth - 1 else {}
            recurrent = (
                keras.layers.RNN(cls(units, **options), **sequences)
                if is_cell
                else cls(units, **sequences, **options)
            )
            state = recurrent(state)
    except TypeError as error:
        raise ValueError(f"layer {layer}: {error}") from None
    known = [state]
    if future_steps:
        # Each output weighs every target step's covariates directly (the measurement is in
        # build_model's docstring).
        known.append(keras.layers.Flatten()(rows[:, width:]))
    known += per_series
    joined = keras.layers.Concatenate()(known)
    outputs = keras.layers.Dense(math.prod(output_shape))(joined)
    outputs = keras.layers.Reshape(output_shape)(outputs)
    name = layer.rpartition(":")[2] if is_import_path(layer) else layer
    return keras.Model(inputs, outputs, name=name.lower())


def build_configured(
    model: ModelConfig,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    per_step: bool = False,
    future_steps: int = 0,
    static_columns: int = 0,
    series_count: int = 0,
    series_embedding: int = 0,
) -> keras.Model:
    """:func:`build_model` for one entry of an experiment's ``models``; ``future_steps``: the
    horizon's covariate rows after the input window; ``static_columns``, ``series_count``:
    a panel's per-series columns at the end of each row, the index read by a
    ``series_embedding``-dimensional embedding (see :func:`build_model`)."""
    return build_model(
        model.layer,
        model.units,
        input_shape,
        output_shape,
        model.depth,
        model.builder,
        per_step,
        future_steps,
        static_columns,
        series_count,
        series_embedding,
        **model.options,
    )


def _built_by(
    builder: str,
    input_shape: tuple[int, int],
    output_shape: tuple[int, ...],
    options: dict[str, object],
) -> keras.Model:
    try:
        function = import_object(builder)
    except ImportError as error:
        raise ValueError(str(error)) from None
    try:
        model = function(tuple(input_shape), tuple(output_shape), **options)
    except TypeError as error:
        raise ValueError(f"builder {builder}: {error}") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"builder {builder} returned {type(model).__name__}, not a keras.Model")
    expected = (None, *input_shape), (None, *output_shape)
    if (tuple(model.input_shape), tuple(model.output_shape)) != expected:
        raise ValueError(
            f"builder {builder} made a model from {model.input_shape} to {model.output_shape}; "
            f"expected {expected[0]} to {expected[1]}"
        )
    return model


# Packages whose objects Keras finds by itself when it loads a saved model.
KNOWN_PACKAGES = ("keras", "forecast", "builtins")


def user_modules(model: keras.Model) -> list[str]:
    """The modules, other than Keras' and ours, whose classes or functions ``model``'s config
    names (a user's layer, cell, activation or initializer): what a saved copy needs to load."""
    return _modules_named(keras.saving.serialize_keras_object(model))


def _modules_named(serialized: dict) -> list[str]:
    found = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("module"), str) and "class_name" in value:
                found.add(value["module"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(serialized)
    return sorted(name for name in found if name.partition(".")[0] not in KNOWN_PACKAGES)


def check_saveable(model: keras.Model) -> None:
    """Round-trip ``model`` through its Keras config, as logging it and loading it back do.

    Raises:
        ValueError: one line naming the problem, e.g. a layer without ``get_config``.
    """
    try:
        serialized = keras.saving.serialize_keras_object(model)
        custom_objects = public_objects(_modules_named(serialized))
        keras.saving.deserialize_keras_object(serialized, custom_objects=custom_objects)
    except Exception as error:  # Keras raises several types, with messages over many lines
        # Keras wraps the cause in one "could not be deserialized" per level of the model.
        cause = str(error).split("Exception encountered:")[-1].strip().split("\n\n")[0]
        reason = " ".join(f"{type(error).__name__}: {cause}".split())[:240]
        raise ValueError(f"cannot be saved and loaded again: {reason}") from None
