"""Optuna searches: a sweep's ``search: optuna`` section as a study, with its sampler and
pruner, what one trial samples and reports, and what a finished study shows.

The study lives in a database (an SQLAlchemy URL; by default ``optuna.db`` beside a local
``mlflow.db``). Every process that runs a search's trials (this one, a worker process, a Ray
task) opens it, asks it for a trial, reports that trial's metric after each epoch to the
pruner and tells it the result, so that parallel trials learn from one another through the
database, as Optuna's own distributed optimisation does. A study is named after its sweep's
record (its MLflow parent run): resuming the run resumes the study, and what it had learned.

:class:`OptunaSearch` is the runner's strategy for a search, beside
:class:`forecast.grid.GridSweep` for a plan's trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from forecast import plots
from forecast.config import ConfigError, ExperimentConfig, one_line
from forecast.execution import TrialContext, Work, timed_trial
from forecast.paths import project_root
from forecast.results import Results
from forecast.sweep import SEARCH_METRICS, Dimension, point_label, resolve_point, search_space
from forecast.tracker import SweepRecord, TrialReport
from forecast.training import GiveUp, Pruner
from forecast.trial import Trial


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


def resume(study: optuna.Study, finished: dict[int, tuple[str, float]] | None = None) -> int:
    """Ready ``study`` to go on after an interruption; returns how many of its trials count
    against ``n_trials`` (complete, pruned, or failed on their own).

    ``finished``: origin (see :func:`origin`) -> (state, value) of each trial whose record
    finished. A trial still RUNNING whose record finished was stopped between the two (its
    process killed after its run ended, before it told the study): the study is told what the
    record holds, so that it does not run again. Every other trial still RUNNING was stopped
    with the sweep: it is marked failed and asked for again with the same values, the new
    trial's ``retries`` naming it and its ``origin`` the first trial of those values, whose
    MLflow run's backup it resumes.
    """
    finished = finished or {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if (recorded := finished.get(origin(trial))) is not None:
            state, value = recorded
            if state == "pruned":
                study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
            elif math.isfinite(value):
                study.tell(trial.number, value, skip_if_finished=True)
            else:
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        first = origin(trial)
        study.enqueue_trial(trial.params, user_attrs={"retries": trial.number, "origin": first})
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


@dataclass(frozen=True)
class OptunaSearch:
    """A search's ``n_trials``, each asked of the study and sampled from ``template``, the one
    trial the plan checked."""

    settings: SearchSettings  # its study_name set per sweep, see study_settings
    template: Trial

    def params(self) -> dict[str, Any]:
        """What the sweep's record shows of it besides the config."""
        settings = self.settings
        return {
            "gaps": [self.template.gap],
            "sweep_points": settings.n_trials,
            "search": f"optuna {settings.sampler}",
            "pruner": settings.pruner,
            "search_metric": f"{settings.metric} ({settings.direction})",
            "search_space": ",".join(settings.space),
            "study_storage": settings.storage,
        }

    def study_settings(self, name: str, sweep: SweepRecord) -> SearchSettings:
        """The settings of the sweep's own study: a resumed sweep resumes it."""
        return dataclasses.replace(self.settings, study_name=f"{name}-{sweep.id}")

    def begin(
        self,
        name: str,
        sweep: SweepRecord,
        context: TrialContext,
        done: dict[str, TrialReport],
        where: str,
        log: Callable[[str], None],
    ) -> Work:
        """The slots of the trials the study has yet to run (a resumed study's failed and
        unfinished trials are asked again)."""
        settings = self.study_settings(name, sweep)
        sweep.log_params({"study": settings.study_name})
        study = open_study(settings)
        recorded = {
            int(report.row["search_trial"]): (
                report.row.get("state", "complete"),
                float(report.row.get(settings.metric, math.nan)),
            )
            for report in done.values()
            if "search_trial" in report.row
        }
        searched = resume(study, recorded)
        slots = [
            SearchSlot(len(study.trials) + index, self.template.work)
            for index in range(max(0, settings.n_trials - searched))
        ]
        resuming = f" (resuming run {sweep.id}: {searched} searched)" if sweep.resumed else ""
        log(
            f"{name}: optuna search of {settings.n_trials} trials ({settings.sampler}, "
            f"pruner {settings.pruner}) on {where}, study {settings.study_name} in "
            f"{settings.storage}{resuming}"
        )
        execute = functools.partial(
            run_search_slot, settings=settings, template=self.template, context=context
        )
        # (Its slots are not trials yet: the trial they sample from tells what they set up.)
        return Work(slots, slots, execute, [self.template])

    def reports(
        self, done: dict[str, TrialReport], collected: dict[str, TrialReport]
    ) -> list[TrialReport]:
        """In the order they were asked for, each sampled point once."""
        ran = {**done, **{r.trial_hash or key: r for key, r in collected.items()}}
        return list(ran.values())

    def summary(
        self,
        name: str,
        sweep: SweepRecord,
        config: ExperimentConfig,
        found: Results,
        reports: list[TrialReport],
        tables: dict[str, pd.DataFrame],
        log: Callable[[str], None],
    ) -> tuple[dict[str, float], dict[str, Figure]]:
        """The search's metric (the best value found), its trials as the study saw them
        (``search.csv``, added to ``tables``), and its figures: the optimisation history and
        the parameters' importances."""
        settings = self.study_settings(name, sweep)
        study = open_study(settings)
        searched = tables["search.csv"] = trials_table(study)
        scored = searched[searched["state"] == "complete"] if len(searched) else searched
        if not len(scored):
            log(f"{name}: no trial of the search completed")
            return {}, {}
        minimize = settings.direction == "minimize"
        best = scored.loc[scored["value"].idxmin() if minimize else scored["value"].idxmax()]
        values = ", ".join(
            f"{key}={best[key]:.4g}" if isinstance(best[key], float) else f"{key}={best[key]}"
            for key in settings.space
        )
        log(
            f"{name}: best {settings.metric} {best['value']:.4g} (trial {best['number']}: {values})"
        )
        counts = searched["state"].value_counts()
        log(
            f"{name}: {counts.get('complete', 0)} trials complete, {counts.get('pruned', 0)} "
            f"pruned, {counts.get('fail', 0)} failed"
        )
        figures = {
            "optimization_history.png": plots.search_history(
                searched, settings.metric, settings.direction, f"{name}: optimisation history"
            )
        }
        if importances := param_importances(study):
            figures["param_importances.png"] = plots.param_importances(
                importances, f"{name}: what {settings.metric} depends on"
            )
        return {f"best_{settings.metric}": float(best["value"])}, figures


