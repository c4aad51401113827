"""The numbers behind /metrics, read from the database at each scrape, so
that every gunicorn and Celery process reports the same values and nothing
is lost on a restart."""

from typing import Any, TypedDict, cast

from django.db import connection
from django.db.models import Count, F, FloatField, Func, QuerySet

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


class SecondsBetween(Func):
    """Seconds from the ``start`` column to the ``end`` column, in the
    database's own arithmetic. (On SQLite Django subtracts datetimes in a
    Python function, called for each row and bucket: a second of CPU per
    scrape with 20,000 containers.) SQLite reads a time to the millisecond."""

    output_field = FloatField()

    def __init__(self, end: str, start: str) -> None:
        super().__init__(end, start)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="round((julianday(%(expressions)s)) * 86400.0, 3)", arg_joiner=") - julianday(", **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="CAST(EXTRACT(EPOCH FROM (%(expressions)s)) AS double precision)", arg_joiner=" - ", **extra)


def _counts(queryset: QuerySet[Any], *fields: str) -> Counts:
    """{(values of fields): count} of ``queryset`` grouped by ``fields``."""
    rows = queryset.values_list(*fields).annotate(n=Count("pk"))
    return {tuple(row[:-1]): row[-1] for row in rows}


def metric_values() -> MetricValues:
    """Plain numbers by pool name (and state or reason), for pool/prometheus.py to expose."""
    sessions = Session.objects.all()
    values: MetricValues = {
        "pools": {pool.name: pool for pool in Pool.objects.all()},
        "containers": _counts(Container.objects.live(), "pool__name", "state"),
        "assignments": _counts(sessions, "container__pool__name"),
        "culls": _counts(sessions.filter(end_reason__in=CULL_REASONS), "container__pool__name", "end_reason"),
        "turned_away": _counts(Event.objects.filter(kind=Event.Kind.TURNED_AWAY), "pool__name"),
        "failures": _counts(Event.objects.filter(kind=Event.Kind.FAILURE), "pool__name"),
        "spawn_durations": _spawn_durations(),
    }
    _add_pruned_history(values)
    return values


def _spawn_durations() -> dict[str, SpawnDurations]:
    """Each pool's spawn times as a histogram: a container's seconds are
    worked out once, in a subquery, not once for each bucket."""
    spawned = Container.objects.filter(ready_at__isnull=False).annotate(pool_name=F("pool__name"), seconds=SecondsBetween("ready_at", "created_at"))
    inner, params = spawned.values("pool_name", "seconds").query.sql_with_params()
    buckets = ", ".join("COUNT(*) FILTER (WHERE seconds <= %s)" for _ in SPAWN_BUCKETS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pool_name, SUM(seconds), {buckets}, COUNT(*) FROM ({inner}) AS spawned GROUP BY pool_name", [*params, *SPAWN_BUCKETS])
        rows = cursor.fetchall()
    return {name: {"buckets": list(zip(SPAWN_BUCKETS, counts)), "count": count, "sum": total or 0.0} for name, total, *counts, count in rows}


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
