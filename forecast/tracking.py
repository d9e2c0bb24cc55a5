"""MLflow tracking, the write side: the thin edge where runs, params, metrics, datasets, models
and figures are recorded. Reading runs back (``forecast runs``, ``compare``, resume) is
:mod:`forecast.results`.

One MLflow experiment per named experiment, one parent run per sweep, one child run per trial.
Everything goes through an ``MlflowClient`` for the store's URI, passed down from the command
that started the sweep, and names its run: nothing here uses MLflow's process-wide state
(``mlflow.set_tracking_uri`` also rewrites ``MLFLOW_TRACKING_URI`` in ``os.environ``, and the
active-run stack is per process), so a trial records the same way in any process.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import json
import pickle
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow import MlflowClient
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    Metric,
    Param,
    RunTag,
)
from mlflow.exceptions import MlflowException

from forecast.config import ConfigError, one_line
from forecast.data import WindowView
from forecast.evaluation import metric_name, specification_column
from forecast.paths import project_root

if TYPE_CHECKING:  # the read side imports this module, and must not start TensorFlow
    import keras
    from matplotlib.figure import Figure

    from forecast.data import SeriesData
    from forecast.trial import TrialOutcome


class TrackingError(ConfigError):
    """The tracking store (``MLFLOW_TRACKING_URI``) cannot be used; its message is one line."""


class ServerError(TrackingError):
    """A tracking server refused this client (401, 403) or did not answer; the message names
    the problem and what to do, in one line."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when an HTTP tracking server does not answer or refuses
    this client.

    One request that needs a login where the server asks for one (listing one experiment; its
    ``/health`` needs none, and its host check skips it), sent with the credentials MLflow's
    client sends (``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``, a token, or
    ``~/.mlflow/credentials``), and tried once: MLflow's own client retries for minutes before
    it gives up. Any other store passes.

    Raises:
        ServerError: the server is not reachable, needs a login or refuses this one (401), or
            refuses this host name or this user (403).
    """
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            max_retries=0,
            timeout=timeout,
            params={"max_results": 1},
            raise_on_status=False,
        )
    except MlflowException as error:
        raise server_failure(error, uri) or ServerError(
            f"MLflow tracking server {uri} is not reachable: {failure_reason(error)}"
        ) from None
    if response.status_code in (401, 403):
        raise _refusal(uri, response.status_code, response.text)
    # Any other answer (even a proxy's error page) means something is there; MLflow's client
    # reports what it makes of it.


def server_failure(error: BaseException, uri: str) -> ServerError | None:
    """``error`` as one line that names the problem, if the tracking server at ``uri`` caused
    it: refused this client (401, 403) or did not answer; None for any other error, and for a
    store that is not a server.

    MLflow's client raises these as exceptions that quote the HTTP exchange (a refused
    connection as a chain of five); the cause is looked for along the chain.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    for link in _chain(error):
        if isinstance(link, ServerError):
            # Ray hands a task's error back as one of the same type that reads as the task's
            # traceback; the error itself is its cause.
            cause = getattr(link, "cause", None)
            return cause if isinstance(cause, ServerError) else link
        if isinstance(link, MlflowException) and link.get_http_status_code() in (401, 403):
            return _refusal(uri, link.get_http_status_code(), link.message)
        # The artifact proxy's uploads raise requests' own errors.
        response = getattr(link, "response", None)
        if (
            isinstance(link, requests.HTTPError)
            and response is not None
            and response.status_code in (401, 403)
            and _same_server(response.url, uri)
        ):
            return _refusal(uri, response.status_code, response.text)
        request = getattr(link, "request", None)
        if isinstance(link, requests.RequestException) and _same_server(
            getattr(request, "url", None), uri
        ):
            return ServerError(f"MLflow tracking server {uri} is not reachable: {_cause(link)}")
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it was raised from or while handling, and so on."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _same_server(url: str | None, uri: str) -> bool:
    """Whether ``url`` goes to the host and port of ``uri`` (a data file fetched over HTTP from
    elsewhere fails for reasons of its own)."""
    if not url:
        return False

    def host(address: str) -> str:
        return urlsplit(address).netloc.rpartition("@")[2].lower()

    return host(url) == host(uri)


