"""Keras' own RNN tests, run against our layers: the drop-in claim, checked by Keras' test code.

The installed keras wheel ships its test modules (``keras/src/layers/rnn/lstm_test.py``,
``gru_test.py``, ``simple_rnn_test.py``). We import them rather than copy them, so their
expected values stay Keras' own and follow each Keras upgrade. Each test class is subclassed
here, and, for the duration of each test, the name ``layers`` that Keras' module reads
(``from keras.src import layers``, then ``layers.LSTM(...)``) is replaced by a view of
``keras.src.layers`` in which ``LSTM``, ``GRU`` and ``SimpleRNN`` are ours. Only that module's
lookups change: Keras' internals keep their own layers.

pytest collects the subclasses as unittest classes, so Keras' own marks (``skipif`` on the
backend, ``xfail`` on GPU) and absl's parameterized cases apply as they do in Keras' suite.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Any

import pytest

import forecast.layers

KERAS_TEST_PACKAGE = "keras.src.layers.rnn"
# Keras' test module, the class in it, and the names our layers replace in it.
SUITES = {
    "lstm_test": ("LSTMTest", {"LSTM": forecast.layers.LSTM}),
    "gru_test": ("GRUTest", {"GRU": forecast.layers.GRU}),
    "simple_rnn_test": ("SimpleRNNTest", {"SimpleRNN": forecast.layers.SimpleRNN}),
}


def import_keras_test(module_name: str) -> types.ModuleType:
    """Keras' shipped test module, or skip this file: some builds of the wheel strip tests."""
    name = f"{KERAS_TEST_PACKAGE}.{module_name}"
    if importlib.util.find_spec(name) is None:
        pytest.skip(
            f"the installed keras wheel has no {name} (its tests were not shipped)",
            allow_module_level=True,
        )
    return importlib.import_module(name)


class LayersWithOurs(types.ModuleType):
    """``keras.src.layers`` as Keras' test module sees it, with some of its layers ours."""

    def __init__(self, keras_layers: types.ModuleType, ours: dict[str, type]) -> None:
        super().__init__(keras_layers.__name__)
        self._keras_layers = keras_layers
        self.__dict__.update(ours)

    def __getattr__(self, name: str) -> Any:  # only called for names not replaced
        return getattr(self._keras_layers, name)


def swap_in_ours(module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until ``monkeypatch`` undoes it, Keras' test ``module`` builds our layers."""
    _, ours = SUITES[module.__name__.rsplit(".", 1)[1]]
    keras_layers = importlib.import_module("keras.src.layers")
    monkeypatch.setattr(module, "layers", LayersWithOurs(keras_layers, ours))


def against_ours(module_name: str) -> type:
    """Keras' test class of ``module_name``, run with our layers in place of Keras'."""
    module = import_keras_test(module_name)
    keras_class = getattr(module, SUITES[module_name][0])

    @pytest.fixture(autouse=True)
    def swap_layers(self: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        swap_in_ours(module, monkeypatch)

    # A new class, not Keras' own bound to a name here: pytest collects every unittest class
    # it finds in this module's namespace, and Keras' class would run with Keras' layers.
    name = "Test" + keras_class.__name__.removesuffix("Test")
    return type(name, (keras_class,), {"swap_layers": swap_layers})


TestLSTM = against_ours("lstm_test")
TestGRU = against_ours("gru_test")
TestSimpleRNN = against_ours("simple_rnn_test")


@pytest.mark.parametrize("module_name", list(SUITES))
def test_the_swap_reaches_keras_tests(module_name: str) -> None:
    """Keras' classes hold tests (not none, should an upgrade rename things), and during a
    test the layer their module builds is ours, while the module's other layers stay Keras'."""
    module = import_keras_test(module_name)
    class_name, ours = SUITES[module_name]
    names = [name for name in dir(getattr(module, class_name)) if name.startswith("test_")]
    assert "test_basics" in names and any(n.startswith("test_correctness") for n in names)
    keras_layers = importlib.import_module("keras.src.layers")
    with pytest.MonkeyPatch.context() as monkeypatch:
        swap_in_ours(module, monkeypatch)
        for name, layer in ours.items():
            assert getattr(module.layers, name) is layer
        assert module.layers.Dense is keras_layers.Dense
    assert module.layers is keras_layers
