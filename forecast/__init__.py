"""forecast: Keras experiments that show why LSTMs bridge long gaps that vanilla RNNs cannot.

``forecast.layers`` holds the recurrent layers; ``forecast.run`` runs an experiment and
returns its results as tables (``forecast.results.Results``), ``forecast.load`` rebuilds them
from MLflow; ``forecast run NAME`` (or ``make experiment NAME=...``) does it from the command
line. See the README for the tour.
"""

from forecast.api import load, run

__all__ = ["load", "run"]