def _cause(error: BaseException) -> str:
    """The innermost reason along ``error``'s chain, e.g. ``[Errno 111] Connection refused``."""
    links = list(_chain(error))
    # urllib3 carries the socket's error as an argument of its own, not as a cause.
    links += [arg for link in links for arg in link.args if isinstance(arg, BaseException)]
    for link in reversed(links):
        # A server killed mid-request closes the connection, or the kernel resets it.
        if isinstance(link, http.client.RemoteDisconnected | ConnectionResetError):
            return "it closed the connection without answering"
        if isinstance(link, OSError) and link.errno is not None and link.strerror:
            return f"[Errno {link.errno}] {link.strerror}"
    return failure_reason(links[-1])


def _refusal(uri: str, status: int, text: str) -> ServerError:
    """A 401 or 403 from the server at ``uri`` (``text``: its answer) as what to do about it."""
    from mlflow.environment_variables import MLFLOW_TRACKING_TOKEN
    from mlflow.utils.credentials import read_mlflow_creds

    if status == 403 and "Invalid Host header" in text:
        # MLflow's check against DNS rebinding: by default it accepts localhost and private IP
        # addresses only, so any DNS name the server is reached by must be listed.
        host = urlsplit(uri).netloc.rpartition("@")[2]
        return ServerError(
            f"MLflow tracking server {uri} refused this host name (403 Invalid Host header); "
            f"start it with --allowed-hosts {host}"
        )
    credentials = read_mlflow_creds()
    user = credentials.username if credentials.password else None
    if status == 401 and user:
        return ServerError(
            f"MLflow tracking server {uri} refused the login of user {user!r} (401 "
            "Unauthorized): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 401 and MLFLOW_TRACKING_TOKEN.get():
        return ServerError(
            f"MLflow tracking server {uri} refused the token in MLFLOW_TRACKING_TOKEN "
            "(401 Unauthorized)"
        )
    if status == 401:
        return ServerError(
            f"MLflow tracking server {uri} needs a login (401 Unauthorized): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"
        )
    if "Permission denied" in text:
        # basic-auth's permissions: by default a user's experiment is READ for everyone else.
        who = f"user {user!r}" if user else "this client"
        return ServerError(
            f"MLflow tracking server {uri} denied {who} this request (403 Permission denied): "
            "the experiment's owner or the server's admin can grant EDIT on it"
        )
    # E.g. a proxy's page in front of the server, without MLflow's quote of the request.
    answer = " ".join(text.rpartition("Response body: ")[2].strip("'").split())[:200]
    return ServerError(
        f"MLflow tracking server {uri} refused this client (403 Forbidden): {answer}"
    )


def is_local_store(uri: str) -> bool:
    """Whether the store is a file on this machine (sqlite or a folder), out of other machines'
    reach, unlike a tracking server or a database server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def use_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name`` in the store at ``uri``, created if new."""
    database = (
        Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None
    )
    with _exclusive(database):
        client = MlflowClient(uri)  # opens the store: creates or migrates its tables
        if database is not None:
            _write_ahead_log(database)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # Keep a local store's artifacts beside its database file; MLflow's default is
        # ./mlruns in whatever the working directory happens to be.
        location = (database.parent / "mlartifacts" / name).as_uri() if database else None
        # Without a kind, MLflow 3's UI may ask which kind of experiment this is, or open it
        # on its GenAI view (traces), where a new user sees none of the runs.
        tags = {"mlflow.experimentKind": "custom_model_development"}
        return client.create_experiment(name, artifact_location=location, tags=tags)


def _write_ahead_log(database: Path) -> None:
    """Put a sqlite store in write-ahead-log mode (kept in the file), where readers (the MLflow
    UI, ``forecast compare``) never hold up a sweep's writes. In sqlite's default mode a writer
    waits for every reader, and a sweep watched closely failed with "database is locked"."""
    import sqlite3

    # A store that is busy stays in the mode it has; it still works, as before.
    with (
        contextlib.closing(sqlite3.connect(database, timeout=10)) as connection,
        contextlib.suppress(sqlite3.OperationalError),
    ):
        connection.execute("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def _exclusive(database: Path | None) -> Iterator[None]:
    """Hold a lock beside a sqlite store while it may be created or migrated and while an
    experiment may be created: two processes starting at once would otherwise both run
    MLflow's schema migration (``table _alembic_tmp_experiments already exists``) or both
    create the experiment."""
    if database is None:
        yield
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_user() -> str:
    """Who runs: the login on the tracking server (``MLFLOW_TRACKING_USERNAME``), else this
    machine's user, as MLflow's own ``start_run`` records it (its client leaves it "unknown")."""
    import getpass

    from mlflow.utils.credentials import read_mlflow_creds

    try:
        return read_mlflow_creds().username or getpass.getuser()
    except (ImportError, KeyError, OSError):  # no user name on this machine: a container's uid
        return "unknown"


@dataclass(frozen=True)
class RunRef:
    """One run in one store: where the functions below record."""

    client: MlflowClient
    experiment_id: str
    run_id: str


def run_tags(name: str) -> dict[str, str]:
    """Tags that say what produced a run: experiment, who ran it, code version, library
    versions."""
    import subprocess

    tags = {"forecast.experiment": name, "mlflow.user": run_user()}
    for package in ("forecast", "tensorflow", "keras", "mlflow", "numpy", "pandas"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"version.{package}"] = importlib.metadata.version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


@contextlib.contextmanager
def parent_run(
    uri: str,
    experiment_id: str,
    name: str,
    config: dict[str, Any],
    params: dict[str, Any],
    sweep_hash: str,
    resume_run_id: str | None = None,
    system_metrics: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[RunRef]:
    """The run of one sweep; never left RUNNING while its store answers. On Ctrl-C (or a SIGTERM
    the caller turns into one) it ends KILLED, with every trial still running, as it does when
    the sweep raises anything once ``stop`` is set (re-raised as KeyboardInterrupt); if the
    sweep raises otherwise, FAILED.

    When the tracking server fails the sweep (see :func:`server_failure`), that failure is
    raised as a :class:`ServerError`; the runs are ended if the server still answers, and left
    as they are if it is gone (a rerun of the sweep, which resumes it, ends them then).

    ``resume_run_id`` reopens an interrupted sweep's run instead of starting a new one;
    ``system_metrics`` samples this machine's CPU and memory onto it (MLflow's monitor).
    """
    client = MlflowClient(uri)
    if resume_run_id is not None:
        client.update_run(resume_run_id, status="RUNNING")
        run = RunRef(client, experiment_id, resume_run_id)
    else:
        tags = {
            **run_tags(name),
            "forecast.sweep_hash": sweep_hash,
            "mlflow.note.content": config.get("description", ""),
        }
        created = client.create_run(experiment_id, tags=tags, run_name=f"{name}-sweep")
        run = RunRef(client, experiment_id, created.info.run_id)
        log_config(run, config)
        log_params(run, params)
    monitor = None
    if system_metrics:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run.run_id, tracking_uri=uri, resume_logging=True)
        monitor.start()
    status = "FINISHED"
    failure = None
    try:
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as error:
        if stop is not None and stop.is_set():
            status = "KILLED"
            raise KeyboardInterrupt from error
        status = "FAILED"
        failure = server_failure(error, uri)
        if failure is None:
            raise
        stopped = "the sweep stopped, and the same command resumes it"
        raise ServerError(f"{failure}; {stopped}") from None
    finally:
        if monitor is not None:
            monitor.finish()
        if failure is None:
            _end_sweep(uri, run.run_id, status)
        # Against a server that is gone every call would wait out MLflow's retries (minutes)
        # and fail: ask once, quickly. Nor may a failure to end the runs hide the sweep's own.
        elif _answers(uri):
            with contextlib.suppress(*SERVER_ERRORS):
                _end_sweep(uri, run.run_id, status)


# What MLflow's client raises when its server fails it.
SERVER_ERRORS = (MlflowException, requests.RequestException)
# A child run's role in its sweep: a network's trial ("network"), or the scores of a baseline
# forecaster ("baseline") or of a network's seeds combined ("ensemble").
ROLE_TAG = "forecast.role"


def _end_sweep(uri: str, run_id: str, status: str) -> None:
    """End the sweep's run ``run_id`` with ``status``, and, unless it finished, its trials'
    runs still marked RUNNING too."""
    if status != "FINISHED":
        end_unfinished_trials(uri, run_id, status)
    MlflowClient(uri).set_terminated(run_id, status)


def _answers(uri: str) -> bool:
    """Whether the tracking store at ``uri`` takes requests from this client now."""
    try:
        check_reachable(uri)
    except ServerError:
        return False
    return True


def end_unfinished_trials(uri: str, parent_run_id: str, status: str = "KILLED") -> None:
    """End the sweep's child runs still marked RUNNING with ``status``: those of worker
    processes or Ray tasks that were stopped, or of a process that was killed outright."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    running = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
        max_results=10_000,
    )
    for child in running:
        client.set_terminated(child.info.run_id, status)


@contextlib.contextmanager
def trial_run(
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    params: dict[str, Any],
    config: dict[str, Any],
    trial_hash: str,
    stop: threading.Event | None = None,
) -> Iterator[RunRef]:
    """The run of one trial, a child of its sweep's run (which may live in another process).

    If the trial raises, the run ends FAILED with the reason (see :func:`failure_reason`) in
    its ``failure_reason`` tag; on Ctrl-C it ends KILLED, and so does any exception raised
    once ``stop`` is set, re-raised as KeyboardInterrupt: an interrupt that lands inside a
    library can come out of it as another exception, and it is still an interrupt.
    """
    client = MlflowClient(uri)
    tags = {
        "mlflow.parentRunId": parent_run_id,
        ROLE_TAG: "network",
        "forecast.trial_hash": trial_hash,
        "mlflow.user": run_user(),
    }
    created = client.create_run(experiment_id, tags=tags, run_name=run_name)
    run = RunRef(client, experiment_id, created.info.run_id)
    log_params(run, params)
    log_config(run, config)
    try:
        yield run
    except KeyboardInterrupt:
        client.set_terminated(run.run_id, "KILLED")
        raise
    except Exception as error:
        if stop is not None and stop.is_set():
            client.set_terminated(run.run_id, "KILLED")
            raise KeyboardInterrupt from error
        if server_failure(error, uri) is not None:
            raise  # nothing can be recorded now; the sweep's run ends this one if it can
        client.set_tag(run.run_id, "failure_reason", failure_reason(error)[:1000])
        client.set_terminated(run.run_id, "FAILED")
        raise
    client.set_terminated(run.run_id, "FINISHED")


def log_config(run: RunRef, config: dict[str, Any]) -> None:
    """Log the experiment's config as ``config.yaml``, its keys in the config's order (a
    search space's keys are its columns' order), which MLflow's ``log_dict`` sorts."""
    import yaml

    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    run.client.log_text(run.run_id, text, "config.yaml")


def failure_reason(error: BaseException) -> str:
    """An exception as one line: ``Type: first line of its message`` (a failed trial's reason)."""
    return one_line(error)


# A Keras history's names -> the metric names a trial's run shows.
EPOCH_METRICS = {
    "loss": "train_loss",
    "val_loss": "val_loss",
    "val_ratio": "val_ratio",
    "accuracy": "train_accuracy",
    "val_accuracy": "val_accuracy",
}


def log_epoch(run: RunRef, epoch: int, logs: dict[str, float]) -> None:
    """An epoch's losses (Keras' ``logs``) on ``run`` at step ``epoch``: ``train_loss``,
    ``val_loss`` and ``val_ratio`` (val_loss over the trivial baseline's; and a categorical
    task's accuracies as ``train_accuracy`` and ``val_accuracy``)."""
    names = EPOCH_METRICS
    log_metrics(run, {names[k]: v for k, v in logs.items() if k in names}, step=epoch)


def log_trial_outcome(
    run: RunRef, outcome: TrialOutcome, source: str, dataset_name: str, with_model: bool
) -> None:
    """Record a finished trial: its parameter count, its data as dataset inputs, its model
    (optionally), its test metrics linked to both, its figures and its gradient flow
    (``gradient_flow.json``, read back when a sweep resumes).

    A backtest logs each fold's metrics at steps 0 .. K-1 of the same names, then the means
    over folds (and their ``_ci95``) at step K: the value MLflow shows for a run is that of its
    last step. Its data and model are those of the last fold.
    """
    splits = outcome.splits
    params = {"parameters": outcome.model.count_params(), "n_train": len(splits.x_train)}
    # The model each automatic baseline chose, e.g. spec.ets = ETS(M,A,M).
    params.update(
        {specification_column(name): chosen for name, chosen in outcome.specifications.items()}
    )
    log_params(run, params)
    # How training ended, as an Optuna search tells its study: a pruner's stop is no failure.
    state = {"trial_state": "pruned" if outcome.pruned_at else "complete"}
    if outcome.pruned_at:
        state["pruned_after_epoch"] = str(outcome.pruned_at)
    run.client.log_batch(run.run_id, tags=[RunTag(key, value) for key, value in state.items()])
    test_data = log_datasets(run, splits, source, dataset_name)
    model_id = None
    if with_model:
        model_id = log_model(run, outcome.model, splits.x_test, outcome.series)
    for fold, metrics in enumerate(outcome.fold_metrics):
        log_metrics(run, metrics, step=fold)
    # Linked to the model, the metrics show in the UI's list of models, comparable there.
    headline_step = len(outcome.fold_metrics)
    log_metrics(run, outcome.metrics, headline_step, model_id=model_id, dataset=test_data)
    flow = {label: curve.tolist() for label, curve in outcome.flow.items()}
    run.client.log_dict(run.run_id, flow, "gradient_flow.json")
    log_forecasts(run, outcome.forecasts, outcome.scales)
    for path, figure in outcome.figures.items():
        log_figure(run, figure, path)


FORECASTS_ARTIFACT = "forecasts.parquet"  # a trial's forecasts, read back by forecast.load
SCALES_ARTIFACT = "scales.parquet"  # its series' in-sample scales, beside them
FORECASTS_PREVIEW_ROWS = 200


def log_forecasts(run: RunRef, forecasts: pd.DataFrame, scales: pd.DataFrame) -> None:
    """Log a trial's forecasts (and its series' in-sample scales) as Parquet, which
    :func:`forecast.results.load` reads back exactly, and their first
    :data:`FORECASTS_PREVIEW_ROWS` rows as ``forecasts_preview.csv``, which MLflow's UI shows."""
    with tempfile.TemporaryDirectory() as folder:
        forecasts.to_parquet(Path(folder) / FORECASTS_ARTIFACT, index=False)
        forecasts.head(FORECASTS_PREVIEW_ROWS).to_csv(
            Path(folder) / "forecasts_preview.csv", index=False
        )
        if len(scales):
            scales.to_parquet(Path(folder) / SCALES_ARTIFACT, index=False)
        run.client.log_artifacts(run.run_id, folder)


def log_datasets(run: RunRef, splits: Any, source: str, name: str) -> Dataset:
    """Log the train, validation and test arrays as dataset inputs of ``run``, with the
    contexts ``training``, ``validation`` and ``testing``; returns the test dataset, to which
    the test metrics refer. A series' part (windows of the series held once) is logged as
    ``LOGGED_WINDOWS`` of its windows, evenly spread, under a digest of all of them."""
    inputs = []
    with warnings.catch_warnings():
        # A task name such as "delayed_recall" also reads as a local path; MLflow warns,
        # harmlessly.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        for context, x, y in (
            ("training", splits.x_train, splits.y_train),
            ("validation", splits.x_val, splits.y_val),
            ("testing", splits.x_test, splits.y_test),
        ):
            if isinstance(x, WindowView) and isinstance(y, WindowView) and x.windows is y.windows:
                # A series' part may hold millions of windows, each input_width steps: MLflow
                # profiles a sample of them, and the digest covers them all.
                features, targets = x.windows.sample(LOGGED_WINDOWS)
                digest = x.windows.digest()
            else:
                features, targets, digest = np.asarray(x), np.asarray(y), None
            dataset = mlflow.data.from_numpy(
                features, targets=targets, source=source, name=name, digest=digest
            )
            tag = InputTag("mlflow.data.context", context)
            inputs.append(DatasetInput(Dataset(**dataset.to_dict()), tags=[tag]))
    # Trials in parallel log the same datasets (the models of one gap and seed share them), and
    # MLflow's store checks for a dataset and then inserts it, so the slower of two concurrent
    # writers fails on the unique key. On a retry it finds the dataset and links to it.
    for attempt in range(DATASET_ATTEMPTS):
        try:
            run.client.log_inputs(run.run_id, datasets=inputs)
            break
        except MlflowException as error:
            if "UNIQUE" not in str(error).upper() or attempt == DATASET_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    return inputs[-1].dataset


DATASET_ATTEMPTS = 5
LOGGED_WINDOWS = 1000  # the windows of a series' part that its logged dataset profiles


def log_model(
    run: RunRef, model: keras.Model, inputs: Any, series: SeriesData | None = None
) -> str:
    """Log ``model`` as ``run``'s MLflow pyfunc model named ``model``; returns its MLflow 3 model
    id. It loads as ``models:/<id>`` or ``runs:/<run id>/model``.

    It carries the ``.keras`` file, this package's code and that of any user's module the model
    is made of (so it loads where neither is on the path), pinned requirements, a signature and
    an input example. A task's model predicts from input windows (``inputs`` are examples). A
    ``series``' model carries its transform too and forecasts from a DataFrame of the series'
    latest rows: the time column and the feature (and target) columns, at least
    ``input_width`` rows, the latest last; it returns the next ``horizon`` rows, their times at
    the series' frequency and the targets in original units.
    """
    from mlflow.models import ModelSignature, infer_signature

    from forecast.models import user_modules

    example = np.asarray(inputs[:2], dtype="float32")
    # The output's shape is all a signature needs; predicting would trace again.
    signature = infer_signature(example, np.zeros((len(example), *model.output_shape[1:]), "f4"))
    if series is not None:
        example = series.last_rows
        zeros = np.zeros((len(series.transform.model_input(example)), *model.output_shape[1:]))
        with warnings.catch_warnings():  # of the integer count of filled values: never missing
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            inferred = infer_signature(example, series.transform.forecast_frame(zeros, example))
        # No input schema: the model's own checks read rows as pd.read_csv, a JSON request or
        # a served CSV body gives them (integer counts, float32, text) and name a missing
        # column or value in one line, where MLflow's schema would refuse int64 for a double
        # and, with columns of any type, every CSV request. The input example shows the rows.
        signature = ModelSignature(None, inferred.outputs)
    modules = user_modules(model)
    user_code, user_requirements = _code_and_requirements(modules)
    requirements = [
        f"{package}=={importlib.metadata.version(package)}"
        for package in ("tensorflow", "keras", "mlflow", "numpy", "pandas", "pyyaml")
    ]
    with _logged_model(run) as logged, tempfile.TemporaryDirectory() as folder:
        keras_file, saved = Path(folder) / "model.keras", Path(folder) / "pyfunc"
        model.save(keras_file)
        artifacts = {"keras_model": str(keras_file)}
        if series is not None:
            artifacts["transform"] = str(Path(folder) / "transform.pkl")
            Path(artifacts["transform"]).write_bytes(pickle.dumps(series.transform))
        mlflow.pyfunc.save_model(
            str(saved),
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts=artifacts,
            code_paths=[str(Path(__file__).parent), *user_code],
            model_config={
                "user_modules": modules,
                "inputs": "windows" if series is None else "rows",
            },
            signature=signature,
            input_example=example,
            pip_requirements=requirements + user_requirements,
        )
        run.client.log_model_artifacts(logged.model_id, str(saved))
    return logged.model_id


def log_ensemble_model(run: RunRef, members: list[str], combine: str) -> str:
    """Log, as ``run``'s model, a series model's seeds as one forecaster: the models logged by
    the trial runs ``members``, each with its transform, their forecasts combined by
    ``combine`` (:class:`forecast.keras_pyfunc.EnsembleForecaster`); returns its MLflow 3 model
    id. It takes the rows a member takes, and returns the rows a member returns."""
    from mlflow.models import Model

    with _logged_model(run) as logged, tempfile.TemporaryDirectory() as folder:
        artifacts, first = {}, None
        for index, member in enumerate(members):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    f"runs:/{member}/model",
                    dst_path=str(Path(folder) / str(index)),
                    tracking_uri=run.client.tracking_uri,
                )
            )
            first = first or local
            artifacts[f"keras_model_{index}"] = str(local / "artifacts" / "model.keras")
            artifacts[f"transform_{index}"] = str(local / "artifacts" / "transform.pkl")
        model = Model.load(str(first / "MLmodel"))
        pyfunc = model.flavors["python_function"]
        saved = Path(folder) / "pyfunc"
        mlflow.pyfunc.save_model(
            str(saved),
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts=artifacts,
            # The first member's code: this package, and a user's modules it is made of.
            code_paths=[str(path) for path in (first / pyfunc["code"]).iterdir()],
            model_config={**pyfunc.get("config", {}), "members": len(members), "combine": combine},
            signature=model.signature,
            input_example=model.load_input_example(str(first)),
            pip_requirements=str(first / "requirements.txt"),
        )
        run.client.log_model_artifacts(logged.model_id, str(saved))
    return logged.model_id


