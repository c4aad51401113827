"""Work that holds a lease while it runs: a spawn, a copy of a participant's
files. The heartbeat takes a row whose lease ran out for abandoned (its
worker died), so a long call must keep renewing it."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")


def renewing_while(call: Callable[[], T], *, renew: Callable[[], object], every: float, name: str) -> T:
    """Run ``call`` in a thread of its own while this one calls ``renew``
    every ``every`` seconds until it is done; returns what it returned (or
    raises what it raised). Only this thread touches the database."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as executor:
        outcome = executor.submit(call)
        while True:
            try:
                return outcome.result(timeout=every)
            except FutureTimeout:
                renew()
