"""The MLflow pyfunc model of a trained forecast model, logged as code ("models from code").

MLflow copies this file into every logged model and runs it when the model is loaded, so no
pickled object is involved and the loader needs nothing but MLflow: the model's own copy of
the ``forecast`` package (logged beside it) registers the custom layers.
"""

import mlflow
import numpy as np


class KerasForecaster(mlflow.pyfunc.PythonModel):
    """Predicts with the logged ``.keras`` file, in the model's own units."""

    def load_context(self, context):
        import keras

        import forecast.layers  # noqa: F401  (registers our layers with Keras)

        self.model = keras.saving.load_model(context.artifacts["keras_model"])

    # No type hints on purpose: MLflow would read them as an input schema and warn.
    def predict(self, context, model_input, params=None):
        return self.model.predict(np.asarray(model_input, dtype="float32"), verbose=0)


mlflow.models.set_model(KerasForecaster())
