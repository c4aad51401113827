"""/metrics: Prometheus' text format from the database, for a token or loopback."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from pool.models import Container, Event, Session
from pool.services import events, usage
from tests.factories import ContainerFactory, PoolFactory, SessionFactory

pytestmark = pytest.mark.django_db


def scrape(client, **headers):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **headers)
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def samples(text):
    """{(name, (label pairs...)): value} of every sample."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize(
    ("remote", "forwarded", "authorization", "status"),
    [
        ("127.0.0.1", None, None, 200),  # on this host, not through the proxy
        ("127.0.0.1", "127.0.0.1", None, 200),  # through the proxy from this host
        ("127.0.0.1", "203.0.113.9", None, 403),  # through the proxy from elsewhere
        ("127.0.0.1", "127.0.0.1, 203.0.113.9", None, 403),  # a forged first entry does not count
        ("198.51.100.4", None, None, 403),
        ("127.0.0.1", "203.0.113.9", "Bearer s3cret", 200),
        ("198.51.100.4", None, "Bearer s3cret", 200),
        ("198.51.100.4", None, "Bearer wrong", 403),
        ("198.51.100.4", None, "Basic s3cret", 403),
    ],
)
def test_metrics_are_readable_with_the_token_or_from_loopback_only(client, settings, remote, forwarded, authorization, status):
    settings.TMPNB_METRICS_TOKEN = "s3cret"
    headers = {"REMOTE_ADDR": remote}
    if forwarded:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    if authorization:
        headers["HTTP_AUTHORIZATION"] = authorization
    response = client.get("/metrics", **headers)
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"].startswith("text/plain; version=")


def test_without_a_token_set_only_loopback_reads_them(client, settings):
    settings.TMPNB_METRICS_TOKEN = None
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.4", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


@pytest.mark.postgres
def test_the_values_come_from_the_database(client):
    pool = PoolFactory(capacity=5, ready_target=3)
    PoolFactory(name="empty", capacity=0)
    ContainerFactory.create_batch(2, pool=pool, state=Container.State.READY)
    ContainerFactory(pool=pool, state=Container.State.SPAWNING)
    now = timezone.now()
    for seconds in (0.8, 1.5, 4):
        ContainerFactory(pool=pool, state=Container.State.GONE, created_at=now - timedelta(seconds=seconds), ready_at=now)
    SessionFactory(container__pool=pool)
    for reason in (Session.EndReason.CULLED_IDLE, Session.EndReason.KILLED):
        SessionFactory(container__pool=pool, container__state=Container.State.GONE, ended_at=now, end_reason=reason)
    events.record_event(Event.Kind.FAILURE, "spawn failed", pool=pool, stage="spawn")
    usage.record_turned_away(pool=pool, visitor="v")
    values = scrape(client)
    label = (("pool", "default"),)
    assert values[("tmpnb_pool_capacity", label)] == 5 and values[("tmpnb_pool_ready_target", label)] == 3
    assert values[("tmpnb_containers", (("pool", "default"), ("state", "ready")))] == 2
    assert values[("tmpnb_containers", (("pool", "default"), ("state", "spawning")))] == 1
    assert values[("tmpnb_containers", (("pool", "default"), ("state", "assigned")))] == 1
    assert values[("tmpnb_assignments_total", label)] == 3
    assert values[("tmpnb_culls_total", (("pool", "default"), ("reason", "culled-idle")))] == 1
    assert values[("tmpnb_culls_total", (("pool", "default"), ("reason", "culled-age")))] == 0
    assert values[("tmpnb_failures_total", label)] == 1
    assert values[("tmpnb_turned_away_total", label)] == 1
    # Three containers took 0.8, 1.5 and 4 s; the factory's others were ready at once.
    instant = Container.objects.filter(ready_at__isnull=False).count() - 3
    assert values[("tmpnb_spawn_duration_seconds_bucket", (("le", "0.5"), ("pool", "default")))] == instant
    assert values[("tmpnb_spawn_duration_seconds_bucket", (("le", "1.0"), ("pool", "default")))] == instant + 1
    assert values[("tmpnb_spawn_duration_seconds_bucket", (("le", "2.0"), ("pool", "default")))] == instant + 2
    assert values[("tmpnb_spawn_duration_seconds_bucket", (("le", "5.0"), ("pool", "default")))] == instant + 3
    assert values[("tmpnb_spawn_duration_seconds_count", label)] == instant + 3
    assert values[("tmpnb_spawn_duration_seconds_sum", label)] == pytest.approx(6.3, abs=0.1)
    # A pool with nothing yet still has every series, at zero.
    assert values[("tmpnb_assignments_total", (("pool", "empty"),))] == 0
    assert values[("tmpnb_spawn_duration_seconds_count", (("pool", "empty"),))] == 0
