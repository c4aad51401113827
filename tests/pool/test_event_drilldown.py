"""The event log's date drill-down (templates/admin/pool/event/change_list.html)
lists exactly the years, months and days Django's own would, without
truncating every event's time."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from pool.models import Event
from pool.services.events import periods_with_events
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db

# Around the turn of a year and a month in UTC, which are not Paris's; and a
# day of its change to summer time.
TIMES = [
    datetime(2025, 11, 30, 23, 30, tzinfo=UTC),  # 1 December in Paris
    datetime(2025, 12, 14, 12, 0, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 15, tzinfo=UTC),  # 1 January 2026 in Paris
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # Paris moves its clocks at 01:00 UTC
    datetime(2026, 3, 29, 22, 30, tzinfo=UTC),  # 30 March in Paris
    datetime(2026, 5, 2, 8, 0, tzinfo=UTC),
]


@pytest.fixture
def events():
    pool = PoolFactory()
    Event.objects.bulk_create(Event(kind=Event.Kind.SPAWN if i % 2 else Event.Kind.CULL, pool=pool, message="m", time=t) for i, t in enumerate(TIMES))
    return Event.objects.all()


@pytest.mark.postgres  # whose own truncation in a time zone is compared too
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Sao_Paulo"])
@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_the_periods_are_djangos_own(events, settings, zone, kind):
    settings.TIME_ZONE = zone
    with timezone.override(zone):
        for listed in (
            events,
            events.filter(kind=Event.Kind.SPAWN),
            events.filter(time__gte=datetime(2025, 12, 1, tzinfo=UTC), time__lt=datetime(2026, 1, 1, tzinfo=UTC)),
            events.none(),
        ):
            assert periods_with_events(listed, kind) == list(listed.datetimes("time", kind))


def test_the_admin_drills_down_by_year_month_and_day(events, admin_client, settings):
    settings.TIME_ZONE = "Europe/Paris"
    with timezone.override("Europe/Paris"):
        top = admin_client.get("/admin/pool/event/").content.decode()
        assert "?time__year=2025" in top and "?time__year=2026" in top
        year = admin_client.get("/admin/pool/event/?time__year=2026").content.decode()
        assert "time__month=1&" in year.replace("&amp;", "&") and "time__month=3&" in year.replace("&amp;", "&")
        assert "time__month=2&" not in year.replace("&amp;", "&")
        month = admin_client.get("/admin/pool/event/?time__year=2026&time__month=3").content.decode().replace("&amp;", "&")
        assert "time__day=29" in month and "time__day=30" in month and "time__day=28" not in month
