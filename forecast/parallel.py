"""Where trials run when not in this process: a pool of local worker processes, or Ray tasks.

Both take a picklable function of one item and yield ``(item, result)`` as results arrive
(not in submission order). Nothing here knows what a trial is.

Worker processes are started with ``spawn`` (TensorFlow is not fork-safe) and each limits
TensorFlow to its share of the cores, so N workers do not oversubscribe the machine: with
N = cores, one thread each.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from forecast.config import ConfigError

Item = TypeVar("Item")
BACKENDS = ("local", "ray")


def cpu_count() -> int:
    """Cores this process may use (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# A worker's resident memory while it trains one of our models: TensorFlow, Keras and MLflow
# imported, plus the trial's data; 1.03 GB at peak in `make bench-sweep`, which prints it.
WORKER_MEMORY_BYTES = 1_200_000_000


def auto_workers(trials: int, cores: int | None = None, available: int | None = None) -> int:
    """How many worker processes a sweep of ``trials`` gets by default: one per usable core,
    no more than there are trials, and no more than the available memory holds (``cores`` and
    ``available`` bytes default to this machine's). 1 means in this process."""
    import psutil

    cores = cores if cores is not None else cpu_count()
    available = available if available is not None else psutil.virtual_memory().available
    return max(1, min(cores, trials, available // WORKER_MEMORY_BYTES))


def check_backend(backend: str, workers: int | str | None, ray_address: str | None) -> None:
    """Fail fast, before any run exists: bad worker counts, a missing Ray, an unreachable
    cluster.

    Raises:
        ConfigError: with a one-line message.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r}; choose one of local, ray")
    if workers not in (None, "auto") and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: must be a number from 1 up, or auto; got {workers!r}")
    if backend != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--backend ray: Ray is not installed; install it with `pip install 'forecast[ray]'`"
        ) from None
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local"):
        _check_reachable(address)


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Ray's own client retries for a minute or more before it gives up on a dead address."""
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address: expected HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"Ray cluster at {address} is not reachable: {reason}") from None


def limit_threads(threads: int, preload: tuple[str, ...] = ()) -> None:
    """Cap TensorFlow's thread pools in a fresh worker process, before TensorFlow starts, and
    import ``preload`` modules now rather than in the first task."""
    import importlib

    os.environ["OMP_NUM_THREADS"] = str(threads)
    # TensorFlow's libraries load in two steps, here and in the preloaded modules: each prints.
    with native_start_up_filtered():
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already started in this process (a reused Ray worker): keep it
        for module in preload:
            importlib.import_module(module)


# A line that C++ code logs through Abseil before its logging is set up: severity (Info,
# Warning, Error, Fatal), date (0000), time (00:00: and the seconds since 1970), thread,
# file:line.
_NATIVE_LOG_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_NATIVE_LOG_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITIES = b"IWEF"  # TF_CPP_MIN_LOG_LEVEL 1 hides I, 2 also W, 3 also E; F always shows


@contextlib.contextmanager
def native_start_up_filtered() -> Iterator[None]:
    """While inside (around ``import tensorflow``), drop from stderr the lines that
    ``TF_CPP_MIN_LOG_LEVEL`` asks to hide but TensorFlow's C++ libraries print anyway as they
    load: Abseil writes every message logged before its set-up, whatever the level (oneDNN is
    on, no CUDA driver found), with a notice saying so. Every other line passes through as it
    comes, so an error while importing still shows."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    hidden = _SEVERITIES[: int(level)] if level in ("1", "2", "3") else b""
    if not hidden:
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                severity = _NATIVE_LOG_LINE.match(line)
                if line.startswith(_NATIVE_LOG_NOTICE) or (severity and severity[1] in hidden):
                    continue
                os.write(stderr, line)

    thread = threading.Thread(target=forward, name="native-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(timeout=10)
        if not thread.is_alive():  # else a child process holds the pipe: leave both open
            os.close(stderr)


@contextlib.contextmanager
def process_pool(workers: int, preload: tuple[str, ...] = ()) -> Iterator[ProcessPoolExecutor]:
    """``workers`` spawned processes, started at once so that they import TensorFlow (several
    seconds each) while the caller prepares the sweep.

    Only the caller stops them: they ignore the signals a terminal sends its whole process
    group (Ctrl-C, hang-up). A task interrupted inside a library could end in any exception
    and be taken for a failure; a worker the caller terminates (SIGTERM) ends at once, its
    task unfinished."""
    threads = max(1, cpu_count() // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(threads, preload),
    )
    for _ in range(workers):
        pool.submit(int)  # each submission to a busy pool spawns one more worker
    try:
        yield pool
    except BaseException:
        stop_pool(pool)  # on Ctrl-C, SIGTERM or an error
        raise
    # Every task is done: let the workers exit (TensorFlow takes a while) in the background.
    pool.shutdown(wait=False)


def _start_worker(threads: int, preload: tuple[str, ...]) -> None:
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    limit_threads(threads, preload)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers, running tasks and all, drop the tasks not started, and
    return once every worker has exited."""
    for worker in multiprocessing.active_children():
        worker.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_in_pool(
    pool: ProcessPoolExecutor, function: Callable[[Item], Any], items: Iterable[Item]
) -> Iterator[tuple[Item, Any]]:
    """Run ``function`` over ``items`` in the pool's processes. Closed (or interrupted) before
    the last result, it stops the pool (:func:`stop_pool`): no task runs on after it."""
    futures = {pool.submit(function, item): item for item in items}
    try:
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        if not all(future.done() for future in futures):
            stop_pool(pool)


def connect_ray(address: str | None) -> int:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a local Ray instance; a Ray
    already initialised in this process (``ray.init(...)`` by the caller) is used as it is.
    Returns the number of live nodes."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def ray_cpus() -> int:
    """The CPUs of the Ray cluster this process is connected to: how many one-CPU tasks run
    at once."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_on_ray(
    function: Callable[[Item], Any],
    items: Iterable[Item],
    address: str | None,
    max_in_flight: int | None = None,
    cpus_per_item: int = 1,
    cancel_wait: float = 30.0,
) -> Iterator[tuple[Item, Any]]:
    """Run ``function`` over ``items`` as Ray tasks, each asking for ``cpus_per_item`` CPUs.

    Connects first, as :func:`connect_ray` does. Closed (or interrupted) before the last
    result, it cancels the tasks still running and waits (up to ``cancel_wait`` seconds) until
    they have stopped.
    """
    import ray

    connect_ray(address)
    task = ray.remote(num_cpus=cpus_per_item, max_retries=0)(_ray_call)
    pending: dict[Any, Item] = {}
    queue = list(items)
    limit = max_in_flight or len(queue)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                item = queue.pop(0)
                pending[task.remote(function, item, cpus_per_item)] = item
            ready, _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready[0])
            yield item, ray.get(ready[0])
    finally:
        for reference in pending:
            ray.cancel(reference, force=True)
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=cancel_wait)


def _ray_call(function: Callable[[Any], Any], item: Any, threads: int) -> Any:
    limit_threads(threads)
    return function(item)
