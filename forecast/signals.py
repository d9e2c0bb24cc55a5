"""The signals that stop a long command (``forecast run``'s sweep, ``forecast ui``'s server):
Ctrl-C, ``kill`` or a service manager, a closed terminal."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals(
    exception: type[BaseException] = KeyboardInterrupt, once: bool = False
) -> Iterator[threading.Event]:
    """While inside, each of :data:`STOP_SIGNALS` sets the event yielded and raises
    ``exception`` wherever the main thread is (with ``once``, only the first; later ones are
    ignored). SIGHUP is left alone where it is ignored, as under ``nohup``. Off the main
    thread, where handlers cannot be set, the event is yielded and nothing else is done.

    Raised inside a finalizer or a weakref callback, the interrupt is swallowed by Python,
    which prints "Exception ignored in"; such a swallowed KeyboardInterrupt is not printed:
    the event tells the caller, which checks it where it can stop.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupt(signum: int, frame: Any) -> None:
        if once and stop.is_set():
            return
        stop.set()
        raise exception

    def drop_swallowed_interrupts(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            print_unraisable(unraisable)

    handlers = {
        number: signal.signal(number, interrupt)
        for number in STOP_SIGNALS
        if not (number == signal.SIGHUP and signal.getsignal(number) == signal.SIG_IGN)
    }
    print_unraisable, sys.unraisablehook = sys.unraisablehook, drop_swallowed_interrupts
    try:
        yield stop
    finally:
        sys.unraisablehook = print_unraisable
        for number, handler in handlers.items():
            signal.signal(number, handler)