@contextlib.contextmanager
def _logged_model(run: RunRef) -> Iterator[Any]:
    """An MLflow 3 logged model named ``model`` of ``run``, for the block to fill with its
    artifacts: READY and an output of the run after it, FAILED if it raises (unless the
    tracking server is what failed, where nothing can be recorded)."""
    client = run.client
    logged = client.create_logged_model(run.experiment_id, name="model", source_run_id=run.run_id)
    try:
        yield logged
    except BaseException as error:
        if server_failure(error, client.tracking_uri) is None:
            client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])


def _code_and_requirements(modules: list[str]) -> tuple[list[str], list[str]]:
    """For a user's modules: the files or folders to ship with a model (a module's top-level
    package, as its imports may reach its siblings), and the pinned distributions that provide
    installed ones instead."""
    code, requirements = set(), set()
    installed: dict[str, list[str]] | None = None  # package -> distributions, looked up once
    for name in modules:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None:  # e.g. a class defined in a script run as __main__: nothing to ship
            continue
        if _is_installed(Path(file)):
            # Mapping every installed package to its distribution takes about a second: only
            # for a model that needs it.
            if installed is None:
                installed = importlib.metadata.packages_distributions()
            for dist in installed.get(name.partition(".")[0], []):
                requirements.add(f"{dist}=={importlib.metadata.version(dist)}")
            continue
        levels = name.count(".") + (Path(file).name == "__init__.py")
        code.add(str(Path(file).parents[levels - 1] if levels else Path(file)))
    return sorted(code), sorted(requirements)