@dataclass(frozen=True)
class SearchSlot:
    """The ``number``-th trial an Optuna search asks its study for, before it is sampled: what
    the sweep hands a worker and waits on."""

    number: int
    work: float  # as Trial.work, for the ETA: that of the trial the plan checked

    @property
    def digest(self) -> str:
        return f"search-{self.number}"

    @property
    def run_name(self) -> str:
        return f"search trial {self.number}"


def run_search_slot(
    slot: SearchSlot,
    settings: SearchSettings,
    template: Trial,
    context: TrialContext,
    stop: threading.Event | None = None,
) -> TrialReport:
    """One trial of an Optuna search, in whichever process runs it: ask the study for a point
    (``template``'s config with sampled values), run it as
    :func:`forecast.execution.timed_trial` does, reporting each epoch's metric to the study's
    pruner, and tell the study how it ended: its last value, pruned, or failed. Its record's
    params include the sampled values and the Optuna trial's number (``search_trial``)."""
    start = time.perf_counter()
    study = open_study(settings, trial_seed(settings, slot.number))
    asked = study.ask()
    number = origin(asked)
    sampled = sample(asked, settings.space)
    try:
        sampled, config = resolve_point(template.config, sampled)
    except ConfigError as error:  # a combination of values the plan's probes did not meet
        study.tell(asked, state=TrialState.FAIL)
        label = f"#{number} {point_label(sampled)}"
        run_name = f"{slot.run_name} ({point_label(sampled)})"
        row = {
            "trial": run_name,
            "model": f"{template.model.name} [{label}]",
            "network": template.model.name,
            "point": label,
            "search_trial": number,
            **sampled,
        }
        return TrialReport(
            {**row, "gap": template.gap, "seed": template.seed, "state": "failed"},
            {},
            "",
            str(error),
            seconds=time.perf_counter() - start,
            process=os.getpid(),
            run_name=run_name,
        )
    # The series' folds the plan prepared serve every point that leaves the data as it is.
    prepared = template.prepared if config.data == template.config.data else None
    trial = Trial(
        config,
        config.models[0],
        template.gap,
        template.seed,
        f"#{number} {point_label(sampled)}",
        prepared,
        search_trial=number,
        classes=template.classes,
    )
    pruner = reporting_pruner(asked, settings.metric)
    searched = {"search_trial": number, **sampled}
    report = timed_trial(trial, context, stop, pruner, searched)
    report = dataclasses.replace(report, row={**report.row, **searched})
    value = report.row.get(settings.metric, float("nan"))
    if report.failure is not None or not np.isfinite(value):
        study.tell(asked, state=TrialState.FAIL)
    elif report.pruned_at is not None:
        study.tell(asked, state=TrialState.PRUNED)
    else:
        study.tell(asked, value)
    return report
