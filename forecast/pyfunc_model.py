"""The MLflow pyfunc model of a trained forecast model, logged as code ("models from code").

MLflow copies this file into every logged model and runs it when the model is loaded, so no
pickled object is involved; the model's own copy of the ``forecast`` package (logged beside
it) provides the class and registers the custom layers. The model's ``model_config`` (read
through ``ModelConfig``, as MLflow hands it to code models) says which class: a task's model or
a series'.
"""

import mlflow

from forecast.keras_pyfunc import forecaster

mlflow.models.set_model(forecaster(mlflow.models.ModelConfig().to_dict()))
