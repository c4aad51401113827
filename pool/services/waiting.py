"""The waiting room: where a visitor stands, how long they may wait, and who
has stopped waiting."""

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, NotRequired, TypedDict

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from pool.models import Container, Pool, QueueEntry, Session
from pool.services import pools
from pool.services.assignment import active_session
from pool.services.turns import wait_for_turn

DEFAULT_SPAWN_SECONDS = 5.0  # before any container of the pool was measured
SPAWN_SAMPLE = 20
FREEING_WINDOW = timedelta(minutes=15)
MAX_LONG_POLL_SECONDS = 60
POLL_SECONDS = 1  # when a status request could not wait for the visitor's turn


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: nobody can say (no place has freed up lately)
    phase: str  # "starting": a notebook is starting for them; "waiting": for a place to free up


class AdmissionStatus(TypedDict):
    """What the waiting page and the API poll: the keys after ``status`` come
    with "ready" (url) or with "waiting" (the rest)."""

    status: Literal["ready", "waiting", "unknown"]
    url: NotRequired[str]
    position: NotRequired[int]
    phase: NotRequired[str]
    phase_text: NotRequired[str]
    estimate_seconds: NotRequired[int | None]
    estimate_text: NotRequired[str]
    poll_seconds: NotRequired[float]
    long_poll_seconds: NotRequired[float]


def queue_position(entry: QueueEntry) -> int:
    """1 for the visitor at the head of the queue."""
    ahead = Q(joined_at__lt=entry.joined_at) | Q(joined_at=entry.joined_at, pk__lt=entry.pk)
    return entry.pool.queue.waiting().filter(ahead).count() + 1


def waiting_entry(visitor: str) -> QueueEntry | None:
    """The visitor's place, if they are waiting; asking keeps it. The check-in
    is written once per sixth of TMPNB_QUEUE_TIMEOUT, not at every status
    request: on SQLite each write waits for the write lock the worker's spawns
    hold, and thirty waiting pages asked several times a second."""
    entry = QueueEntry.objects.waiting().filter(visitor=visitor).first()
    if entry is None:
        return None
    # The pool as the process last read it (at most a second ago): joined to
    # the place, its 35 columns cost more than the place itself.
    entry.pool = pools.pool_with_id(entry.pool_id) or entry.pool
    now = timezone.now()
    if (now - entry.last_seen).total_seconds() >= settings.TMPNB_QUEUE_TIMEOUT / 6:
        QueueEntry.objects.filter(pk=entry.pk).update(last_seen=now)
    return entry


def drop_abandoned_places(now: datetime | None = None) -> int:
    """Visitors whose waiting page stopped checking in have left the queue."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TMPNB_QUEUE_TIMEOUT)
    return QueueEntry.objects.waiting().filter(last_seen__lt=cutoff).update(left_at=now)


def spawn_seconds(pool: Pool) -> float:
    """The median time the pool's recent containers took to become ready."""
    # The newest rows first (by key: the pool's index reads them from its end,
    # where ordering by ready_at sorted the pool's whole history).
    recent = pool.containers.filter(ready_at__isnull=False).order_by("-pk").values_list("created_at", "ready_at")
    durations = [(ready - created).total_seconds() for created, ready in recent[:SPAWN_SAMPLE] if ready is not None]
    return statistics.median(durations) if durations else DEFAULT_SPAWN_SECONDS


def places_freed_per_second(pool: Pool, *, now: datetime) -> float:
    """Sessions of the pool ended per second over the last FREEING_WINDOW, or
    since its first session if that is more recent: a pool that opened five
    minutes ago has five minutes of history, not fifteen."""
    since = now - FREEING_WINDOW
    sessions = Session.objects.filter(container__pool=pool).aggregate(first=Min("started_at"), ended=Count("pk", filter=Q(ended_at__gte=since)))
    span = (now - max(since, sessions["first"] or now)).total_seconds()
    return sessions["ended"] / span if span > 0 else 0


@dataclass
class Outlook:
    """What the estimates of every visitor waiting for a pool share. The
    sessions' cull times and the freeing rate are read only once someone
    stands beyond the containers starting or ready and the free places."""

    pool: Pool
    unclaimed: int  # containers starting or ready
    free_places: int  # what the capacity still allows
    spawn: float  # seconds a container takes to become ready (spawn_seconds)
    known_cull_times: list[datetime] | None = field(default=None, init=False)
    known_freeing_rate: float | None = field(default=None, init=False)

    def cull_times(self) -> list[datetime]:
        if self.known_cull_times is None:
            self.known_cull_times = _cull_times(self.pool)
        return self.known_cull_times

    def freeing_rate(self, now: datetime) -> float:
        if self.known_freeing_rate is None:
            self.known_freeing_rate = places_freed_per_second(self.pool, now=now)
        return self.known_freeing_rate


def pool_outlook(pool: Pool) -> Outlook:
    unclaimed_states = Q(state__in=[Container.State.SPAWNING, Container.State.READY])
    live = pool.containers.live().aggregate(places=Count("pk"), unclaimed=Count("pk", filter=unclaimed_states))
    return Outlook(pool, live["unclaimed"], max(pool.capacity - live["places"], 0), spawn_seconds(pool))


def recent_outlook(pool: Pool) -> Outlook:
    """The pool's outlook as this process read it at most a second ago
    (pools.read_recently): the waiting pages of a burst ask together, every
    one of them once a long poll ends, and the position stays each visitor's own."""
    return pools.read_recently(("outlook", pool.pk), lambda: pool_outlook(pool))


