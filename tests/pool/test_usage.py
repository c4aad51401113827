"""Usage samples for the dashboard's chart, and the visitors turned away."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pool.models import Container, Event, UsageSample
from pool.services import usage
from tests.factories import ContainerFactory, PoolFactory, new_visitor

pytestmark = pytest.mark.django_db


def test_a_sample_records_each_pools_numbers():
    first, second = PoolFactory(name="first", capacity=5), PoolFactory(name="second")
    ContainerFactory.create_batch(2, pool=first, state=Container.State.ASSIGNED)
    ContainerFactory(pool=first, state=Container.State.READY)
    ContainerFactory(pool=first, state=Container.State.SPAWNING)
    ContainerFactory(pool=first, state=Container.State.GONE)
    ContainerFactory(pool=second, state=Container.State.READY)
    usage.take_usage_sample()
    rows = {s.pool.name: (s.in_use, s.ready, s.starting, s.waiting) for s in UsageSample.objects.all()}
    assert rows == {"first": (2, 1, 1, 0), "second": (0, 1, 0, 0)}


def test_a_waiting_visitor_counts_once_per_sample_however_often_their_page_reloads(client):
    pool = PoolFactory()
    for _ in range(3):
        assert "Your place in the queue" in client.get("/").content.decode()
    new_visitor(client)
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 429
    assert Event.objects.filter(kind=Event.Kind.TURNED_AWAY, pool=pool).count() == 2
    [sample] = usage.take_usage_sample()
    assert sample.waiting == 2
    # Still waiting in the next period: counted again, once.
    client.get("/")
    client.get("/")
    assert usage.take_usage_sample()[0].waiting == 1
    assert usage.take_usage_sample()[0].waiting == 0


def test_the_api_records_a_client_it_turns_away(client, settings):
    settings.TMPNB_API_TOKEN = "secret"
    pool = PoolFactory()
    response = client.post("/api/spawn", headers={"Authorization": "token secret"})
    assert response.status_code == 429
    [event] = Event.objects.filter(kind=Event.Kind.TURNED_AWAY)
    assert event.pool == pool and event.message == "nothing ready in pool default"


def test_samples_older_than_the_retention_are_deleted(settings):
    settings.TMPNB_SAMPLE_DAYS = 14
    pool = PoolFactory()
    now = timezone.now()
    for days in (15, 13):
        UsageSample.objects.create(time=now - timedelta(days=days), pool=pool, in_use=1, ready=0, starting=0, waiting=0)
    usage.take_usage_sample(now)
    assert sorted((now - s.time).days for s in UsageSample.objects.all()) == [0, 13]
