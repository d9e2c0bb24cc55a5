"""``KerasForecaster``: an MLflow ``PythonModel`` around a saved ``.keras`` model.

It lives in its own module, imported once per process, because MLflow inspects each new
``PythonModel`` subclass and warns about ``predict``'s missing type hints every time one is
defined; hints cannot describe our (batch, time, features) input, the logged signature does.
"""

import pickle

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


class KerasForecaster(mlflow.pyfunc.PythonModel):
    """Predicts with the logged ``.keras`` file: from input windows, in the model's own units;
    or, for a model of a series (logged with its ``transform``), from a DataFrame of the
    series' latest rows, returning the next rows in original units."""

    def load_context(self, context):
        import keras

        import forecast.layers  # noqa: F401  (registers our layers with Keras)
        from forecast.imports import public_objects

        # A user's layers and cells: their modules travel in the model's code folder, which
        # MLflow puts on the path before this runs.
        modules = (context.model_config or {}).get("user_modules", [])
        # Not compiled: predicting needs no loss (ours, the pinball loss, is not registered).
        self.model = keras.saving.load_model(
            context.artifacts["keras_model"], custom_objects=public_objects(modules), compile=False
        )
        # Trace the prediction step now, at load time (a served model: when the server starts),
        # not in the first request.
        self.model.predict_on_batch(np.zeros((1, *self.model.input_shape[1:]), "float32"))
        self.transform = None  # a forecast.data.SeriesTransform, for a series' model
        if "transform" in context.artifacts:
            with open(context.artifacts["transform"], "rb") as file:
                self.transform = pickle.load(file)

    def predict(self, context, model_input, params=None):
        if self.transform is None:
            return self.model.predict_on_batch(np.asarray(model_input, dtype="float32"))
        from forecast.data import DataError

        try:
            window = self.transform.model_input(model_input)
        except DataError as error:
            raise BadInput(str(error)) from None
        # predict_on_batch runs the traced prediction step on the one batch; predict() would
        # set up a dataset and its iterator every call, most of a small forecast's time.
        outputs = np.asarray(self.model.predict_on_batch(window))
        return self.transform.forecast_frame(outputs, model_input)


class BadInput(MlflowException):
    """Rows a series' model cannot forecast from. Loaded with ``mlflow.pyfunc.load_model``,
    it raises with our one-line message; served by ``mlflow models serve``, the request
    answers 400 with that line as its ``message``."""

    def __init__(self, message: str) -> None:
        self._reason = message
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        # MLflow's scoring server prefixes the whole request's data to an error's message
        # (mlflow.pyfunc.scoring_server.invocations); the reason alone is what a caller reads.
        pass
