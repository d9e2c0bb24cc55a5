"""Recurrent Keras layers with their equations written out: drop-ins for Keras' own."""

from forecast.layers.lstm import LSTM, LSTMCell
from forecast.layers.simple_rnn import SimpleRNN, SimpleRNNCell

__all__ = ["LSTM", "LSTMCell", "SimpleRNN", "SimpleRNNCell"]
