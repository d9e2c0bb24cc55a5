"""MLflow ``PythonModel``s around a saved ``.keras`` model: :class:`WindowForecaster` for a
task's model, :class:`SeriesForecaster` for a series' model (logged with its transform), and
:class:`EnsembleForecaster` for a series model's seeds combined.

They live in their own module, imported once per process, because MLflow inspects each new
``PythonModel`` subclass as it is defined. Their ``predict`` hints name what MLflow hands them:
an array for a model logged with a tensor signature (a task's windows), a DataFrame for a
series' model (its rows, as a JSON or CSV request gives them). MLflow infers no schema from
either hint; the logged signature holds a task's shapes and a series' output columns.
"""

import os
import pickle
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModelContext


def _load_keras(path: str, modules: list[str]) -> Any:
    """A saved ``.keras`` model made of our layers or a user's (``modules``), its prediction
    step traced now (a served model: when the server starts), not in the first request."""
    # Before TensorFlow is first imported in this process (a user's notebook, a model
    # server): its C++ start-up lines and kernel warnings are not the caller's business.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from forecast.parallel import native_start_up_filtered

    with native_start_up_filtered():
        import keras

    import forecast.layers  # noqa: F401  (registers our layers with Keras)
    from forecast.imports import public_objects

    # A user's layers and cells: their modules travel in the model's code folder, which
    # MLflow puts on the path before this runs. Not compiled: predicting needs no loss (ours,
    # the pinball loss, is not registered).
    model = keras.saving.load_model(path, custom_objects=public_objects(modules), compile=False)
    model.predict_on_batch(np.zeros((1, *model.input_shape[1:]), "float32"))
    return model


def _load_transform(path: str) -> Any:
    """A series model's pickled forecast.data.SeriesTransform (or PanelTransform)."""
    with open(path, "rb") as file:
        return pickle.load(file)


def _series_forecast(model: Any, transform: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """The next rows after ``rows``' last, from a series' ``model`` and its ``transform``."""
    from forecast.data import DataError

    try:
        window = transform.model_input(rows)
    except DataError as error:
        raise BadInput(str(error)) from None
    # predict_on_batch runs the traced prediction step on the one batch; predict() would set
    # up a dataset and its iterator every call, most of a small forecast's time.
    outputs = np.asarray(model.predict_on_batch(window))
    return transform.forecast_frame(outputs, rows)


class _KerasModel(mlflow.pyfunc.PythonModel):
    """Loads the logged ``.keras`` file, and a series' transform if there is one; forecasts
    from windows (no transform) or from a series' rows (with one)."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the model (its prediction step traced now, not in the first request) and the
        transform, if logged."""
        modules = (context.model_config or {}).get("user_modules", [])
        self.model = _load_keras(context.artifacts["keras_model"], modules)
        self.transform = None  # a forecast.data.SeriesTransform, for a series' model
        if "transform" in context.artifacts:
            self.transform = _load_transform(context.artifacts["transform"])

    def _forecast(self, model_input: Any) -> np.ndarray | pd.DataFrame:
        if self.transform is None:
            return self.model.predict_on_batch(np.asarray(model_input, dtype="float32"))
        return _series_forecast(self.model, self.transform, model_input)


class WindowForecaster(_KerasModel):
    """A task's model: predicts from input windows (batch, time, features), in the model's own
    units."""

    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """The model's outputs for each window."""
        return self._forecast(model_input)


class SeriesForecaster(_KerasModel):
    """A series' model: forecasts from a DataFrame of the series' latest rows, returning the
    next rows in original units."""

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """The next ``horizon`` rows after ``model_input``'s last."""
        return self._forecast(model_input)


class EnsembleForecaster(mlflow.pyfunc.PythonModel):
    """A series model's seeds as one forecaster, ``<model>_ensemble``: each seed's model with
    its own transform forecasts from the same rows, and their forecast rows are combined value
    by value (``combine``: mean or median), as :func:`forecast.evaluation.ensemble_forecasts`
    combines the seeds' test forecasts."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load every member's model and transform (``keras_model_<i>``, ``transform_<i>``)."""
        config = context.model_config or {}
        modules = config.get("user_modules", [])
        self.combine = np.median if config.get("combine") == "median" else np.mean
        self.members = [
            (
                _load_keras(context.artifacts[f"keras_model_{index}"], modules),
                _load_transform(context.artifacts[f"transform_{index}"]),
            )
            for index in range(int(config["members"]))
        ]

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """The next ``horizon`` rows after ``model_input``'s last: the members' combined."""
        frames = [_series_forecast(model, form, model_input) for model, form in self.members]
        combined = frames[0].copy()
        # The times and the count of filled values are the same in every member's rows.
        kept = {frames[0].columns[0], "filled_values"}
        values = [column for column in combined.columns if column not in kept]
        stacked = np.stack([frame[values].to_numpy(np.float64) for frame in frames])
        combined[values] = self.combine(stacked, axis=0)
        return combined


def forecaster(model_config: dict[str, Any]) -> mlflow.pyfunc.PythonModel:
    """The ``PythonModel`` for a logged model's ``model_config``: an ensemble's when it has
    ``members``, a series' when its ``inputs`` are ``rows``, else a task's. Each forecasts
    from what the model was logged for; the class only names it."""
    if "members" in model_config:
        return EnsembleForecaster()
    return SeriesForecaster() if model_config.get("inputs") == "rows" else WindowForecaster()


# The name under which models logged before the split load this module's class.
KerasForecaster = WindowForecaster


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
