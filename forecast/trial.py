"""One trial, wherever it runs (this process, a worker process, a Ray task): its data, then
model -> train -> evaluate, recorded as an MLflow child run of the sweep's parent run."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

from forecast import plots, tracking
from forecast.config import DataConfig, ExperimentConfig, ModelConfig
from forecast.data import SeriesData, Splits, load_series, series_splits, synthetic_splits
from forecast.evaluation import gradient_flow, score, test_forecasts
from forecast.layers import LSTM
from forecast.models import build_model
from forecast.tasks import TASKS
from forecast.training import make_strategy, train

GRADIENT_PROBE = 128  # test samples whose input gradients trace the gradient flow
# A trial's fixed cost (building, evaluating, plotting) in time steps of sequence, for the
# ETA; fitted to sine_long_gap on a 2-core machine, where a trial takes ~4 s + 0.05 s a step.
TRIAL_OVERHEAD_STEPS = 80


@dataclass(frozen=True)
class Trial:
    """One unit of work: a model trained on one gap with one seed, at one sweep point."""

    config: ExperimentConfig  # resolved for the sweep point
    model: ModelConfig
    gap: int
    seed: int
    point: str = ""  # the sweep point's label, "" without a sweep

    @property
    def label(self) -> str:
        """The model's name in tables and plots: with its sweep point, if any."""
        return f"{self.model.name} [{self.point}]" if self.point else self.model.name

    @property
    def run_name(self) -> str:
        base = f"{self.model.name}-gap{self.gap}-seed{self.seed}"
        return f"{base} {self.point}" if self.point else base

    @functools.cached_property
    def digest(self) -> str:
        """Identifies the trial across invocations, for resuming: changes with any setting."""
        key = {"config": self.config.to_dict(), "model": self.model.name}
        text = json.dumps({**key, "gap": self.gap, "seed": self.seed}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def work(self) -> float:
        """Relative cost, for the ETA: sequence length plus a fixed overhead, times epochs."""
        length = self.gap + (self.config.data.input_width if self.config.data else 20)
        return (length + TRIAL_OVERHEAD_STEPS) * self.config.train.epochs


@dataclass(frozen=True)
class TrialContext:
    """Where a trial reports, picklable so that worker processes and Ray tasks get it."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    checkpoint_dir: str


@dataclass(frozen=True)
class TrialResult:
    row: dict  # the trial's line in the trials table
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"; empty if it failed
    failure: str | None = None


def execute_trial(trial: Trial, context: TrialContext) -> TrialResult:
    """Run one trial wherever it is called (this process, a worker, a Ray task) and record it
    as a child run of the sweep. A failure is recorded FAILED and returned, not raised, so the
    sweep goes on."""
    mlflow.set_tracking_uri(context.tracking_uri)
    mlflow.set_experiment(experiment_id=context.experiment_id)
    tf.get_logger().setLevel("ERROR")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    strategy = make_strategy(trial.config.train.strategy)  # one per process, reused
    splits, series = _trial_data(trial.config, trial.gap, trial.seed)
    name = f"{trial.model.name}-gap{trial.gap}-seed{trial.seed}-{trial.digest}"
    checkpoint = Path(context.checkpoint_dir) / name
    row = {"model": trial.label, "gap": trial.gap, "seed": trial.seed}
    try:
        outcome = _run_trial(trial, splits, series, context, checkpoint, strategy)
    except TrialFailed as failure:
        return TrialResult(_failed_row(row, failure.parameters), {}, str(failure))
    row = {**row, "params": outcome.parameters, **outcome.metrics}
    return TrialResult(row, outcome.flow)


_data_cache: dict[str, tuple[Splits, SeriesData | None]] = {}


def _trial_data(config: ExperimentConfig, gap: int, seed: int) -> tuple[Splits, SeriesData | None]:
    """The trial's splits; the models of one (data, gap, seed) share them within a process,
    and only the latest draw is kept."""
    section = config.data if config.data is not None else config.task
    key = json.dumps([dataclasses.asdict(section), gap, seed], sort_keys=True, default=str)
    if key not in _data_cache:
        _data_cache.clear()
        if config.data is not None:
            series = prepare_series(config.data)
            _data_cache[key] = (series.splits, series)
        else:
            _data_cache[key] = (_task_splits(config, gap, seed), None)
    return _data_cache[key]


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]
    parameters: int
    flow: dict[str, np.ndarray]  # gradient flow "at init" and "trained"


def _run_trial(
    trial: Trial,
    splits: Splits,
    series: SeriesData | None,
    context: TrialContext,
    checkpoint_dir: Path,
    strategy: tf.distribute.Strategy | None = None,
) -> TrialOutcome:
    """Build, train, evaluate and log one model as a child run of the sweep's parent run.

    Raises:
        TrialFailed: training could not finish (a NaN loss) or the trial raised; the run is
            recorded FAILED with the reason.
    """
    config, model_config, gap, seed = trial.config, trial.model, trial.gap, trial.seed
    keras.backend.clear_session()  # drop the previous trial's graphs and functions
    keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(
            model_config.layer,
            model_config.units,
            splits.input_shape,
            splits.output_shape,
            **model_config.options,
        )
    source = data_source(config)
    params = {
        "model": model_config.name,
        "layer": model_config.layer,
        "units": model_config.units,
        "gap": gap,
        "seed": seed,
        "parameters": model.count_params(),
        "source": source,
        "n_train": len(splits.x_train),
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "clipnorm": config.train.clipnorm,
        "variant": _variant(model_config.options),
    }
    if trial.point:
        params["sweep_point"] = trial.point
    probe = (splits.x_test[:GRADIENT_PROBE], splits.y_test[:GRADIENT_PROBE])
    flow_at_init = gradient_flow(model, *probe)
    with tracking.child_run(
        trial.run_name, params, config.to_dict(), context.parent_run_id, trial.digest
    ):
        try:
            metrics, flow = _train_and_evaluate(
                model, trial, splits, series, flow_at_init, probe, checkpoint_dir, strategy
            )
        except TrialFailed:
            raise
        except Exception as error:  # one bad trial ends only itself; child_run records it
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            raise TrialFailed(reason, params["parameters"]) from error
    return TrialOutcome(metrics, params["parameters"], flow)


def _train_and_evaluate(
    model: keras.Model,
    trial: Trial,
    splits: Splits,
    series: SeriesData | None,
    flow_at_init: np.ndarray,
    probe: tuple[np.ndarray, np.ndarray],
    checkpoint_dir: Path,
    strategy: tf.distribute.Strategy | None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The body of a trial's run: data, training, test metrics, model and figures."""
    config, gap, seed = trial.config, trial.gap, trial.seed
    source = data_source(config)
    tracking.log_dataset(splits.x_train, splits.y_train, source, f"{source}-gap{gap}-seed{seed}")
    result = train(
        model,
        splits,
        config.train,
        seed,
        callbacks=[tracking.EpochMetricsLogger()],
        checkpoint_dir=checkpoint_dir,
        strategy=strategy,
    )
    if result.failure is not None:
        raise TrialFailed(result.failure, model.count_params())
    predictions, truth = test_forecasts(model, splits, series.to_original_units if series else None)
    naive = series.naive_forecasts if series else {}
    metrics = score(predictions, truth, splits.y_train, config.solved_ratio, naive)
    metrics["train_seconds"] = result.seconds
    tracking.log_metrics(metrics)
    if config.log_models:
        tracking.log_model(model, splits.x_test)
    flow = {"at init": flow_at_init, "trained": gradient_flow(model, *probe)}
    _log_trial_figures(model, splits, gap, flow, predictions, truth, naive)
    return metrics, flow


def _log_trial_figures(
    model: keras.Model,
    splits: Splits,
    gap: int,
    flow: dict[str, np.ndarray],
    predictions: np.ndarray,
    truth: np.ndarray,
    naive: dict[str, np.ndarray],
) -> None:
    """Gradient flow, test forecasts and, for an LSTM, its gates, on the active run."""
    tracking.log_figure(plots.gradient_flow(flow), "gradient_flow.png")
    baselines = naive or {"mean": splits.y_train.mean(axis=0, keepdims=True)}
    tracking.log_figure(plots.forecast(truth, predictions, baselines), "forecast.png")
    recurrent = model.layers[0]
    if isinstance(recurrent, LSTM):
        activations = recurrent.gate_activations(splits.x_test[:1])  # plots.gates shows one
        tracking.log_figure(plots.gates(activations, gap), "gates.png")


def data_source(config: ExperimentConfig) -> str:
    """What the data comes from: the task's name or the series' source."""
    return config.task.name if config.task is not None else config.data.source


def _variant(options: dict) -> str:
    """The layer options as one readable param, e.g. ``chrono_init=400`` or ``standard``."""
    return ",".join(f"{key}={value}" for key, value in sorted(options.items())) or "standard"


class TrialFailed(RuntimeError):
    """A trial that could not produce a model, such as one whose loss became NaN."""

    def __init__(self, reason: str, parameters: int) -> None:
        super().__init__(reason)
        self.parameters = parameters


def _failed_row(row: dict, parameters: int) -> dict:
    nan = float("nan")
    return {
        **row,
        "params": parameters,
        "test_mse": nan,
        "mse_ratio": nan,
        "solved": 0.0,
        "train_seconds": nan,
    }


def prepare_series(data: DataConfig) -> SeriesData:
    """Load, validate, split, scale and window the series of a ``data`` config section."""
    columns = None
    if data.feature_columns is not None or data.target_columns is not None:
        columns = list(dict.fromkeys([*(data.feature_columns or []), *(data.target_columns or [])]))
    frame = load_series(data.source, data.time_column, columns, data.fillna)
    return series_splits(
        frame,
        data.input_width,
        data.horizon,
        data.gap,
        data.stride,
        data.feature_columns,
        data.target_columns,
        data.val_fraction,
        data.test_fraction,
        data.scaler,
        data.relative,
        data.season,
    )


def _task_splits(config: ExperimentConfig, gap: int, seed: int) -> Splits:
    task = config.task
    return synthetic_splits(
        TASKS[task.name], gap, seed, task.n_train, task.n_val, task.n_test, **task.params
    )
