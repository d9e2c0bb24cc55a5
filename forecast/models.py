"""Models: a recurrent layer from ``forecast.layers`` followed by a linear read-out."""

from __future__ import annotations

import math

import keras

from forecast import layers

RECURRENT_LAYERS = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}


def build_model(
    layer: str,
    units: int,
    input_shape: tuple[int, int],
    output_shape: tuple[int, ...],
    **options: object,
) -> keras.Model:
    """``Input -> layer(units, **options) -> Dense`` shaped to ``output_shape``, uncompiled.

    ``output_shape`` is one target's shape: ``(outputs,)`` or ``(horizon, targets)``.

    Raises:
        ValueError: for an unknown ``layer`` name or options the layer does not take.
    """
    if layer not in RECURRENT_LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {sorted(RECURRENT_LAYERS)}")
    try:
        recurrent = RECURRENT_LAYERS[layer](units, **options)
    except TypeError as error:
        raise ValueError(f"layer {layer}: {error}") from None
    stack = [keras.Input(shape=input_shape), recurrent, keras.layers.Dense(math.prod(output_shape))]
    if len(output_shape) > 1:
        stack.append(keras.layers.Reshape(output_shape))
    return keras.Sequential(stack, name=layer.lower())
