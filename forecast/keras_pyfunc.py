"""``KerasForecaster``: an MLflow ``PythonModel`` around a saved ``.keras`` model.

It lives in its own module, imported once per process, because MLflow inspects each new
``PythonModel`` subclass and warns about ``predict``'s missing type hints every time one is
defined; hints cannot describe our (batch, time, features) input, the logged signature does.
"""

import mlflow
import numpy as np


class KerasForecaster(mlflow.pyfunc.PythonModel):
    """Predicts with the logged ``.keras`` file, in the model's own units."""

    def load_context(self, context):
        import keras

        import forecast.layers  # noqa: F401  (registers our layers with Keras)

        self.model = keras.saving.load_model(context.artifacts["keras_model"])

    def predict(self, context, model_input, params=None):
        return self.model.predict(np.asarray(model_input, dtype="float32"), verbose=0)
