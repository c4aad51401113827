"""Workshops: a pool opened on time, warm before its doors open, and everyone's
work collected at the end.

A workshop drives its pool through the schedules already in place
(schedules.py): planning it writes two Schedule rows, one that warms the
pool to the headcount as long before the start as its measured fill needs,
one that drains it once the notebooks are collected. Beat advances the rest
(advance_workshops): at the end every participant's banner counts down to
``closes_at`` (upkeep.time_left), and at ``closes_at`` the work is collected
and the sessions end, as a cull ends them (their work saved too). The event
log is told each step (Event.Kind.WORKSHOP): planned, opened, ended,
collected, closed.
"""

import logging
import math
import statistics
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from pool.models import Collection, Container, Event, Pool, Schedule, Session, Workshop, WorkshopPool
from pool.services import pools
from pool.services.collecting import collect_work, new_collection
from pool.services.ending import retire_and_record
from pool.services.rows import insert
from pool.services.schedules import apply_due_schedules

log = logging.getLogger(__name__)

ACTOR = "workshop"
FILL_SAMPLE = 50  # the pool's last spawns its fill rate is measured on
SAFETY = 1.5  # the lead time is this many times what the measured fill needs
MIN_LEAD = timedelta(minutes=1)  # a beat or two, and a spawn that failed once
SYSTEM_RESERVE = 1024 * 2**20  # bytes the system and Docker keep (README "Numbers for planning")
REMEMBERED = timedelta(days=1)  # how long an ended workshop still answers at its pool's landing


