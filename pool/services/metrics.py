"""The numbers behind /metrics, read from the database at each scrape, so
that every gunicorn and Celery process reports the same values and nothing
is lost on a restart."""

from datetime import timedelta
from typing import Any, TypedDict, cast

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from pool.models import Container, Event, HistoryTotal, Pool, Session

# Seconds from a container's row (the pool asking for it) to its server answering.
SPAWN_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
CULL_REASONS = [str(Session.EndReason.CULLED_IDLE), str(Session.EndReason.CULLED_AGE)]

Counts = dict[tuple[str, ...], int]  # (pool name, and a state or reason) -> count


class SpawnDurations(TypedDict):
    buckets: list[tuple[float, int]]  # (upper bound in seconds, spawns that took at most that)
    count: int
    sum: float


class MetricValues(TypedDict):
    pools: dict[str, Pool]
    containers: Counts
    assignments: Counts
    culls: Counts
    turned_away: Counts
    failures: Counts
    spawn_durations: dict[str, SpawnDurations]


def _counts(queryset: QuerySet[Any], *fields: str) -> Counts:
    """{(values of fields): count} of ``queryset`` grouped by ``fields``."""
    rows = queryset.values_list(*fields).annotate(n=Count("pk"))
    return {tuple(row[:-1]): row[-1] for row in rows}


def metric_values() -> MetricValues:
    """Plain numbers by pool name (and state or reason), for pool/prometheus.py to expose."""
    sessions = Session.objects.all()
    spawned = Container.objects.filter(ready_at__isnull=False).annotate(
        seconds=ExpressionWrapper(F("ready_at") - F("created_at"), output_field=DurationField())
    )
    durations = spawned.values_list("pool__name").annotate(
        total=Sum("seconds"),
        **{f"le_{b}": Count("pk", filter=Q(seconds__lte=timedelta(seconds=b))) for b in SPAWN_BUCKETS},
        count=Count("pk"),
    )
    values: MetricValues = {
        "pools": {pool.name: pool for pool in Pool.objects.all()},
        "containers": _counts(Container.objects.live(), "pool__name", "state"),
        "assignments": _counts(sessions, "container__pool__name"),
        "culls": _counts(sessions.filter(end_reason__in=CULL_REASONS), "container__pool__name", "end_reason"),
        "turned_away": _counts(Event.objects.filter(kind=Event.Kind.TURNED_AWAY), "pool__name"),
        "failures": _counts(Event.objects.filter(kind=Event.Kind.FAILURE), "pool__name"),
        "spawn_durations": {
            row[0]: {
                "buckets": [(b, n) for b, n in zip(SPAWN_BUCKETS, row[2:-1])],
                "count": row[-1],
                "sum": row[1].total_seconds() if row[1] else 0.0,
            }
            for row in durations
        },
    }
    _add_pruned_history(values)
    return values


def _add_pruned_history(values: MetricValues) -> None:
    """Counters count pruned rows too (retention.py carried them forward)."""
    for name, counter, label, value in HistoryTotal.objects.values_list("pool__name", "counter", "label", "value"):
        if counter == "spawns":
            spawn = values["spawn_durations"].setdefault(name, {"buckets": [(b, 0) for b in SPAWN_BUCKETS], "count": 0, "sum": 0.0})
            if label == "count":
                spawn["count"] += int(value)
            elif label == "sum":
                spawn["sum"] += value
            else:
                spawn["buckets"] = [(b, n + int(value) if label == f"le_{b}" else n) for b, n in spawn["buckets"]]
        else:
            key = (name, label) if label else (name,)
            # HistoryTotal names its counters as MetricValues names their tables.
            counts = cast(dict[str, Counts], values)[counter]
            counts[key] = counts.get(key, 0) + int(value)
