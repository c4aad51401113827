"""What the organiser's dashboard shows: each pool's numbers, the live
sessions, today's totals and peak, and usage over time."""

from datetime import datetime, timedelta
from typing import TypedDict

from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from pool.charts import Chart, line_chart
from pool.models import Container, Event, Pool, Schedule, Session, UsageSample
from pool.services.network import guard_warnings
from pool.services.pools import PoolStats, pool_stats
from pool.services.snapshots import snapshot_disk

CHART_SERIES = [("in_use", "in use", "#d9480f"), ("ready", "ready", "#2b8a3e"), ("waiting", "kept waiting or turned away", "#5f3dc4")]
CHART_WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
RECENTLY_ENDED = 10


class PoolOverview(PoolStats):
    pool: Pool
    failed_today: int
    next_schedule: Schedule | None
    saved_work: dict[str, int]  # snapshots and bytes kept on disk


class Today(TypedDict):
    in_use: int
    peak: int
    peak_at: datetime | None
    sessions: int
    visitors: int
    turned_away: int


class Dashboard(TypedDict):
    now: datetime
    pools: list[PoolOverview]
    sessions: QuerySet[Session]
    ended: QuerySet[Session]
    today: Today
    window: str
    windows: list[str]
    chart: Chart
    warnings: list[str]


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def dashboard(*, window: str = "24h", now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    day_start = _day_start(now)
    window = window if window in CHART_WINDOWS else "24h"
    return {
        "now": now,
        "pools": pool_overview(now=now),
        "sessions": Session.objects.active().select_related("container__pool").order_by("started_at"),
        "ended": Session.objects.filter(ended_at__isnull=False).select_related("container__pool").order_by("-ended_at")[:RECENTLY_ENDED],
        "today": _today(day_start=day_start, now=now),
        "window": window,
        "windows": list(CHART_WINDOWS),
        "chart": _usage_chart(now - CHART_WINDOWS[window], now),
        "warnings": guard_warnings(now=now),
    }


def pool_overview(pools: QuerySet[Pool] | None = None, *, now: datetime | None = None) -> list[PoolOverview]:
    """Each pool (all, or those of the ``pools`` queryset) with its numbers,
    the containers that failed today, the next planned size, and the
    participants' work it keeps on disk."""
    pools = Pool.objects.all() if pools is None else pools
    failed_rows = Container.objects.filter(state=Container.State.FAILED, ended_at__gte=_day_start(now or timezone.now()))
    failed: dict[int, int] = dict(failed_rows.values_list("pool_id").annotate(n=Count("pk")))
    upcoming = {s.pool_id: s for s in Schedule.objects.upcoming().order_by("-at")}  # the earliest wins
    saved = snapshot_disk(now)
    return [
        {
            "pool": pool,
            **pool_stats(pool),
            "failed_today": failed.get(pool.pk, 0),
            "next_schedule": upcoming.get(pool.pk),
            "saved_work": dict(zip(("snapshots", "bytes"), saved.get(pool.pk, (0, 0)))),
        }
        for pool in pools
    ]


def _today(*, day_start: datetime, now: datetime) -> Today:
    """Totals since local midnight, and the peak of containers in use: the
    highest sample, or now, if more are in use now than at any sample."""
    by_time = UsageSample.objects.filter(time__gte=day_start).values("time").annotate(in_use=Sum("in_use")).order_by("-in_use", "time")
    peak = by_time.first() or {"in_use": 0, "time": None}
    in_use = Container.objects.assigned().count()
    if in_use > peak["in_use"] or peak["time"] is None:
        peak = {"in_use": in_use, "time": now}
    # One aggregate: a DISTINCT subquery led SQLite to walk every session by visitor.
    started = Session.objects.filter(started_at__gte=day_start).aggregate(sessions=Count("pk"), visitors=Count("visitor", distinct=True))
    return {
        "in_use": in_use,
        "peak": peak["in_use"],
        "peak_at": peak["time"],
        "sessions": started["sessions"],
        "visitors": started["visitors"],
        # Visitors, not refusals: one waiting across several sample periods is logged in each.
        "turned_away": Event.objects.filter(kind=Event.Kind.TURNED_AWAY, time__gte=day_start).values("actor").distinct().count(),
    }


def _usage_chart(start: datetime, end: datetime) -> Chart:
    """All pools together, one point per sample time. The time axis starts at
    the first sample when there is none earlier in the window (a service
    started an hour ago has an hour to show, not a day)."""
    rows = list(
        UsageSample.objects.filter(time__gte=start, time__lte=end)
        .values("time")
        .annotate(in_use=Sum("in_use"), ready=Sum("ready"), waiting=Sum("waiting"))
        .order_by("time")
    )
    return line_chart(rows, CHART_SERIES, rows[0]["time"] if rows else start, end)