def _is_installed(file: Path) -> bool:
    """Whether ``file`` lies in this environment's site-packages (or the standard library)."""
    folders = {Path(p) for key, p in sysconfig.get_paths().items() if "lib" in key}
    return any(file.is_relative_to(folder) for folder in folders)


def log_figure(run: RunRef, figure: Figure, path: str) -> None:
    """Log a matplotlib figure as an image artifact of ``run``."""
    run.client.log_figure(run.run_id, figure, path)


def log_baseline_runs(
    sweep: RunRef,
    baselines: pd.DataFrame,
    specifications: dict[tuple[str, int], str],
    role: str = "baseline",
) -> dict[str, str]:
    """Each baseline forecaster of a series sweep as a child run of ``sweep`` beside the
    networks' trials, its scores under the names a network's run has (``test_mase``, a
    panel's ``test_mase/north``), so that the runs table ranks networks and baselines together
    by any metric. One run per forecaster at each sweep point and gap (its forecasts depend on
    the data alone), named like a trial without the seed (``naive-gap0``); a resumed sweep
    updates the runs it made before.

    ``baselines``: :meth:`forecast.results.Results.baseline_scores`; ``specifications``:
    (model, gap) -> the model an automatic baseline chose (the summary's column). ``role``
    (the runs' ``forecast.role`` tag): ``ensemble`` for the networks' ensembles, logged alike.
    Returns each run's id by its name.
    """
    client = sweep.client
    existing = {
        run.info.run_name: run.info.run_id
        for run in client.search_runs(
            [sweep.experiment_id],
            f"tags.mlflow.parentRunId = '{sweep.run_id}' and tags.`{ROLE_TAG}` = '{role}'",
            max_results=10_000,
        )
    }
    for (forecaster, model, point, gap), scores in baselines.groupby(
        ["forecaster", "model", "point", "gap"], sort=False
    ):
        name = f"{forecaster}-gap{gap} {point}" if point else f"{forecaster}-gap{gap}"
        run_id = existing.get(name)
        if run_id is None:
            tags = {"mlflow.parentRunId": sweep.run_id, ROLE_TAG: role}
            run_id = client.create_run(sweep.experiment_id, tags=tags, run_name=name).info.run_id
            params = {"model": forecaster, "gap": gap}
            if point:
                params["sweep_point"] = point
            if chosen := specifications.get((model, gap)):
                params["specification"] = chosen
            log_params(RunRef(client, sweep.experiment_id, run_id), params)
        metrics = {
            metric_name(metric, series or None): value
            for series, metric, value in scores[["series", "metric", "value"]].itertuples(
                index=False
            )
        }
        log_metrics(RunRef(client, sweep.experiment_id, run_id), metrics)
        client.set_terminated(run_id, "FINISHED")
        existing[name] = run_id
    return existing


