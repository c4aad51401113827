"""At most TMPNB_WEB_CONCURRENCY requests of a web process run at once.

A web process has a thread for each request it holds (gunicorn's threads, as
many as the waiting room's long polls need), but one interpreter lock: in a
burst, two dozen threads running Django at once spent a third more CPU
handing that lock to each other (docs/performance.md). The others wait here, on
a semaphore that costs nothing while they wait. A request that blocks on
something slow (a waiting visitor's long poll, a Docker call) sets its turn
aside while it blocks, and a request with a large body (an organiser's
upload, read from the network as it is parsed) takes none.
"""

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection

LARGE_BODY = 64 * 1024  # bytes

_running: threading.BoundedSemaphore | None = None
_made = threading.Lock()  # the first requests of a process arrive together
_holder = threading.local()


def _semaphore() -> threading.BoundedSemaphore:
    global _running
    with _made:
        if _running is None:
            _running = threading.BoundedSemaphore(settings.TMPNB_WEB_CONCURRENCY)
        return _running


class RunningLimit:
    """WSGI middleware: the request runs once it has a turn. The answer's body
    is written after the turn is given back."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _body_length(environ) > LARGE_BODY:
            return self.application(environ, start_response)
        with _turn():
            return self.application(environ, start_response)


def _body_length(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django answers it


@contextmanager
def _turn() -> Iterator[None]:
    running = _semaphore()
    running.acquire()
    _holder.turn = True
    try:
        yield
    finally:
        _holder.turn = False
        running.release()


@contextmanager
def turn_set_aside() -> Iterator[None]:
    """Give the turn to another request while this one blocks; outside a web
    request (the worker, a test) there is none to give. Inside a transaction
    the turn is kept: the request holds the database's write lock, which the
    requests given its turn could be waiting for, and it would then wait for
    them."""
    if not getattr(_holder, "turn", False) or connection.in_atomic_block:
        yield
        return
    running = _semaphore()
    _holder.turn = False
    running.release()
    try:
        yield
    finally:
        running.acquire()
        _holder.turn = True
