"""A sweep's progress as it runs: a line per finished trial with the elapsed time and an ETA,
and a heartbeat line while none comes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from forecast.trial import Trial


class Pending(Protocol):
    """What progress needs of a trial waiting to run (a planned trial, or a search's slot)."""

    digest: str  # what identifies it among the sweep's trials
    work: float  # its relative cost (forecast.trial.Trial.work)
    run_name: str


class Finished(Protocol):
    """What progress needs of a finished trial's report (forecast.tracker.TrialReport)."""

    row: dict[str, Any]  # its line in the trials table
    failure: str | None
    seconds: float  # its time in the process that ran it
    process: int  # that process's id
    run_name: str
    pruned_at: int | None


def collect(
    reports: Iterator[tuple[Pending, Finished]],
    pending: Sequence[Pending],
    log: Callable[[str], None],
    stop: threading.Event,
    name: str,
    processes: int,
    ratio: str = "mse_ratio",
) -> dict[str, Finished]:
    """Trial hash -> report, as reports arrive, with a progress line for each (and, while
    none comes for :data:`HEARTBEAT_SECONDS`, a line saying how far the sweep is); raises
    KeyboardInterrupt between trials once ``stop`` is set. ``processes``: how many trials
    run at once; ``ratio``: the column that measures a trial against its baseline
    (forecast.results.Kind.ratio), which says what errors its line shows."""
    collected: dict[str, Finished] = {}
    timings: list[TrialTiming] = []
    processes_seen: set[int] = set()  # a process runs one trial at a time: its first report
    start = time.perf_counter()

    def how_far() -> str:
        elapsed = time.perf_counter() - start
        return f"{name}: {len(collected)}/{len(pending)} trials done (elapsed {elapsed:.0f}s)"

    with heartbeat(log, how_far) as log:
        for index, (trial, report) in enumerate(reports, 1):
            if stop.is_set():
                raise KeyboardInterrupt
            collected[trial.digest] = report
            first_in_process = report.process not in processes_seen
            processes_seen.add(report.process)
            if report.failure is None:  # a failure's time says nothing of the others'
                timings.append(TrialTiming(trial.work, report.seconds, first_in_process))
            remaining = [t.work for t in pending if t.digest not in collected]
            log(
                trial_line(
                    f"[{index}/{len(pending)}] {report.run_name or trial.run_name}",
                    report,
                    time.perf_counter() - start,
                    eta_seconds(timings, remaining, processes),
                    last=not remaining,
                    ratio=ratio,
                )
            )
    return collected


HEARTBEAT_SECONDS = 30.0  # the longest the sweep stays silent while trials run


@contextlib.contextmanager
def heartbeat(
    log: Callable[[str], None], status: Callable[[], str], every: float = HEARTBEAT_SECONDS
) -> Iterator[Callable[[str], None]]:
    """Yields ``log`` for the lines of the sweep; whenever none came for ``every`` seconds
    (the first trials, which also pay the one-off costs, can take minutes), a thread logs
    ``status()``."""
    last = time.monotonic()
    lock = threading.Lock()
    done = threading.Event()

    def logged(line: str) -> None:
        nonlocal last
        with lock:
            log(line)
            last = time.monotonic()

    def beat() -> None:
        while not done.wait(max(0.1, last + every - time.monotonic())):
            if time.monotonic() - last >= every:
                logged(status())

    thread = threading.Thread(target=beat, name="progress", daemon=True)
    thread.start()
    try:
        yield logged
    finally:
        done.set()
        thread.join()


class TrialTiming(NamedTuple):
    """A finished trial, as the ETA sees it."""

    work: float  # Trial.work: its relative cost
    seconds: float  # its time in the process that ran it
    first_in_process: bool  # it paid that process's one-off costs


def eta_seconds(
    finished: Sequence[TrialTiming], remaining: Sequence[float], processes: int = 1
) -> float | None:
    """Seconds until trials of ``remaining`` work (:attr:`Trial.work` each) finish, ``processes``
    at a time, at the pace of the ``finished`` trials; None until there is a basis.

    The basis is the trials that were not the first in their process: a first trial also pays
    that process's one-off costs (TensorFlow tracing its first graphs, a series' fitted
    baselines), and to extrapolate from it would overstate the rest many times. The pace is
    seconds per unit of work over those trials' own durations, not the sweep's wall time, so
    that trials waiting for a worker do not count as work. With several processes the
    remaining work is shared among them, but no sooner than its longest trial alone.
    """
    if not remaining:
        return 0.0
    basis = [timing for timing in finished if not timing.first_in_process]
    work = sum(timing.work for timing in basis)
    if not basis or work <= 0:
        return None
    pace = sum(timing.seconds for timing in basis) / work
    at_once = max(1, min(processes, len(remaining)))
    return pace * max(sum(remaining) / at_once, max(remaining))


def trial_line(
    prefix: str,
    report: Finished,
    elapsed: float,
    eta: float | None,
    last: bool = False,
    ratio: str = "mse_ratio",
) -> str:
    """A trial's progress line: its errors (or its failure; see :func:`trial_errors` for
    ``ratio``), its training time, the sweep's elapsed time and ETA (``None``: no basis yet;
    none on the ``last`` trial's line)."""
    if report.failure is not None:
        return f"{prefix}: FAILED: {report.failure}"
    if last:
        timing = f"elapsed {elapsed:.0f}s"
    elif eta is None:
        timing = f"elapsed {elapsed:.0f}s, ETA after the first trials"
    else:
        timing = f"elapsed {elapsed:.0f}s, ETA {eta:.0f}s"
    row = report.row
    pruned = f", pruned after epoch {report.pruned_at}" if report.pruned_at else ""
    errors = trial_errors(row, ratio)
    return f"{prefix}: {errors}, {row['train_seconds']:.1f}s{pruned} ({timing})"


def trial_errors(row: dict[str, Any], ratio: str = "mse_ratio") -> str:
    """A finished trial's headline errors, by the column that measures it against its baseline
    (``ratio``, forecast.results.Kind.ratio): a series' forecasting errors (``test_mase``: MAE,
    and MASE, scaled by its naive forecast's in-sample error), a task's test loss and its
    ratio to the trivial baseline's (``mse_ratio``, or ``cross_entropy_ratio``)."""
    if ratio == "cross_entropy_ratio":
        return (
            f"test cross-entropy {row['test_cross_entropy']:.4g}, "
            f"ratio {row['cross_entropy_ratio']:.3f}"
        )
    if ratio == "test_mase":
        return f"test MAE {row['test_mae']:.4g}, MASE {row['test_mase']:.3f}"
    return f"test MSE {row['test_mse']:.4g}, ratio {row['mse_ratio']:.3f}"


def solved_line(solved: dict[str, int]) -> str:
    """The largest gap each model solved (:func:`forecast.evaluation.max_solved_gap`, -1 for
    none), as the sweep prints it."""
    gaps = (f"{model} {gap if gap >= 0 else 'none'}" for model, gap in solved.items())
    return "largest solved gap: " + ", ".join(gaps)


def first_trial_note(trials: Sequence[Trial]) -> str | None:
    """What the first trial in each process does besides training, where it takes long: fit
    a series' fitted baselines on every fold (forecast.forecasters keeps their forecasts for
    the trials after it). None when there is nothing such."""
    series = [trial.config.data for trial in trials if trial.config.data is not None]
    fitted = list(dict.fromkeys(name for data in series for name in data.baselines))
    if not fitted:
        return None
    names = ", ".join(fitted)  # in the config's order
    folds = max(data.backtest.folds for data in series if data.baselines)
    on = f"each of {folds} folds" if folds > 1 else "the series"
    return (
        f"the first trial in each process also fits {names} on {on}, which can take minutes; "
        "the trials after it reuse those forecasts"
    )