class WorkshopError(Exception):
    """Input a workshop cannot take: ``problems`` maps each field to a message for people."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(problems.values()))
        self.problems = problems


@dataclass(frozen=True)
class Fill:
    """How fast a pool gets notebooks ready, measured on its last spawns."""

    spawn_seconds: float  # one notebook, from its row to ready (the median)
    per_second: float  # notebooks ready per second while it fills


DEFAULT_FILL = Fill(spawn_seconds=30.0, per_second=1.0)  # no spawn measured yet: a cautious guess


def measured_fill(pool: Pool) -> Fill:
    """The pool's Fill from its last FILL_SAMPLE ready containers. The rate
    counts only the gaps between two readies shorter than one spawn: a longer
    one is the pool at rest, not filling."""
    rows = [
        (created, ready)
        for created, ready in pool.containers.filter(ready_at__isnull=False).order_by("-ready_at").values_list("created_at", "ready_at")[:FILL_SAMPLE]
        if ready is not None
    ]
    if len(rows) < 2:
        return DEFAULT_FILL
    spawn_seconds = statistics.median((ready - created).total_seconds() for created, ready in rows)
    readies = sorted(ready for _, ready in rows)
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(readies, readies[1:], strict=False)]
    filling = [gap for gap in gaps if gap <= spawn_seconds]
    if not filling or sum(filling) == 0:
        return Fill(spawn_seconds=spawn_seconds, per_second=len(rows) / max(spawn_seconds, 1.0))
    return Fill(spawn_seconds=spawn_seconds, per_second=len(filling) / sum(filling))


def warming_lead(headcount: int, fill: Fill) -> timedelta:
    """How long before the start a pool that fills at ``fill`` must begin to
    have ``headcount`` notebooks ready: the first spawn, then the rest at the
    measured rate, with a margin."""
    needed = fill.spawn_seconds + (headcount - 1) / fill.per_second
    return max(MIN_LEAD, timedelta(seconds=round(needed * SAFETY)))


def machine_memory() -> int:
    """Bytes of memory of this machine (TMPNB_MACHINE_MEMORY_MB, else /proc/meminfo)."""
    if settings.TMPNB_MACHINE_MEMORY_MB:
        return int(settings.TMPNB_MACHINE_MEMORY_MB * 2**20)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


def notebooks_the_machine_holds(memory: int | None = None) -> int:
    """Notebooks that fit in the machine's memory, at the measured
    TMPNB_NOTEBOOK_MEMORY_MB each, after SYSTEM_RESERVE."""
    memory = machine_memory() if memory is None else memory
    return max(0, (memory - SYSTEM_RESERVE) // (settings.TMPNB_NOTEBOOK_MEMORY_MB * 2**20))


def in_time_zone(wall: datetime, zone: str) -> datetime:
    """The moment a clock in ``zone`` shows ``wall`` (a time as the organiser
    typed it, without a zone). Raises ValueError, saying why, for a zone that
    does not exist or a time its clocks skip (the hour lost when summer time
    begins). A time they show twice (the hour repeated when it ends) is the
    first of the two."""
    try:
        tz = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{zone!r} is not a time zone (write one such as Europe/Paris or America/New_York).") from None
    moment = wall.replace(tzinfo=tz, fold=0)
    if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None):
        raise ValueError(f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: its clocks skip it (summer time begins); choose a time before or after the jump.")
    return moment.astimezone(UTC)  # an ambiguous wall time never equals another zone's (PEP 495): UTC compares


def workshop_problems(*, starts_at: datetime, ends_at: datetime, headcount: int, memory: int | None = None) -> dict[str, str]:
    """What is wrong with these numbers, by field; empty when nothing is."""
    problems = {}
    if ends_at <= starts_at:
        problems["ends_at"] = "The end must come after the start."
    if too_many := headcount_problem(headcount, memory):
        problems["headcount"] = too_many
    return problems


def headcount_problem(headcount: int, memory: int | None = None) -> str | None:
    """Why this machine cannot hold ``headcount`` notebooks, if it cannot."""
    holds = notebooks_the_machine_holds(memory)
    if headcount <= holds:
        return None
    return (
        f"This machine can hold about {holds} notebooks ({machine_memory() if memory is None else memory:,} bytes of memory, "
        f"less 1 GiB for the system, at {settings.TMPNB_NOTEBOOK_MEMORY_MB} MiB per notebook, TMPNB_NOTEBOOK_MEMORY_MB); "
        f"ask for at most {holds} over all the workshop's pools, or split the workshop over two machines."
    )


def plan_workshop(
    workshop: Workshop, *, headcounts: dict[Pool, int] | None = None, by: str = ACTOR, memory: int | None = None, now: datetime | None = None
) -> Workshop:
    """Check ``workshop``, save it with ``headcounts`` (its pools and the
    participants expected on each; None: those it has) and (re)write its
    schedules: warm each pool to its headcount by the start, drain each once
    the work is collected. Its materials and access code, if it has them,
    become every pool's now, so the materials are prepared before the
    warming. The event log says so, with the lead and the schedules. Raises
    WorkshopError, having changed nothing, on bad input."""
    if headcounts is None:
        headcounts = {seat.pool: seat.headcount for seat in workshop.seats_by_pool()} if workshop.pk else {}
    total = sum(headcounts.values())
    problems = workshop_problems(starts_at=workshop.starts_at, ends_at=workshop.ends_at, headcount=total, memory=memory)
    if not headcounts:
        problems["pools"] = "A workshop needs at least one pool, with the participants expected on it."
    if problems:
        raise WorkshopError(problems)
    now = now or timezone.now()
    workshop.lead_seconds = max(int(warming_lead(headcount, measured_fill(pool)).total_seconds()) for pool, headcount in headcounts.items())
    with transaction.atomic():
        workshop.save()
        workshop.seats.exclude(pool__in=list(headcounts)).delete()
        for pool, headcount in headcounts.items():
            WorkshopPool.objects.update_or_create(workshop=workshop, pool=pool, defaults={"headcount": headcount})
        workshop.schedules.filter(applied_at__isnull=True).delete()
        for pool, headcount in headcounts.items():
            _give_pool(workshop, pool)
            if workshop.starts_at > now:
                # Warming: a pool already larger keeps its size; the ready target is its headcount.
                capacity = max(pool.capacity, headcount)
                Schedule.objects.create(pool=pool, workshop=workshop, at=max(workshop.warms_at, now), capacity=capacity, ready_target=headcount)
            Schedule.objects.create(pool=pool, workshop=workshop, at=workshop.closes_at, capacity=0, ready_target=0)
        _tell_planned(workshop, headcounts, by=by)
    return workshop


def _tell_planned(workshop: Workshop, headcounts: dict[Pool, int], *, by: str) -> None:
    schedules = list(workshop.schedules.filter(applied_at__isnull=True).select_related("pool").order_by("at", "pool__name", "pk"))
    rows = "; ".join(f"#{row.pk} at {_when(workshop, row.at)}: {row.pool.name} capacity {row.capacity}, {row.ready_target} ready" for row in schedules)
    on = ", ".join(f"{headcount} on {pool.name}" for pool, headcount in sorted(headcounts.items(), key=lambda item: item[0].name))
    _tell(
        workshop,
        "planned",
        f"{_when(workshop, workshop.starts_at)} to {_when(workshop, workshop.ends_at)} {workshop.time_zone}, {sum(headcounts.values())} participants ({on}),"
        f" warming {workshop.lead_seconds} s ahead; schedules {rows}",
        by=by,
        headcount=sum(headcounts.values()),
        headcounts={pool.name: headcount for pool, headcount in headcounts.items()},
        starts_at=workshop.starts_at.isoformat(),
        ends_at=workshop.ends_at.isoformat(),
        closes_at=workshop.closes_at.isoformat(),
        lead_seconds=workshop.lead_seconds,
        schedules=[
            {"id": row.pk, "pool": row.pool.name, "at": row.at.isoformat(), "capacity": row.capacity, "ready_target": row.ready_target} for row in schedules
        ],
    )


def _when(workshop: Workshop, moment: datetime) -> str:
    return f"{workshop.local(moment):%Y-%m-%d %H:%M}"


def _tell(workshop: Workshop, step: str, message: str, *, by: str = ACTOR, **details: Any) -> None:
    """One WORKSHOP event: ``step`` (planned, opened, ended, collected, closed)
    and its counts; under its pool when it has one (several: the details name them)."""
    pool_ids = [seat.pool_id for seat in workshop.seats.all()]
    pool_id = pool_ids[0] if len(pool_ids) == 1 else None
    message = f"workshop {workshop.name} {step}: {message}"
    insert(Event(kind=Event.Kind.WORKSHOP, message=message[:500], pool_id=pool_id, actor=by, details={"workshop": workshop.pk, "step": step, **details}))


def _give_pool(workshop: Workshop, pool: Pool) -> None:
    changed = []
    if workshop.materials_source and workshop.materials_source != pool.materials_source:
        pool.materials_source, pool.materials_branch = workshop.materials_source, ""
        changed += ["materials_source", "materials_branch"]
    if workshop.access_code and workshop.access_code != pool.access_code:
        pool.access_code = workshop.access_code
        changed.append("access_code")
    if changed:
        pool.save(update_fields=[*changed, "updated_at"])


def governing(pool: Pool, now: datetime | None = None) -> Workshop | None:
    """The workshop the landing of ``pool`` answers for: the earliest that has
    not ended, else one that ended within REMEMBERED. Without ``now``, as a
    landing asks: read at most once a second per process, as the pool itself
    is (a burst asks at every request, most pools have no workshop, and a
    saved workshop is seen at once)."""
    if now is None:
        return pools.read_recently(("workshop", pool.pk), lambda: (_governing(pool, timezone.now()),))[0]
    return _governing(pool, now)


def _governing(pool: Pool, now: datetime) -> Workshop | None:
    workshops = Workshop.objects.filter(pools=pool)
    return workshops.unfinished().order_by("starts_at").first() or workshops.filter(finished_at__gt=now - REMEMBERED).order_by("-ends_at").first()


@dataclass(frozen=True)
class Closed:
    """Why a workshop's landing takes nobody now, and when to look again."""

    workshop: Workshop
    opens: bool  # True: before the start; False: after the end
    at: datetime  # the start or the end, in the organiser's time zone
    retry_after: int  # seconds