def estimate_wait(pool: Pool, position: int, *, now: datetime | None = None, outlook: Outlook | None = None) -> Estimate:
    """How long the visitor at ``position`` may still wait (from ``outlook``,
    or the pool as it is now).

    Containers starting or ready, and free places in the pool's capacity, go
    to the visitors ahead first. Whoever is beyond them waits for the k-th
    place to free up, then for a spawn. Two guesses at when that is; the
    sooner one is taken: the k-th session to reach its cull time (idle
    timeout from its last activity, or cull_max from its start), and the rate
    at which places freed up lately (organisers' kills, people who left).
    """
    now = now or timezone.now()
    outlook = outlook or pool_outlook(pool)
    needed = position - outlook.unclaimed - outlook.free_places
    if needed <= 0:
        return Estimate(outlook.spawn, "starting")
    guesses: list[float] = []
    cull_times = outlook.cull_times()
    if needed <= len(cull_times):
        guesses.append(max((cull_times[needed - 1] - now).total_seconds(), 0))
    rate = outlook.freeing_rate(now)
    if rate > 0:
        guesses.append(needed / rate)
    return Estimate(min(guesses) + outlook.spawn if guesses else None, "waiting")


def _cull_times(pool: Pool) -> list[datetime]:
    """When each live session of the pool will be culled at the latest, soonest first."""
    idle, age = timedelta(seconds=pool.cull_timeout), timedelta(seconds=pool.cull_max)
    sessions = Session.objects.active().filter(container__pool=pool).values_list("started_at", "last_activity")
    return sorted(min(started + age, active + idle) for started, active in sessions)


def admission_status(visitor: str, *, default_path: str = "") -> AdmissionStatus:
    """What the waiting page (or an API client) polls: ready with a URL,
    waiting with a position and an estimate, or unknown."""
    ready = _ready_status(visitor, default_path)
    if ready is not None:
        return ready
    entry = waiting_entry(visitor)
    return {"status": "unknown"} if entry is None else _waiting_status(entry)


def _ready_status(visitor: str, default_path: str = "") -> AdmissionStatus | None:
    # Most status requests are a waiting visitor's: whether they hold a
    # session is answered in half the time of reading it with its container.
    if not Session.objects.active().filter(visitor=visitor).exists():
        return None
    session = active_session(visitor)
    if session is None:
        return None
    asked = QueueEntry.objects.filter(visitor=visitor, served_at__isnull=False).order_by("-served_at")
    path = default_path or asked.values_list("next_path", flat=True).first() or session.container.pool.redirect_uri
    return {"status": "ready", "url": session.container.url_for(path)}


def _waiting_status(entry: QueueEntry) -> AdmissionStatus:
    position = queue_position(entry)
    estimate = estimate_wait(entry.pool, position, outlook=recent_outlook(entry.pool))
    # The texts too, in the visitor's language, so that the waiting page's
    # script shows the very words the page was rendered with.
    return {
        "status": "waiting",
        "position": position,
        "phase": estimate.phase,
        "phase_text": describe_phase(estimate.phase),
        "estimate_seconds": None if estimate.seconds is None else round(estimate.seconds),
        "estimate_text": describe_wait(estimate.seconds),
    }


def describe_phase(phase: str) -> str:
    if phase == "starting":
        return gettext("A notebook server is starting for you.")
    return gettext("All notebook servers are in use; you will get the next one that frees up.")


def describe_wait(seconds: float | None) -> str:
    """A wait as a person would say it, in the active language: "less than a
    minute", "about 25 minutes", "about an hour". Rounded more the longer it
    is, since the estimate itself is rough."""
    if seconds is None:
        return gettext("unknown yet")
    minutes = seconds / 60
    if minutes < 1:
        return gettext("less than a minute")
    if minutes < 1.5:
        return gettext("about a minute")
    if minutes < 45:
        count = round(minutes) if minutes < 10 else 5 * round(minutes / 5)
        return ngettext("about %(count)d minute", "about %(count)d minutes", count) % {"count": count}
    if minutes < 90:
        return gettext("about an hour")
    count = round(minutes / 60)
    return ngettext("about %(count)d hour", "about %(count)d hours", count) % {"count": count}


def long_poll_seconds() -> float:
    """How long a status request may wait: well within TMPNB_QUEUE_TIMEOUT
    (10 s by default), since only the requests themselves keep a visitor's
    place."""
    return min(MAX_LONG_POLL_SECONDS, settings.TMPNB_QUEUE_TIMEOUT / 3)


def await_admission(visitor: str, *, wait: bool = True) -> AdmissionStatus:
    """admission_status, with when to ask again. With ``wait``, a waiting
    visitor's answer is held until they are served (or long_poll_seconds
    pass), and they may ask again at once; otherwise, or when this process
    cannot hold one more request, POLL_SECONDS later. The place and the
    estimate are worked out once, when the answer goes: worked out before the
    wait too, they were thrown away, and waiting pages' requests took half of
    the web process's CPU while a burst waited for spawns."""
    ready = _ready_status(visitor)
    if ready is not None:
        return ready
    entry = waiting_entry(visitor)
    if entry is None:
        return {"status": "unknown"}
    if wait and wait_for_turn(visitor, seconds=long_poll_seconds()):
        status, poll = admission_status(visitor), 0
    else:
        status, poll = _waiting_status(entry), POLL_SECONDS
    if status["status"] == "waiting":
        status["poll_seconds"] = poll
        status["long_poll_seconds"] = long_poll_seconds()
    return status
