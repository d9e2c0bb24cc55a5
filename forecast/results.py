"""A sweep's results as data (:class:`Results`: its trials, every forecaster's forecasts and
their scores, as tables), and the MLflow read side that rebuilds them from a store
(:func:`load`): recent sweeps, the trials of one sweep from its child runs (for
``forecast compare`` and for resuming), and each trial's forecasts. It writes nothing and
imports no TensorFlow, so ``forecast runs`` and ``forecast compare`` answer in a few seconds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException

from forecast.config import ExperimentConfig, build_config
from forecast.evaluation import (
    METRICS,
    ensemble_forecasts,
    ensemble_name,
    paired_by_fold,
    per_series,
    results_table,
    score_forecasts,
    specification_column,
    summarize,
    task_scores,
)
from forecast.paths import tracking_uri as default_tracking_uri
from forecast.tracking import (
    FORECASTS_ARTIFACT,
    ROLE_TAG,
    SCALES_ARTIFACT,
    TrackingError,
    check_reachable,
    server_failure,
)


@dataclass(frozen=True)
class Kind:
    """What an experiment is, which decides how its results are read: its ``data`` (``task``,
    ``categorical task``, ``series`` or ``panel``), whether it is backtested on several folds,
    and whether it is an Optuna search."""

    data: str
    backtest: bool = False
    search: bool = False

    @classmethod
    def of(cls, config: ExperimentConfig, categorical: bool = False) -> Kind:
        """The kind of ``config``'s experiment; ``categorical``: its task labels classes."""
        search = config.sweep is not None and config.sweep.search == "optuna"
        if config.data is None:
            return cls("categorical task" if categorical else "task", search=search)
        data = "panel" if config.data.series_column else "series"
        return cls(data, config.data.backtest.folds > 1, search)

    @property
    def ratio(self) -> str:
        """The trials' column that measures a trial against its trivial baseline: a task's
        loss ratio, a series' MASE."""
        ratios = {"task": "mse_ratio", "categorical task": "cross_entropy_ratio"}
        return ratios.get(self.data, "test_mase")

    @property
    def forecasts_series(self) -> bool:
        """Whether its forecasts are of real series, in time (not a task's samples)."""
        return self.data in ("series", "panel")


