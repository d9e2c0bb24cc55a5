"""MLflow tracking, the read side: recent sweeps, and the trials of one sweep rebuilt from its
child runs (for ``forecast compare`` and for resuming). It writes nothing and imports no
TensorFlow, so ``forecast runs`` and ``forecast compare`` answer in a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecast.evaluation import is_baseline_mse
from forecast.tracking import TrackingError, check_reachable, server_failure


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
    point), ``point``, ``gap``, ``seed``, ``params`` (the parameter count), for an Optuna
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
    rows = []
    for child in children:
        params, metrics = child.data.params, child.data.metrics
        if "model" not in params:  # made, but stopped (or its server died) before its params
            continue
        point = params.get("sweep_point", "")
        searched = {"search_trial": int(params["search_trial"])} if space else {}
        searched.update({key: params[key] for key in space if key in params})
        rows.append(
            {
                "model": f"{params['model']} [{point}]" if point else params["model"],
                "point": point,
                "gap": int(params["gap"]),
                "seed": int(params["seed"]),
                "params": int(params["parameters"]) if "parameters" in params else float("nan"),
                **{key: value for key, value in params.items() if key.startswith("spec.")},
                **searched,
                **metrics,
                "status": child.info.status,
                "run_id": child.info.run_id,
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
    uri: str, parent_run_id: str, trials: pd.DataFrame, limit: int = 10
) -> pd.DataFrame:
    """An Optuna search's best ``limit`` trials by its metric, the complete ones first, each
    part best first: ``trial`` (its number), ``state`` (complete or pruned), the metric's last
    value, each sampled key, the test ratio and the training seconds; empty for a sweep that
    is not a search. ``trials``: the sweep's :func:`sweep_trials`.
    """
    params = MlflowClient(uri).get_run(parent_run_id).data.params
    if "search_space" not in params or not len(trials):
        return pd.DataFrame()
    metric, _, direction = params["search_metric"].partition(" ")
    space = params["search_space"].split(",")
    trials = trials[trials["status"] == "FINISHED"]
    ratio = next(
        (c for c in ("mse_ratio", "cross_entropy_ratio", "test_mase") if c in trials), None
    )
    columns = ["search_trial", "trial_state", metric, *space, *([ratio] if ratio else [])]
    best = trials[[*columns, "train_seconds"]].assign(pruned=trials["trial_state"] != "complete")
    best = best.sort_values(["pruned", metric], ascending=[True, direction == "(minimize)"])
    best = best.drop(columns="pruned").head(limit)
    return best.rename(columns={"search_trial": "trial", "trial_state": "state"})


def trial_folds(uri: str, run_id: str) -> list[dict[str, float]]:
    """A backtest trial's test metrics per fold, from the steps 0 .. K-1 of its metric
    histories (step K holds the means over folds); [] for a trial of one fold."""
    client = MlflowClient(uri)
    metrics = client.get_run(run_id).data.metrics
    # The MSEs are what fold-by-fold comparisons need (the network's test_mse, each baseline's
    # <name>.mse); the histories of others are not read.
    keys = [
        key
        for key in metrics
        if (key == "test_mse" or is_baseline_mse(key)) and f"{key}_ci95" in metrics
    ]
    folds: dict[int, dict[str, float]] = {}
    for key in keys:
        history = client.get_metric_history(run_id, key)
        last_step = max(entry.step for entry in history)
        for entry in history:
            if entry.step < last_step:
                folds.setdefault(entry.step, {})[key] = entry.value
    return [folds[step] for step in sorted(folds)]


def trial_flow(uri: str, run_id: str) -> dict[str, list[float]]:
    """The gradient flow a trial logged (``gradient_flow.json``): label -> curve."""
    with tempfile.TemporaryDirectory() as folder:
        path = MlflowClient(uri).download_artifacts(run_id, "gradient_flow.json", folder)
        return json.loads(Path(path).read_text())