def landing_closed(workshop: Workshop, *, visitor: str | None = None, now: datetime | None = None) -> Closed | None:
    """A Closed when ``workshop`` has not started or has ended, else None. A
    ``visitor`` who still holds a notebook of its pool is let back to it until
    the close."""
    now = now or timezone.now()
    state = workshop.state(now)
    if state in (Workshop.State.UPCOMING, Workshop.State.WARMING):
        wait = (workshop.starts_at - now).total_seconds()
        return Closed(workshop=workshop, opens=True, at=workshop.local(workshop.starts_at), retry_after=max(1, min(60, math.ceil(wait))))
    holds_one = visitor is not None and Session.objects.active().filter(visitor=visitor, container__pool__in=workshop.pools.all()).exists()
    if state in (Workshop.State.ENDING, Workshop.State.ENDED) and not holds_one:
        return Closed(workshop=workshop, opens=False, at=workshop.local(workshop.ends_at), retry_after=300)
    return None


def advance_workshops(now: datetime | None = None) -> list[Workshop]:
    """Finish each workshop whose notebooks' time is up; return those this call
    finished. The pool's drain is its schedule, applied first so that ending
    the sessions does not refill it."""
    now = now or timezone.now()
    apply_due_schedules(now)
    for workshop in Workshop.objects.unfinished().filter(starts_at__lte=now).exclude(told=Workshop.State.ENDING):
        tell_state(workshop, now)
    return [workshop for workshop in Workshop.objects.unfinished().filter(ends_at__lte=now) if workshop.closes_at <= now and finish_workshop(workshop, now=now)]


