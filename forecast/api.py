"""The Python API: :func:`run` an experiment and get its :class:`forecast.results.Results`, or
:func:`load` those of a sweep run before. ``import forecast`` loads neither TensorFlow nor
MLflow; each function imports what it needs when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecast.config import ConfigError, build_config, load_experiment, validate, with_overrides

if TYPE_CHECKING:
    from forecast.results import Results
    from forecast.tracker import Tracker


def run(
    experiment: str | Path | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    workers: int | str = 1,
    backend: str = "local",
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    system_metrics: bool = False,
    tracker: Tracker | None = None,
    log: Callable[[str], None] | None = print,
) -> Results:
    """Run an experiment, log it to MLflow as ``forecast run`` does, and return its results.

    Args:
        experiment: a name from ``forecast list``, a YAML file's path, or the config itself
            as a dict (as the YAML file would hold it).
        overrides: dotted config keys and their values, as ``--set`` takes them, e.g.
            ``{"train.epochs": 3, "seeds": [0, 1]}``.
        name: the experiment's name in MLflow (default: the file's name; ``experiment`` for
            a dict).
        workers: trials at once: 1 (default) in this process, a number of worker processes,
            or ``"auto"``; a script that starts workers needs an
            ``if __name__ == "__main__":`` guard, as every spawned process does.
        backend, ray_address, system_metrics: as ``forecast run``'s options.
        tracking_uri: the MLflow store (default: ``MLFLOW_TRACKING_URI``, else ``mlflow.db``
            in the project).
        tracker: who records the sweep instead of MLflow, e.g.
            :class:`forecast.tracker.MemoryTracker` (nothing written; one worker).
        log: what hears each progress line (None: silence).

    Raises:
        forecast.config.ConfigError: a bad config key or value, naming it (also for an
            unreachable tracking store: :class:`forecast.tracking.TrackingError`).
        forecast.data.DataError: a series that cannot be loaded or windowed.
    """
    if isinstance(experiment, dict):
        config = build_config(experiment, where="experiment")
        found = name or "experiment"
    else:
        found, config = load_experiment(str(experiment))
        found = name or found
    if overrides:
        config = build_config(with_overrides(config, overrides), where="overrides")
    validate(config)
    if tracker is not None and (tracking_uri is not None or system_metrics):
        raise ConfigError("tracker: tracking_uri and system_metrics are MLflow's; pass either")
    # A series read and split before TensorFlow loads: a data problem is raised at once.
    from forecast.data import prepare_unswept

    prepared = prepare_unswept(config)
    # Before TensorFlow is first imported: its C++ start-up lines are not the user's business.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from forecast.parallel import native_start_up_filtered
    from forecast.paths import tracking_uri as default_uri

    with native_start_up_filtered():
        from forecast.runner import run_experiment
    from forecast.mlflow_tracker import MLflowTracker

    tracker = tracker or MLflowTracker(tracking_uri or default_uri(), system_metrics)
    quiet = log or (lambda line: None)
    return run_experiment(found, config, quiet, workers, backend, ray_address, tracker, prepared)


def load(run_or_experiment: str, tracking_uri: str | None = None) -> Results:
    """The :class:`forecast.results.Results` of a sweep in the MLflow store, rebuilt as
    :func:`run` returned them: ``run_or_experiment`` is the sweep's parent run id (see
    ``forecast runs``) or an experiment's name (its latest sweep).

    Raises:
        forecast.tracking.TrackingError: no such run or experiment, or a store that is not
            reachable.
    """
    from forecast.results import load as load_results

    return load_results(run_or_experiment, tracking_uri)
