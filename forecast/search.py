"""Optuna searches: a sweep's ``search: optuna`` section as a study, with its sampler and
pruner, what one trial samples and reports, and what a finished study shows.

The study lives in a database (an SQLAlchemy URL; by default ``optuna.db`` beside a local
``mlflow.db``). Every process that runs a search's trials (this one, a worker process, a Ray
task) opens it, asks it for a trial, reports that trial's metric after each epoch to the
pruner and tells it the result, so that parallel trials learn from one another through the
database, as Optuna's own distributed optimisation does. A study is named after its sweep's
MLflow parent run: resuming the run resumes the study, and what it had learned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from forecast.config import ConfigError, ExperimentConfig, one_line
from forecast.paths import project_root
from forecast.sweep import SEARCH_METRICS, Dimension, search_space
from forecast.training import GiveUp, Pruner


@dataclass(frozen=True)
class SearchSettings:
    """What a process needs to open a sweep's study and run one of its trials: picklable, for
    worker processes and Ray tasks."""

    storage: str  # an SQLAlchemy URL
    study_name: str  # "" until the sweep's run exists: then NAME-RUNID
    space: dict[str, Dimension]
    sampler: str
    seed: int
    pruner: str
    prune_after: int
    epochs: int
    give_up: tuple[int, float] | None  # train.give_up_epoch and _ratio
    metric: str
    direction: str
    n_trials: int


def search_settings(config: ExperimentConfig, tracking_uri: str | None) -> SearchSettings:
    """The settings of ``config``'s Optuna search, its study in ``sweep.storage`` or beside the
    tracking store at ``tracking_uri`` (None: in the project); the study's name is set once the
    sweep's run exists."""
    sweep, train = config.sweep, config.train
    give_up = None if train.give_up_epoch is None else (train.give_up_epoch, train.give_up_ratio)
    pruner = sweep.pruner or ("give_up" if give_up is not None else "median")
    return SearchSettings(
        storage=sweep.storage or default_storage(tracking_uri),
        study_name="",
        space=search_space(config),
        sampler=sweep.sampler,
        seed=sweep.seed,
        pruner=pruner,
        prune_after=sweep.prune_after,
        epochs=train.epochs,
        give_up=give_up,
        metric=sweep.metric,
        direction=sweep.direction or SEARCH_METRICS[sweep.metric],
        n_trials=sweep.n_trials,
    )


def default_storage(tracking_uri: str | None) -> str:
    """``optuna.db`` in the folder of a local sqlite ``mlflow.db``, or in the project root when
    MLflow is a server or not the tracker."""
    folder = project_root()
    if tracking_uri is not None and tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    return f"sqlite:///{folder / 'optuna.db'}"


def is_local_storage(url: str) -> bool:
    """Whether only this machine reaches the study (a sqlite file)."""
    return url.startswith("sqlite:")


def check_storage(url: str) -> None:
    """Open the study database at ``url`` (creating its tables), so that a bad URL fails
    before any run exists.

    Raises:
        ConfigError: naming the URL and the database's reason, in one line.
    """
    _storage(url)


def open_study(settings: SearchSettings, sampler_seed: int | None = None) -> optuna.Study:
    """The sweep's study, created on first use, with a sampler seeded by ``sampler_seed`` (a
    trial's own: see :func:`trial_seed`; default ``sweep.seed``) and the configured pruner.

    Raises:
        ConfigError: a storage URL that cannot be opened, in one line.
    """
    return optuna.create_study(
        storage=_storage(settings.storage),
        study_name=settings.study_name,
        sampler=_sampler(settings, sampler_seed),
        pruner=_pruner(settings),
        direction=settings.direction,
        load_if_exists=True,
    )


# One storage (a database engine and its connections) per URL and process, however many
# trials the process asks for.
@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial: the sweep logs
    # Worker processes write to one sqlite file at once: each waits for the lock, not fails.
    options = {"connect_args": {"timeout": 60}} if is_local_storage(url) else None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=options)
    except Exception as error:  # SQLAlchemy's and the database drivers' errors, or a bad URL
        if not isinstance(error, ImportError | ValueError) and not _from_sqlalchemy(error):
            raise
        cause = getattr(error, "orig", None) or error
        reason = one_line(cause, with_type=False)
        raise ConfigError(f"sweep.storage: cannot open {url}: {reason}") from None


def _from_sqlalchemy(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] == "sqlalchemy"