def tell_state(workshop: Workshop, now: datetime) -> bool:
    """Tell the event log that ``workshop`` opened, or ended, when the beat
    first sees it so (once: claimed by a conditional update); whether it did."""
    state = workshop.state(now)
    if state not in (Workshop.State.OPEN, Workshop.State.ENDING) or state == workshop.told:
        return False
    if not Workshop.objects.filter(pk=workshop.pk, told=workshop.told).update(told=state):
        return False  # another beat told it
    workshop.told = state
    glance_now = glance(workshop, now)
    if state == Workshop.State.OPEN:
        _tell(
            workshop,
            "opened",
            f"{glance_now.ready} notebooks ready for {glance_now.headcount} participants, {glance_now.in_use} in use, {glance_now.queued} waiting",
            headcount=glance_now.headcount,
            ready=glance_now.ready,
            in_use=glance_now.in_use,
            queued=glance_now.queued,
        )
    else:
        _tell(
            workshop,
            "ended",
            f"{glance_now.in_use} participants warned; their notebooks are kept until {_when(workshop, workshop.closes_at)} {workshop.time_zone}",
            in_use=glance_now.in_use,
            closes_at=workshop.closes_at.isoformat(),
        )
    return True


def finish_workshop(workshop: Workshop, *, now: datetime) -> bool:
    """Collect everyone's work in its pools into one zip, then end their
    sessions (each saved as a cull saves it). Claimed by a conditional
    update, so two beats finish it once. Returns whether this call did."""
    if not Workshop.objects.filter(pk=workshop.pk, finished_at__isnull=True).update(finished_at=now):
        return False  # another beat got there first
    by = f"{ACTOR} {workshop.name}"
    pools_of_it = list(workshop.pools.order_by("name"))
    collection = new_collection(workshop=workshop, by=by)
    Workshop.objects.filter(pk=workshop.pk).update(collection=collection)
    try:
        collection = collect_work(collection.pk)
    except Exception as error:  # the notebooks end all the same, each saving its own work
        log.exception("workshop %s: the work was not collected", workshop.name)
        collection.error = collection.error or f"{type(error).__name__}: {error}"[:500]
    _tell_collected(workshop, collection)
    ended = 0
    for session in Session.objects.active().filter(container__pool__in=pools_of_it).select_related("container"):
        ended += retire_and_record(
            session.container,
            Session.EndReason.CULLED_AGE,
            kind=Event.Kind.CULL,
            message=f"{session.container.name} culled: the workshop {workshop.name} ended",
            by=by,
            on_worker=True,  # the copies of their work are the worker's, in parallel, not this beat's one by one
        )
    log.info("workshop %s: work of %d collected, %d notebooks ended", workshop.name, collection.participants, ended)
    _tell(workshop, "closed", f"{ended} notebooks ended, {'the pool drains' if len(pools_of_it) == 1 else 'the pools drain'}", ended=ended)
    return True


def _tell_collected(workshop: Workshop, collection: Collection) -> None:
    if collection.error or not collection.file_name:
        message = f"no zip was made: {collection.error or 'the collection did not finish'}"
    else:
        message = f"work of {collection.participants} participants ({collection.incomplete} not whole), {collection.size} bytes in {collection.file_name}"
    _tell(
        workshop,
        "collected",
        message,
        collection=collection.pk,
        participants=collection.participants,
        incomplete=collection.incomplete,
        size=collection.size,
        error=collection.error,
    )


@dataclass(frozen=True)
class PoolGlance:
    """One pool of a workshop at a glance."""

    pool: Pool
    headcount: int
    ready: int
    in_use: int
    starting: int
    queued: int


@dataclass(frozen=True)
class Glance:
    """A workshop's page at a glance: its pools' numbers, and their sums."""

    state: str
    headcount: int
    ready: int
    in_use: int
    starting: int
    queued: int
    pools: list[PoolGlance]
    collections: list[Collection]


def glance(workshop: Workshop, now: datetime | None = None) -> Glance:
    now = now or timezone.now()
    each = [_pool_glance(seat) for seat in workshop.seats_by_pool()]
    collections = Collection.objects.filter(pool__in=[pool.pool for pool in each], started_at__gte=workshop.starts_at).order_by("-started_at")
    return Glance(
        state=workshop.state(now),
        headcount=sum(pool.headcount for pool in each),
        ready=sum(pool.ready for pool in each),
        in_use=sum(pool.in_use for pool in each),
        starting=sum(pool.starting for pool in each),
        queued=sum(pool.queued for pool in each),
        pools=each,
        collections=list(collections[:10]),
    )


def _pool_glance(seat: WorkshopPool) -> PoolGlance:
    pool = seat.pool
    counts = dict(
        pool.containers.filter(state__in=[Container.State.READY, Container.State.ASSIGNED, Container.State.SPAWNING])
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    return PoolGlance(
        pool=pool,
        headcount=seat.headcount,
        ready=counts.get(Container.State.READY, 0),
        in_use=counts.get(Container.State.ASSIGNED, 0),
        starting=counts.get(Container.State.SPAWNING, 0),
        queued=pool.queue.waiting().count(),
    )
