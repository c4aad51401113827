"""Pool sizes planned ahead, applied once at their time."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from pool.models import Event, Pool, Schedule
from pool.services import schedules
from tests.factories import PoolFactory, pool_admin_form


def plan(pool, minutes, capacity, ready_target=None):
    return Schedule.objects.create(pool=pool, at=timezone.now() + timedelta(minutes=minutes), capacity=capacity, ready_target=ready_target)


@pytest.mark.django_db
def test_a_due_schedule_resizes_its_pool_once_and_logs_it():
    pool = PoolFactory(capacity=5)
    due = plan(pool, -1, 60, ready_target=20)
    later = plan(pool, 30, 5)
    assert schedules.apply_due_schedules() == [due]
    assert schedules.apply_due_schedules() == []
    pool.refresh_from_db()
    assert (pool.capacity, pool.ready_target) == (60, 20)
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.applied_at is not None and later.applied_at is None
    [event] = Event.objects.filter(kind=Event.Kind.SCHEDULE)
    assert event.actor == "schedule" and event.pool == pool
    assert event.details == {"schedule": due.pk, "at": due.at.isoformat(), "capacity": [5, 60], "ready_target": [None, 20]}
    assert event.message.startswith("pool default: size 60, ready target 20 (planned for ")


@pytest.mark.django_db
def test_schedules_missed_while_the_service_was_down_are_applied_in_order():
    pool = PoolFactory(capacity=2, ready_target=2)
    plan(pool, -60, 60)
    plan(pool, -5, 5, ready_target=1)
    schedules.apply_due_schedules()
    pool.refresh_from_db()
    assert (pool.capacity, pool.ready_target) == (5, 1)
    assert [e.details["capacity"] for e in Event.objects.order_by("pk")] == [[2, 60], [60, 5]]


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_never_apply_a_schedule_twice():
    pool = PoolFactory(capacity=1)
    for n in range(10):
        plan(pool, -10 + n, n + 2)
    applied, errors = [], []

    def beat():
        try:
            applied.extend(s.pk for s in schedules.apply_due_schedules())
        except Exception as error:  # reported below: a beat must never fail
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(applied) == sorted(Schedule.objects.values_list("pk", flat=True))
    assert Event.objects.filter(kind=Event.Kind.SCHEDULE).count() == 10
    assert Pool.objects.get(pk=pool.pk).capacity == 11


@pytest.mark.django_db
@pytest.mark.integration  # the admin's form asks Docker whether the image is there
def test_the_organiser_plans_sizes_inline_on_the_pool_in_the_admin(admin_client):
    pool = PoolFactory(capacity=2)
    form = pool_admin_form(
        pool,
        **{
            "schedules-TOTAL_FORMS": 2,
            "schedules-0-at_0": "2030-05-04",
            "schedules-0-at_1": "09:45:00",
            "schedules-0-capacity": 60,
            "schedules-1-at_0": "2030-05-04",
            "schedules-1-at_1": "17:30:00",
            "schedules-1-capacity": 5,
            "schedules-1-ready_target": 9,
        },
    )
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", form)
    assert response.status_code == 200 and "The ready target cannot exceed the size." in response.content.decode()
    form["schedules-1-ready_target"] = 2
    assert admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", form).status_code == 302
    assert [(s.at.strftime("%H:%M"), s.capacity, s.ready_target) for s in pool.schedules.all()] == [("09:45", 60, None), ("17:30", 5, 2)]
    page = admin_client.get(f"/admin/pool/pool/{pool.pk}/change/").content.decode()
    assert "Schedules" in page and "17:30:00" in page
