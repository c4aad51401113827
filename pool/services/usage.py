"""Usage over time: every pool's numbers sampled into the database, and the
visitors who found nothing ready counted between samples."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from pool.models import Container, Event, Pool, UsageSample, visitor_tag
from pool.services.events import record_event


def _last_sample_time(now: datetime) -> datetime:
    last = UsageSample.objects.aggregate(last=Max("time"))["last"]
    return last or now - timedelta(seconds=settings.TMPNB_SAMPLE_PERIOD)


def record_turned_away(*, pool: Pool, visitor: str) -> Event | None:
    """A visitor found nothing ready in ``pool``. Their page retries every few
    seconds: only their first refusal since the last sample is logged, so a
    sample's count is of visitors kept waiting, not of reloads."""
    now = timezone.now()
    tag = visitor_tag(visitor)
    already = Event.objects.filter(kind=Event.Kind.TURNED_AWAY, pool=pool, actor=tag, time__gt=_last_sample_time(now))
    if already.exists():
        return None
    return record_event(Event.Kind.TURNED_AWAY, f"nothing ready in pool {pool.name}", pool=pool, actor=tag)


def take_usage_sample(now: datetime | None = None) -> list[UsageSample]:
    """One row per pool: in use, ready, starting, and visitors turned away
    since the last sample. Rows older than TMPNB_SAMPLE_DAYS are deleted."""
    now = now or timezone.now()
    live = Container.objects.live().values_list("pool_id", "state").annotate(n=Count("pk"))
    counts = {(pool_id, state): n for pool_id, state, n in live}
    turned_away = Event.objects.filter(kind=Event.Kind.TURNED_AWAY, time__gt=_last_sample_time(now), time__lte=now)
    waiting = dict(turned_away.values_list("pool_id").annotate(n=Count("pk")))
    samples = [
        UsageSample(
            time=now,
            pool_id=pool_id,
            in_use=counts.get((pool_id, Container.State.ASSIGNED), 0),
            ready=counts.get((pool_id, Container.State.READY), 0),
            starting=counts.get((pool_id, Container.State.SPAWNING), 0),
            waiting=waiting.get(pool_id, 0),
        )
        for pool_id in Pool.objects.values_list("pk", flat=True)
    ]
    with transaction.atomic():
        UsageSample.objects.bulk_create(samples)
        UsageSample.objects.filter(time__lt=now - timedelta(days=settings.TMPNB_SAMPLE_DAYS)).delete()
    return samples
