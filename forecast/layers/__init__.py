"""Recurrent Keras layers with their equations written out: drop-ins for Keras' own.

``LSTM`` (with peephole, coupled-gate and chrono-initialised variants), ``GRU`` and the vanilla
``SimpleRNN`` take the arguments and weights of ``keras.layers.LSTM``, ``GRU`` and
``SimpleRNN``, save to ``.keras`` files, and expose their gates through
``layer.gate_activations(inputs)``.

``sLSTM`` and ``mLSTM`` are the LSTM's successors from xLSTM (Beck et al. 2024): exponential
gating with a normaliser and a stabiliser, block-diagonal recurrence over heads (sLSTM), and a
matrix memory with no recurrence on the output, computed in parallel over time (mLSTM).
"""

from forecast.layers.gru import GRU, GRUCell
from forecast.layers.lstm import LSTM, LSTMCell
from forecast.layers.mlstm import mLSTM, mLSTMCell
from forecast.layers.simple_rnn import SimpleRNN, SimpleRNNCell
from forecast.layers.slstm import sLSTM, sLSTMCell

__all__ = [
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "mLSTM",
    "mLSTMCell",
    "sLSTM",
    "sLSTMCell",
]
