"""forecast: Keras experiments that show why LSTMs bridge long gaps that vanilla RNNs cannot.

``forecast.layers`` holds the recurrent layers; ``forecast run NAME`` (or
``make experiment NAME=...``) runs a named experiment from ``experiments/`` and logs it to
MLflow. See the README for the tour.
"""
