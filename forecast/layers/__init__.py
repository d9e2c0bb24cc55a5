"""Recurrent Keras layers with their equations written out: drop-ins for Keras' own.

``LSTM`` (with peephole, coupled-gate and chrono-initialised variants), ``GRU`` and the vanilla
``SimpleRNN`` take the arguments and weights of ``keras.layers.LSTM``, ``GRU`` and
``SimpleRNN``, save to ``.keras`` files, and expose their gates through
``layer.gate_activations(inputs)``.
"""

from forecast.layers.gru import GRU, GRUCell
from forecast.layers.lstm import LSTM, LSTMCell
from forecast.layers.simple_rnn import SimpleRNN, SimpleRNNCell

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "SimpleRNN", "SimpleRNNCell"]