@dataclass(frozen=True)
class Results:
    """One sweep's results, from :func:`forecast.run` or :func:`load`.

    - ``trials``: one row per trial: ``trial`` (its id, the name of its MLflow run),
      ``model`` (with its sweep point), ``network`` (the model's name, its forecaster's in
      ``forecasts``), ``point``, ``gap``, ``seed``, ``state`` (``complete``,
      ``pruned`` or ``failed``), ``weights`` (how many the model has), its headline metrics
      as MLflow names them, ``train_seconds``, ``run_id`` and, for a search, the sampled
      values.
    - ``forecasts``: every forecaster's test forecasts, the networks' and the baselines' alike,
      one row per (``trial``, ``forecaster``, ``series``, ``target``, ``fold``, ``origin``,
      ``step``) with the ``time`` forecast, ``y``, ``yhat`` and the interval ``lo``-``hi`` of
      nominal coverage ``level`` (and a column per quantile of a quantile model), in original
      units; a task's rows are its test samples' positions (``sample``, ``position``). A
      series' model with several complete seeds also has its seeds combined
      (``evaluation.ensemble``) as the forecaster ``<network>_ensemble``
      (:func:`forecast.evaluation.ensemble_forecasts`), added here from the seeds' rows.
    - ``scores``: :meth:`score` of every metric.
    """

    name: str
    config: ExperimentConfig
    kind: Kind
    trials: pd.DataFrame
    forecasts: pd.DataFrame
    scales: pd.DataFrame  # a series' in-sample scale per (trial, fold, series, target)
    tracking_uri: str | None = None
    run_id: str | None = None  # the sweep's parent run; None where nothing was recorded

    def __post_init__(self) -> None:
        if not self.kind.forecasts_series or not len(self.forecasts):
            return
        # Made again from the seeds' rows, so that a copy with another evaluation.ensemble
        # (dataclasses.replace) combines them its way.
        combined = self.trials["network"].map(ensemble_name).unique()
        forecasts = self.forecasts[~self.forecasts["forecaster"].isin(combined)]
        combine = self.config.evaluation.ensemble
        if combine != "none":
            ensembles = ensemble_forecasts(forecasts, self.trials, combine)
            forecasts = pd.concat([forecasts, ensembles], ignore_index=True)
        object.__setattr__(self, "forecasts", forecasts)  # frozen: set once, here

    @functools.cached_property
    def scores(self) -> pd.DataFrame:
        """Every metric of every forecaster, as :meth:`score` computes them."""
        return self.score()

    def score(self, metrics: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
        """Score the forecasts, without training: a long table of ``trial``, ``forecaster``,
        ``series``, ``fold``, ``metric`` and ``value``, for a series each of ``metrics``
        (default: every one of :data:`forecast.evaluation.METRICS` the forecasts allow), for
        a task its test MSE, RMSE and MAE (a categorical task's cross-entropy and accuracy).

        Raises:
            ValueError: a metric that is not one of :data:`forecast.evaluation.METRICS`.
        """
        unknown = [metric for metric in metrics or () if metric not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
        if not len(self.forecasts):
            return pd.DataFrame(
                columns=["trial", "forecaster", "series", "fold", "metric", "value"]
            )
        if not self.kind.forecasts_series:
            return task_scores(self.forecasts, self.name, self.kind.data == "categorical task")
        quantiles = self.config.train.quantiles if self.config.train.loss == "quantile" else None
        return score_forecasts(
            self.forecasts,
            self.scales,
            ["trial", "forecaster", "series", "fold"],
            tuple(metrics or METRICS),
            quantiles,
        )

    def summary(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """The table a sweep is read by, as ``forecast run`` and ``forecast compare`` print it:
        per (model, gap) the means over seeds (see :func:`forecast.evaluation.summarize`) of
        a series' ``metrics`` (default: the config's ``evaluation.metrics``), each baseline
        forecaster's row after the networks'; for an Optuna search its best trials
        (:func:`best_trials`)."""
        finished = self.trials[self.trials["state"] != "failed"] if len(self.trials) else None
        if self.kind.search:
            sweep = self.config.sweep
            from forecast.sweep import SEARCH_METRICS

            direction = sweep.direction or SEARCH_METRICS[sweep.metric]
            space = list(sweep.space)
            return best_trials(finished, sweep.metric, direction, space, self.kind.ratio)
        metrics = tuple(metrics or self.config.evaluation.metrics)
        return summarize(self.trials, self._forecaster_scores, metrics, self.kind.ratio)

    def paired(self) -> pd.DataFrame | None:
        """A backtest's models compared fold by fold with each other and with every baseline
        (:func:`forecast.evaluation.paired_by_fold`), by the MSE of each fold's forecasts
        pooled over its series; None for one fold."""
        if not self.kind.backtest:
            return None
        if not len(self.forecasts):  # every trial failed: nothing to pair
            return pd.DataFrame()
        scores = self._forecaster_scores
        mse = scores[(scores["metric"] == "mse") & (scores["series"] == "")]
        mse = mse[["trial", "fold", "forecaster", "value"]]
        identity = ["trial", "model", "network", "point", "gap", "seed"]
        finished = self.trials.loc[self.trials["state"] != "failed", identity]
        errors = mse.merge(finished, on="trial").rename(columns={"value": "mse"})
        return paired_by_fold(errors)

    def per_series(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """A panel's models and baselines series by series, with ``metrics`` as
        :meth:`summary` takes them (:func:`forecast.evaluation.per_series`); empty for one
        series."""
        if self.kind.data != "panel":
            return pd.DataFrame()
        metrics = tuple(metrics or self.config.evaluation.metrics)
        return per_series(self.trials, self._forecaster_scores, metrics)

    def baseline_scores(self, kind: str = "baseline") -> pd.DataFrame:
        """Each baseline forecaster's scores at each sweep point and gap, once (its forecasts
        depend on the data alone), means over backtest folds: a long table of ``forecaster``,
        ``model`` (with the sweep point), ``point``, ``gap``, ``series`` (``""``: pooled over
        a panel's series), ``metric`` and ``value``; empty for a task. ``kind`` ``ensemble``:
        the networks' ensembles' instead, alike."""
        table = results_table(self.trials, self._forecaster_scores)
        chosen = table[table["kind"] == kind].drop(columns=["kind", "seed"])
        return chosen.reset_index(drop=True)

    @functools.cached_property
    def _forecaster_scores(self) -> pd.DataFrame:
        """A series' forecasters' scores as the summaries read them: every metric per trial and
        fold, pooled over the series (``series`` ``""``) and, for a panel, each series'."""
        if not self.kind.forecasts_series or not len(self.forecasts):
            columns = ["trial", "forecaster", "series", "fold", "metric", "value"]
            return pd.DataFrame(columns=columns)
        quantiles = self.config.train.quantiles if self.config.train.loss == "quantile" else None
        by = ["trial", "forecaster", "fold"]
        pooled = score_forecasts(self.forecasts, self.scales, by, METRICS, quantiles)
        pooled = pooled.assign(series="")
        if self.kind.data != "panel":
            return pooled
        return pd.concat([pooled, self.scores], ignore_index=True)


def load(run_or_experiment: str, tracking_uri: str | None = None) -> Results:
    """A sweep's :class:`Results` rebuilt from the MLflow store at ``tracking_uri`` (default:
    ``MLFLOW_TRACKING_URI``, else the local ``mlflow.db``): ``run_or_experiment`` is the
    sweep's parent run id (see ``forecast runs``) or an experiment's name (its latest sweep).

    Raises:
        TrackingError: no such run or experiment, or a store that is not reachable.
    """
    uri = tracking_uri or default_tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    run_id = run_or_experiment
    if client.get_experiment_by_name(run_or_experiment) is not None:
        sweeps = recent_sweeps(uri, run_or_experiment, limit=1)
        if not len(sweeps):
            raise TrackingError(f"experiment {run_or_experiment!r} in {uri} has no sweeps yet")
        run_id = sweeps["run_id"].iloc[0]
    try:
        parent = client.get_run(run_id)
    except MlflowException as error:
        missing = TrackingError(f"no sweep or experiment {run_or_experiment!r} in {uri}")
        raise server_failure(error, uri) or missing from None
    config = build_config(_artifact_yaml(client, run_id, "config.yaml"), f"run {run_id}")
    kind = Kind.of(config, parent.data.tags.get("forecast.kind") == "categorical task")
    trials = sweep_trials(uri, run_id)
    if len(trials):
        trials = trials.rename(columns={"run_name": "trial"})
        trials["state"] = [
            "failed" if status == "FAILED" else state or "complete"
            for status, state in zip(trials["status"], trials["trial_state"], strict=True)
        ]
    forecasts, scales = [], []
    for trial, run in zip(trials.get("trial", []), trials.get("run_id", []), strict=True):
        own = trial_forecasts(uri, run)
        if own is not None:
            forecasts.append(own[0].assign(trial=trial))
            scales.append(own[1].assign(trial=trial))
    return Results(
        parent.data.tags.get("forecast.experiment", ""),
        config,
        kind,
        trials,
        long_table(forecasts),
        long_table(scales),
        uri,
        run_id,
    )


def long_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Trials' long tables (each with a ``trial`` column) as one, with the columns that say
    whose row it is first: ``trial``, ``forecaster``, ``series``, ``target``, ``fold``."""
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    first = [c for c in ("trial", "forecaster", "series", "target", "fold") if c in table]
    return table[[*first, *[column for column in table.columns if column not in first]]]


def trial_forecasts(uri: str, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """A trial's forecasts and its series' scales, as it logged them; None for a trial that
    logged none (a failed one, or one logged before forecasts were kept)."""
    client = MlflowClient(uri)
    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    if FORECASTS_ARTIFACT not in names:
        return None
    with tempfile.TemporaryDirectory() as folder:
        forecasts = pd.read_parquet(_download(client, run_id, FORECASTS_ARTIFACT, folder))
        scales = (
            pd.read_parquet(_download(client, run_id, SCALES_ARTIFACT, folder))
            if SCALES_ARTIFACT in names
            else pd.DataFrame()
        )
    return forecasts, scales


def _artifact_yaml(client: MlflowClient, run_id: str, path: str) -> dict:
    import yaml

    with tempfile.TemporaryDirectory() as folder:
        return yaml.safe_load(Path(_download(client, run_id, path, folder)).read_text())


def _download(client: MlflowClient, run_id: str, path: str, folder: str) -> str:
    """One artifact of a run into ``folder``, without MLflow's progress bar (one a file, which
    would fill a `forecast compare` with bars), unless the user has asked for it."""
    variable = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    asked = os.environ.get(variable)
    os.environ[variable] = asked or "false"
    try:
        return client.download_artifacts(run_id, path, folder)
    finally:
        if asked is None:
            del os.environ[variable]


def recent_sweeps(uri: str, experiment: str | None = None, limit: int = 10) -> pd.DataFrame:
    """The latest parent runs (one per ``forecast run``), newest first.

    Raises:
        TrackingError: no such experiment, or a tracking server that is not reachable or
            refuses this client.
    """
    check_reachable(uri)  # one line at once, not MLflow's retries and a traceback
    client = MlflowClient(uri)
    experiments = (
        [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    )
    if experiment and experiments[0] is None:
        raise TrackingError(f"no experiment {experiment!r} in {uri}")
    runs = client.search_runs(
        [e.experiment_id for e in experiments],
        "tags.`forecast.experiment` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=limit * 50,  # children match too; parents are picked below
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][:limit]
    return pd.DataFrame(
        [
            {
                "experiment": r.data.tags["forecast.experiment"],
                "run_id": r.info.run_id,
                "started": pd.Timestamp(r.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M"),
                "status": r.info.status,
                "source": r.data.params.get("source", ""),
            }
            for r in parents
        ],
        columns=["experiment", "run_id", "started", "status", "source"],
    )


def unfinished_sweep(uri: str, experiment_id: str, sweep_hash: str) -> str | None:
    """The newest parent run with this sweep hash, if it did not finish (killed, failed or
    still marked running), to resume; None if there is none."""
    runs = MlflowClient(uri).search_runs(
        [experiment_id],
        f"tags.`forecast.sweep_hash` = '{sweep_hash}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs and runs[0].info.status != "FINISHED":
        return runs[0].info.run_id
    return None


def sweep_trials(uri: str, parent_run_id: str, latest_only: bool = True) -> pd.DataFrame:
    """The per-trial table of one sweep, rebuilt from its child runs: ``model`` (with its sweep
    point), ``point``, ``gap``, ``seed``, ``weights`` (the parameter count), for an Optuna
    search ``search_trial`` and each sampled key, every metric the trial logged (its last
    value), then ``status``, ``run_id``, ``trial_hash`` and ``trial_state`` (complete or
    pruned, once finished).

    With ``latest_only``, a trial run again on resume counts once (its latest attempt) and
    trials killed by an interruption are left out.

    Raises:
        TrackingError: no such run, or a tracking server that is not reachable or refuses this
            client.
    """
    check_reachable(uri)
    client = MlflowClient(uri)
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as error:
        missing = TrackingError(f"no run {parent_run_id!r} in {uri}")
        raise server_failure(error, uri) or missing from None
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
    # An Optuna search's sampled keys, which its trials' runs hold as params.
    space = [key for key in parent.data.params.get("search_space", "").split(",") if key]
    chosen_prefix = specification_column("")  # the params of the models baselines chose
    rows = []
    for child in children:
        params, metrics = child.data.params, child.data.metrics
        if child.data.tags.get(ROLE_TAG, "network") != "network":  # a baseline's or ensemble's
            continue
        if "model" not in params:  # made, but stopped (or its server died) before its params
            continue
        point = params.get("sweep_point", "")
        searched = {"search_trial": int(params["search_trial"])} if space else {}
        searched.update({key: params[key] for key in space if key in params})
        rows.append(
            {
                "model": f"{params['model']} [{point}]" if point else params["model"],
                "network": params["model"],
                "point": point,
                "gap": int(params["gap"]),
                "seed": int(params["seed"]),
                "weights": int(params["parameters"]) if "parameters" in params else float("nan"),
                **{key: value for key, value in params.items() if key.startswith(chosen_prefix)},
                **searched,
                **metrics,
                "status": child.info.status,
                "run_id": child.info.run_id,
                "run_name": child.info.run_name,
                "trial_hash": child.data.tags.get("forecast.trial_hash", ""),
                "trial_state": child.data.tags.get("trial_state", ""),
            }
        )
    table = pd.DataFrame(rows)
    for key in space:  # params are strings; a numeric range's values read back as numbers
        with contextlib.suppress(KeyError, ValueError, TypeError):
            table[key] = pd.to_numeric(table[key])
    if latest_only and len(table):
        table = table[table["status"] != "KILLED"]
        hashed = table["trial_hash"] != ""
        table = pd.concat(
            [table[~hashed], table[hashed].drop_duplicates("trial_hash", keep="last")]
        ).sort_index()
    return table


def best_trials(
    trials: pd.DataFrame | None,
    metric: str,
    direction: str,
    space: list[str],
    ratio: str,
    limit: int = 10,
) -> pd.DataFrame:
    """An Optuna search's best ``limit`` of its finished ``trials`` (a :class:`Results`'
    table) by its ``metric`` (``direction``: minimize or maximize), the complete ones first,
    each part best first: ``trial`` (its number), ``state`` (complete or pruned), the metric's
    last value, each sampled key of ``space``, the test ``ratio`` (:attr:`Kind.ratio`) and the
    training seconds.
    """
    if trials is None or not len(trials):
        return pd.DataFrame()
    columns = ["search_trial", "state", metric, *space, *([ratio] if ratio in trials else [])]
    best = trials[[*columns, "train_seconds"]].assign(pruned=trials["state"] != "complete")
    best = best.sort_values(["pruned", metric], ascending=[True, direction == "minimize"])
    best = best.drop(columns="pruned").head(limit)
    return best.rename(columns={"search_trial": "trial"}).reset_index(drop=True)


def trial_flow(uri: str, run_id: str) -> dict[str, list[float]]:
    """The gradient flow a trial logged (``gradient_flow.json``): label -> curve."""
    with tempfile.TemporaryDirectory() as folder:
        path = _download(MlflowClient(uri), run_id, "gradient_flow.json", folder)
        return json.loads(Path(path).read_text())