# The experiment tag that holds a view of its runs table, which the UI's address names by
# ``viewStateShareKey`` (MLflow 3.18, docs/mlflow-ui.md); one per sweep, keyed by its run id.
SHARED_VIEW_TAG = "mlflow.sharedViewState."


def log_sweep_view(sweep: RunRef, rank_by: str, metrics: list[str], params: list[str]) -> None:
    """Save the view of the runs table that shows this sweep: its child runs alone (networks
    and baselines), ranked by ``rank_by`` (lowest first), with the columns of ``metrics`` and
    ``params``. :func:`forecast.ui.runs_address` links to it."""
    columns = [f"metrics.`{metric}`" for metric in dict.fromkeys([rank_by, *metrics])]
    columns += [f"params.`{param}`" for param in params]
    view = {
        "searchFilter": f"tags.mlflow.parentRunId = '{sweep.run_id}'",
        "orderByKey": f"metrics.`{rank_by}`",
        "orderByAsc": True,
        "selectedColumns": columns,
    }
    key = SHARED_VIEW_TAG + sweep.run_id
    sweep.client.set_experiment_tag(sweep.experiment_id, key, json.dumps(view))


def log_sweep_summary(
    run: RunRef,
    tables: dict[str, pd.DataFrame],
    metrics: dict[str, float],
    figures: dict[str, Figure],
    tags: dict[str, str],
) -> None:
    """The sweep's tables (file name -> table: ``trials.csv``, ``summary.csv``, ...), metrics,
    figures and tags, on its run."""
    run.client.log_batch(run.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    log_metrics(run, metrics)
    for path, figure in figures.items():
        log_figure(run, figure, path)
    for path, table in tables.items():
        run.client.log_text(run.run_id, table.to_csv(index=False), path)


def forecaster_metrics(summary: pd.DataFrame, metrics: tuple[str, ...]) -> dict[str, float]:
    """A series sweep's headline metrics as its run holds them: each row of its summary (a
    network at its sweep point, or a baseline) as ``<model>.<metric>`` for each of ``metrics``
    the table has, with ``/gap<gap>`` after it where the sweep has several gaps."""
    several_gaps = summary["gap"].nunique() > 1
    named = {}
    for _, row in summary.iterrows():
        suffix = f"/gap{row['gap']}" if several_gaps else ""
        for metric in metrics:
            if metric in row and pd.notna(row[metric]):
                named[f"{metric_key(row['model'])}.{metric}{suffix}"] = float(row[metric])
    return named


def metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits and ``_-./ `` only; a model's label (its
    sweep point) has more."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in label)


def log_params(run: RunRef, params: dict[str, Any]) -> None:
    """Log ``params`` on ``run`` (values as MLflow shows them)."""
    run.client.log_batch(run.run_id, params=[Param(k, str(v)) for k, v in params.items()])


def log_metrics(
    run: RunRef,
    metrics: dict[str, float],
    step: int = 0,
    model_id: str | None = None,
    dataset: Dataset | None = None,
) -> None:
    now = int(time.time() * 1000)
    dataset_name, dataset_digest = (dataset.name, dataset.digest) if dataset else (None, None)
    entries = [
        Metric(metric_key(key), float(value), now, step, model_id, dataset_name, dataset_digest)
        for key, value in metrics.items()
    ]
    run.client.log_batch(run.run_id, metrics=entries)
