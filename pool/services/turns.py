"""A waiting visitor learns at once that their turn has come: the code that
serves them drops a note in Redis, and their status request, blocked on that
note, answers as soon as it arrives.

A blocked status request holds one web thread, so each process lets at most
TMPNB_LONG_POLLS of them block at once; the rest are told to ask again soon.
Without Redis nothing blocks: the visitor polls, as before.
"""

import logging
import threading

import redis
from django.conf import settings

from pool.models import visitor_tag
from tmpnb_site.concurrency import turn_set_aside

log = logging.getLogger(__name__)

NOTE_SECONDS = 60  # an unread note (the visitor left, or was served by a reload) expires
QUICK_SECONDS = 0.5  # Redis answers a push at once, or is taken for away

_clients: dict[float, redis.Redis] = {}  # socket timeout -> client; each keeps a pool of connections shared by the threads
_clients_lock = threading.Lock()
_long_polls: threading.BoundedSemaphore | None = None
_long_polls_made = threading.Lock()


def _redis(socket_timeout: float = QUICK_SECONDS) -> redis.Redis:
    with _clients_lock:
        if socket_timeout not in _clients:
            _clients[socket_timeout] = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=QUICK_SECONDS, socket_timeout=socket_timeout)
        return _clients[socket_timeout]


def _key(visitor: str) -> str:
    return f"tmpnb:turn:{visitor_tag(visitor)}"


def announce_turn(visitor: str) -> None:
    """Wake the visitor's waiting status request (if any) after a commit."""
    try:
        pipeline = _redis().pipeline()
        pipeline.rpush(_key(visitor), 1)
        pipeline.expire(_key(visitor), NOTE_SECONDS)
        pipeline.execute()
    except redis.RedisError as error:  # their page's next poll finds out
        log.warning("could not announce a served visitor: %s", error)


def _long_poll_slots() -> threading.BoundedSemaphore:
    global _long_polls
    with _long_polls_made:  # the first waiting pages of a process ask together
        if _long_polls is None:
            _long_polls = threading.BoundedSemaphore(settings.TMPNB_LONG_POLLS)
        return _long_polls


def wait_for_turn(visitor: str, *, seconds: float) -> bool:
    """Block until the visitor's turn is announced or ``seconds`` pass.
    Returns whether it could block: not when this process already holds its
    share of blocked requests, nor without Redis."""
    long_polls = _long_poll_slots()
    if not long_polls.acquire(blocking=False):
        return False
    try:
        # The read waits for the note, so its socket timeout must outlast the wait.
        with turn_set_aside():
            _redis(socket_timeout=seconds + 5).blpop([_key(visitor)], timeout=seconds)
        return True
    except redis.RedisError as error:
        log.warning("could not wait for a visitor's turn: %s", error)
        return False
    finally:
        long_polls.release()
