"""Pruning history: ended containers, sessions, queue places and events older
than TMPNB_HISTORY_DAYS are deleted in batches, and what they added to the
/metrics counters is carried forward in HistoryTotal, so counters never go
down. (Usage samples keep their own TMPNB_SAMPLE_DAYS, see usage.py.)"""

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from pool.models import Container, Event, HistoryTotal, QueueEntry, Session
from pool.services.metrics import CULL_REASONS, SPAWN_BUCKETS

# Rows of each kind one heartbeat deletes at most: a long backlog is pruned
# over several ticks, each holding its locks briefly.
PRUNE_BATCH = 500


def prune_history(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> dict[str, int]:
    """Delete one batch of each kind of history older than TMPNB_HISTORY_DAYS.
    Returns the rows deleted, by kind."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.TMPNB_HISTORY_DAYS)
    with transaction.atomic():
        return {
            "sessions": _prune_sessions(cutoff, batch),
            # A container goes with (or after) its session: one still named by a session waits.
            "containers": _prune_containers(cutoff, batch),
            "events": _prune_events(cutoff, batch),
            # A place ends after it began: the index of joined_at finds the old
            # ones without reading the rest of the queue's history.
            "queue entries": _prune(
                QueueEntry.objects.filter(Q(served_at__lt=cutoff) | Q(left_at__lt=cutoff), joined_at__lt=cutoff).order_by("joined_at", "pk"), batch
            ),
        }


def prune_all_history(now: datetime | None = None) -> dict[str, int]:
    """Batches until nothing is older than TMPNB_HISTORY_DAYS (the command)."""
    total: Counter[str] = Counter()
    while True:
        pruned = prune_history(now=now)
        total.update(pruned)
        if not any(pruned.values()):
            return dict(total)


def _prune(queryset: QuerySet[Any], batch: int) -> int:
    pks = list(queryset.values_list("pk", flat=True)[:batch])
    queryset.model.objects.filter(pk__in=pks).delete()
    return len(pks)


def _carry(totals: Mapping[tuple[int, str, str], float]) -> None:
    """Add {(pool_id, counter, label): amount} to the carried totals."""
    for (pool_id, counter, label), amount in totals.items():
        if not amount:
            continue
        total, _ = HistoryTotal.objects.get_or_create(pool_id=pool_id, counter=counter, label=label)
        HistoryTotal.objects.filter(pk=total.pk).update(value=F("value") + amount)


def _prune_sessions(cutoff: datetime, batch: int) -> int:
    old = Session.objects.filter(ended_at__lt=cutoff).order_by("ended_at", "pk")[:batch]
    rows = list(old.values_list("pk", "container__pool_id", "end_reason"))
    totals: Counter[tuple[int, str, str]] = Counter()
    for _, pool_id, reason in rows:
        totals[(pool_id, "assignments", "")] += 1
        if reason in CULL_REASONS:
            totals[(pool_id, "culls", reason)] += 1
    _carry(totals)
    Session.objects.filter(pk__in=[row[0] for row in rows]).delete()
    return len(rows)


def _prune_containers(cutoff: datetime, batch: int) -> int:
    old = Container.objects.filter(state__in=[Container.State.GONE, Container.State.FAILED], ended_at__lt=cutoff, session__isnull=True).order_by("pk")[:batch]
    rows = list(old.values_list("pk", "pool_id", "created_at", "ready_at"))
    totals: defaultdict[tuple[int, str, str], float] = defaultdict(float)  # seconds as well as counts
    for _, pool_id, created_at, ready_at in rows:
        if ready_at is None:
            continue
        seconds = (ready_at - created_at).total_seconds()
        totals[(pool_id, "spawns", "count")] += 1
        totals[(pool_id, "spawns", "sum")] += seconds
        for bound in SPAWN_BUCKETS:
            if seconds <= bound:
                totals[(pool_id, "spawns", f"le_{bound}")] += 1
    _carry(totals)
    Container.objects.filter(pk__in=[row[0] for row in rows]).delete()
    return len(rows)


def _prune_events(cutoff: datetime, batch: int) -> int:
    old = Event.objects.filter(time__lt=cutoff).order_by("time", "pk")[:batch]
    rows = list(old.values_list("pk", "pool_id", "kind"))
    counted: dict[str, str] = {Event.Kind.TURNED_AWAY: "turned_away", Event.Kind.FAILURE: "failures"}
    _carry(Counter((pool_id, counted[kind], "") for _, pool_id, kind in rows if kind in counted and pool_id))
    Event.objects.filter(pk__in=[row[0] for row in rows]).delete()
    return len(rows)