def trial_seed(settings: SearchSettings, slot: int) -> int:
    """The sampler's seed for the ``slot``-th trial asked of a search: one per trial, so that
    workers asking at once do not draw alike, and independent across search seeds."""
    return int(np.random.SeedSequence([settings.seed, slot]).generate_state(1)[0])


def _sampler(settings: SearchSettings, seed: int | None) -> optuna.samplers.BaseSampler:
    seed = settings.seed if seed is None else seed
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    # Asked while other trials still run, TPE counts them as bad ("constant liar"), so that
    # parallel workers spread out rather than sample alike.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=settings.prune_after - 1)
    if settings.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=settings.prune_after)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=settings.prune_after, max_resource=settings.epochs
        )
    if settings.pruner == "give_up":
        return GiveUpPruner(GiveUp(*settings.give_up))
    return optuna.pruners.NopPruner()


class GiveUpPruner(optuna.pruners.BasePruner):
    """The give-up rule (:class:`forecast.training.GiveUp`) as an Optuna pruner, on the
    trial's reported validation ratios."""

    def __init__(self, rule: GiveUp) -> None:
        self.rule = rule

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.last_step is None:
            return False
        return self.rule.stops(trial.last_step, min(trial.intermediate_values.values()))


def sample(trial: optuna.Trial, space: dict[str, Dimension]) -> dict[str, Any]:
    """One value for each key of ``space``, asked of ``trial`` (whose sampler picks it)."""
    values = {}
    for key, dimension in space.items():
        if dimension.kind == "choice":
            values[key] = trial.suggest_categorical(key, dimension.values)
        elif dimension.kind == "randint":
            values[key] = trial.suggest_int(
                key,
                dimension.lowest,
                dimension.highest,
                step=dimension.step or 1,
                log=dimension.log,
            )
        else:
            values[key] = trial.suggest_float(
                key, dimension.lowest, dimension.highest, step=dimension.step, log=dimension.log
            )
    return values


def reporting_pruner(trial: optuna.Trial, metric: str) -> Pruner:
    """A :data:`forecast.training.Pruner` that reports each epoch's ``metric`` to ``trial``
    and stops when the study's pruner prunes it."""

    def prune(epoch: int, logs: dict[str, float]) -> bool:
        if metric not in logs or not math.isfinite(logs[metric]):
            return False
        trial.report(logs[metric], step=epoch)
        return trial.should_prune()

    return prune


def resume(study: optuna.Study) -> int:
    """Ready ``study`` to go on after an interruption; returns how many of its trials count
    against ``n_trials`` (complete, pruned, or failed on their own).

    Trials still RUNNING were stopped with the sweep: each is marked failed and asked for again
    with the same values, the new trial's ``retries`` naming it and its ``origin`` the first
    trial of those values (see :func:`origin`), whose MLflow run's backup it resumes.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        origin = trial.user_attrs.get("origin", trial.number)
        study.enqueue_trial(trial.params, user_attrs={"retries": trial.number, "origin": origin})
    return len(_searched(study))


def origin(trial: optuna.Trial) -> int:
    """The number of the trial that ``trial`` retries after interruptions, else its own."""
    return trial.user_attrs.get("origin", trial.number)


def _searched(study: optuna.Study) -> list[FrozenTrial]:
    """The finished trials, but for those an interruption stopped (asked for again)."""
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs["retries"] for trial in trials if "retries" in trial.user_attrs}
    return [t for t in trials if t.state.is_finished() and t.number not in retried]


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial the search ran (not those an interruption stopped): ``number``,
    ``state`` (complete, pruned, fail), ``value`` (a pruned trial's last report), ``epochs``
    (reported) and each sampled parameter."""
    return pd.DataFrame(
        [
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value if trial.value is not None else _last_value(trial),
                "epochs": len(trial.intermediate_values),
                **trial.params,
            }
            for trial in _searched(study)
        ]
    )


def _last_value(trial: FrozenTrial) -> float:
    if not trial.intermediate_values:
        return float("nan")
    return trial.intermediate_values[max(trial.intermediate_values)]


def param_importances(study: optuna.Study) -> dict[str, float]:
    """How much the complete trials' values depend on each sampled parameter, summing to 1:
    Optuna's default evaluator, PED-ANOVA (how differently a parameter is distributed among
    the best trials than among all); empty until two trials complete with different
    values."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or len({trial.value for trial in complete}) < 2:
        return {}
    with _quiet_optuna():
        try:
            return optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # e.g. every parameter took a single value
            return {}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
