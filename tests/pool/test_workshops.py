"""Workshops: their state by the clock, the warming lead from the measured
fill, the checks on their numbers, the schedules they write and their end."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from pool.models import Collection, Container, Event, Pool, QueueEntry, Schedule, Session, Workshop
from pool.services import workshops
from pool.services.workshops import Fill
from tests.factories import ContainerFactory, PoolFactory, SessionFactory, new_visitor

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
GIB = 2**30


def workshop_at(start=T0, *, minutes=60, lead=120, keep=10, finished_at=None, **fields):
    seat = (fields.pop("pool", None) or PoolFactory(), fields.pop("headcount", 30))
    workshop = Workshop(
        name="Intro",
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
        lead_seconds=lead,
        keep_minutes=keep,
        finished_at=finished_at,
        **fields,
    )
    workshop.seat = seat  # the pool and headcount plan_workshop gives it
    return workshop


def plan_workshop(workshop, **options):
    """workshops.plan_workshop with the pool and headcount workshop_at gave it."""
    return workshops.plan_workshop(workshop, headcounts=dict([workshop.seat]), **options)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("offset", "finished", "state"),
    [
        (timedelta(minutes=-3), False, "upcoming"),
        (timedelta(minutes=-2), False, "warming"),
        (timedelta(seconds=-1), False, "warming"),
        (timedelta(0), False, "open"),
        (timedelta(minutes=59), False, "open"),
        (timedelta(minutes=60), False, "ending"),
        (timedelta(minutes=75), False, "ending"),  # its time is up but the work is not collected yet
        (timedelta(minutes=75), True, "ended"),
    ],
)
def test_a_workshops_state_follows_the_clock(offset, finished, state):
    workshop = workshop_at(finished_at=T0 if finished else None)
    assert workshop.state(T0 + offset) == state


def test_the_lead_time_covers_one_spawn_then_the_rest_at_the_measured_rate_with_a_margin():
    assert workshops.warming_lead(60, Fill(spawn_seconds=10, per_second=1)) == timedelta(seconds=round((10 + 59) * 1.5))
    assert workshops.warming_lead(100, Fill(spawn_seconds=4, per_second=0.5)) == timedelta(seconds=round((4 + 198) * 1.5))


def test_a_small_workshop_still_warms_a_minute_ahead():
    assert workshops.warming_lead(2, Fill(spawn_seconds=1, per_second=10)) == timedelta(minutes=1)


@pytest.mark.django_db
def test_the_fill_is_measured_on_the_pools_spawns_leaving_out_its_pauses():
    pool = PoolFactory()
    # Four notebooks ready a second apart after a 3 s spawn, then one an hour later.
    for ready in [0, 1, 2, 3, 3600]:
        ContainerFactory(pool=pool, state=Container.State.READY, created_at=T0 + timedelta(seconds=ready - 3), ready_at=T0 + timedelta(seconds=ready))
    assert workshops.measured_fill(pool) == Fill(spawn_seconds=3, per_second=1)


@pytest.mark.django_db
def test_a_pool_never_filled_is_given_a_cautious_fill():
    assert workshops.measured_fill(PoolFactory()) == workshops.DEFAULT_FILL


def test_the_machine_holds_its_memory_less_a_reserve_at_the_measured_memory_per_notebook(settings):
    settings.TMPNB_NOTEBOOK_MEMORY_MB = 88
    assert workshops.notebooks_the_machine_holds(8 * GIB) == (7 * 1024) // 88


def test_an_end_before_the_start_is_refused_with_a_clear_message():
    problems = workshops.workshop_problems(starts_at=T0, ends_at=T0 - timedelta(minutes=1), headcount=1, memory=8 * GIB)
    assert problems == {"ends_at": "The end must come after the start."}


def test_a_headcount_above_what_the_machine_holds_says_what_it_holds(settings):
    settings.TMPNB_NOTEBOOK_MEMORY_MB = 100
    problems = workshops.workshop_problems(starts_at=T0, ends_at=T0 + timedelta(hours=1), headcount=500, memory=11 * GIB)
    assert list(problems) == ["headcount"]
    assert "can hold about 102 notebooks" in problems["headcount"] and "at most 102" in problems["headcount"]


@pytest.mark.django_db
def test_bad_input_changes_nothing():
    pool = PoolFactory(capacity=2)
    workshop = workshop_at(T0 + timedelta(days=1), minutes=-5, pool=pool, access_code="secret")
    with pytest.raises(workshops.WorkshopError, match="The end must come after the start"):
        plan_workshop(workshop, memory=8 * GIB, now=T0)
    assert not Workshop.objects.exists() and not Schedule.objects.exists()
    pool.refresh_from_db()
    assert pool.access_code == ""


@pytest.mark.django_db
def test_planning_writes_a_warming_and_a_drain_schedule_and_gives_the_pool_its_access_code():
    pool = PoolFactory(capacity=2)
    workshop = plan_workshop(workshop_at(T0 + timedelta(hours=2), pool=pool, headcount=30, access_code="owl"), memory=8 * GIB, now=T0)
    lead = workshops.warming_lead(30, workshops.DEFAULT_FILL)
    assert workshop.lead_seconds == lead.total_seconds()
    warm, drain = workshop.schedules.order_by("at")
    assert (warm.at, warm.capacity, warm.ready_target) == (workshop.starts_at - lead, 30, 30)
    assert (drain.at, drain.capacity, drain.ready_target) == (workshop.closes_at, 0, 0)
    pool.refresh_from_db()
    assert pool.access_code == "owl"


@pytest.mark.django_db
def test_replanning_replaces_the_schedules_not_yet_applied():
    workshop = plan_workshop(workshop_at(T0 + timedelta(hours=2)), memory=8 * GIB, now=T0)
    workshop.starts_at += timedelta(minutes=30)
    plan_workshop(workshop, memory=8 * GIB, now=T0)
    assert workshop.schedules.count() == 2
    assert workshop.schedules.order_by("at").first().at == workshop.warms_at


@pytest.mark.django_db
def test_the_landing_is_closed_before_the_start_open_during_it_and_closed_after():
    workshop = plan_workshop(workshop_at(T0, time_zone="Europe/Paris"), memory=8 * GIB, now=T0 - timedelta(hours=1))
    assert workshops.governing(workshop.pools.get(), T0) == workshop
    closed = workshops.landing_closed(workshop, now=T0 - timedelta(minutes=5))
    assert closed.opens and f"{closed.at:%H:%M}" == "10:00"  # 09:00 UTC, in Paris
    assert workshops.landing_closed(workshop, now=T0) is None
    assert not workshops.landing_closed(workshop, now=T0 + timedelta(minutes=61)).opens


@pytest.mark.django_db
def test_a_participants_banner_counts_down_to_the_workshops_close(monkeypatch):
    from pool.services import upkeep

    now = timezone.now()
    session = SessionFactory()
    workshop = plan_workshop(workshop_at(now - timedelta(minutes=30), minutes=28, keep=3, pool=session.container.pool), memory=8 * GIB, now=now)
    monkeypatch.setattr(upkeep, "get_proxy", lambda: type("Proxy", (), {"get_route": lambda self, path: None})())
    left = upkeep.time_left(path_id=session.container.path_id, visitor=session.visitor, now=now)
    assert left.age_left == round((workshop.closes_at - now).total_seconds()) and left.cull_due_soon


@pytest.mark.django_db
def test_at_its_close_the_work_is_collected_the_sessions_end_and_the_pool_drains_once(monkeypatch):
    now = timezone.now()
    session = SessionFactory(container__pool__capacity=5)
    pool = session.container.pool
    workshop = plan_workshop(workshop_at(now - timedelta(hours=1), minutes=50, keep=5, pool=pool), memory=8 * GIB, now=now - timedelta(hours=2))
    collected = []

    def collect(collection_id):
        collected.append(collection_id)
        return Collection.objects.get(pk=collection_id)

    monkeypatch.setattr(workshops, "collect_work", collect)
    monkeypatch.setattr("pool.services.ending.finish_retirement", lambda container, **kwargs: container.mark_gone())
    monkeypatch.setattr("pool.services.ending.unroute_container", lambda container: None)
    assert workshops.advance_workshops(now) == [workshop]
    assert workshops.advance_workshops(now) == []
    workshop.refresh_from_db()
    assert workshop.state(now) == "ended" and [workshop.collection_id] == collected
    session.refresh_from_db()
    assert session.end_reason == Session.EndReason.CULLED_AGE
    assert Pool.objects.values_list("capacity", flat=True).get(pk=pool.pk) == 0


def planned(start, *, pool=None, **fields):
    return plan_workshop(workshop_at(start, pool=pool or PoolFactory(capacity=2), **fields), memory=8 * GIB, now=timezone.now())


@pytest.mark.django_db
def test_before_the_start_the_landing_says_when_it_opens_and_takes_nothing(client):
    ContainerFactory(state=Container.State.READY, ready_at=timezone.now())
    start = timezone.now() + timedelta(minutes=10)
    planned(start, time_zone="Asia/Tokyo")
    response = new_visitor(client).get("/")
    assert response.status_code == 503 and 0 < int(response["Retry-After"]) <= 60
    assert f"Opens at {start.astimezone(ZoneInfo('Asia/Tokyo')):%H:%M}." in response.content.decode()
    assert not Session.objects.exists() and not QueueEntry.objects.exists()
    assert Container.objects.get().state == Container.State.READY


@pytest.mark.django_db
def test_once_open_the_landing_hands_out_notebooks_as_usual(client):
    planned(timezone.now() - timedelta(minutes=1))
    response = new_visitor(client).get("/")
    assert response.status_code != 503 and QueueEntry.objects.exists()  # no notebook is ready: they wait in the queue


@pytest.mark.django_db
def test_after_the_end_newcomers_are_told_it_ended_and_participants_reach_their_notebook(client):
    session = SessionFactory()
    planned(timezone.now() - timedelta(hours=1), minutes=55, pool=session.container.pool)
    assert new_visitor(client).get("/").status_code == 410
    assert workshops.landing_closed(Workshop.objects.get(), visitor=session.visitor) is None


@pytest.mark.django_db
def test_the_landing_speaks_the_workshops_language_to_a_participant_who_chose_none(client, settings):
    planned(timezone.now() + timedelta(minutes=10), language="fr")
    response = new_visitor(client).get("/")
    assert '<html lang="fr"' in response.content.decode() and "Ouvre à" in response.content.decode()
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"
    assert '<html lang="de"' in client.get("/").content.decode()


def admin_form(pool, start, end, headcount, zone="Europe/Paris"):
    """The admin's form, its times typed as a clock in ``zone`` shows them."""
    start, end = (moment.astimezone(ZoneInfo(zone)) if moment.tzinfo else moment for moment in (start, end))
    return {
        "name": "Intro to pandas",
        "starts_at_0": f"{start:%Y-%m-%d}",
        "starts_at_1": f"{start:%H:%M:%S}",
        "ends_at_0": f"{end:%Y-%m-%d}",
        "ends_at_1": f"{end:%H:%M:%S}",
        "time_zone": zone,
        "seats-TOTAL_FORMS": "1",
        "seats-INITIAL_FORMS": "0",
        "seats-MIN_NUM_FORMS": "1",
        "seats-MAX_NUM_FORMS": "1000",
        "seats-0-pool": pool.pk,
        "seats-0-headcount": headcount,
        "keep_minutes": 10,
        "materials_source": "",
        "access_code": "",
        "language": "",
    }


@pytest.mark.django_db
def test_the_admin_refuses_an_end_before_the_start_and_a_headcount_the_machine_cannot_hold(admin_client, settings):
    settings.TMPNB_MACHINE_MEMORY_MB = 2048
    pool, start = PoolFactory(), timezone.now() + timedelta(hours=1)
    response = admin_client.post("/admin/pool/workshop/add/", admin_form(pool, start, start - timedelta(hours=1), 50))
    page = response.content.decode()
    assert response.status_code == 200 and "The end must come after the start." in page
    assert f"This machine can hold about {1024 // settings.TMPNB_NOTEBOOK_MEMORY_MB} notebooks" in page
    assert not Workshop.objects.exists() and not Schedule.objects.exists()


@pytest.mark.django_db
def test_a_workshop_saved_in_the_admin_is_planned_and_its_page_shows_it_at_a_glance(admin_client, settings):
    settings.TMPNB_MACHINE_MEMORY_MB = 8192
    pool, start = PoolFactory(), timezone.now() + timedelta(hours=1)
    response = admin_client.post("/admin/pool/workshop/add/", admin_form(pool, start, start + timedelta(hours=2), 20))
    assert response.status_code == 302
    workshop = Workshop.objects.get()
    assert workshop.schedules.count() == 2
    page = admin_client.get(f"/admin/pool/workshop/{workshop.pk}/change/").content.decode()
    assert "<strong>upcoming</strong>. Headcount 20: 0 ready, 0 in use, 0 starting; 0 in the queue." in page
    assert "upcoming" in admin_client.get("/admin/pool/workshop/").content.decode()


@pytest.mark.django_db
def test_an_api_client_is_told_when_the_workshop_opens_and_takes_nothing(client, settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    ContainerFactory(state=Container.State.READY, ready_at=timezone.now())
    workshop = planned(timezone.now() + timedelta(minutes=10))
    response = client.post("/api/spawn", headers={"Authorization": "token api-secret"})
    assert response.status_code == 503 and response.json()["status"] == "opens"
    assert response.json()["at"] == workshop.local(workshop.starts_at).isoformat()
    assert not Session.objects.exists() and Container.objects.get().state == Container.State.READY


def workshop_events(step=None):
    events = Event.objects.filter(kind=Event.Kind.WORKSHOP).order_by("time", "pk")
    return [event for event in events if step is None or event.details["step"] == step]


@pytest.mark.django_db
def test_the_event_log_says_who_planned_a_workshop_with_its_lead_and_schedules():
    workshop = plan_workshop(workshop_at(T0 + timedelta(hours=2), headcount=30, time_zone="Europe/Paris"), by="ada", memory=8 * GIB, now=T0)
    [event] = workshop_events()
    warm, drain = workshop.schedules.order_by("at")
    assert (event.actor, event.pool, event.details["workshop"], event.details["step"]) == ("ada", workshop.pools.get(), workshop.pk, "planned")
    assert event.details["lead_seconds"] == workshop.lead_seconds and event.details["headcount"] == 30
    assert [row["id"] for row in event.details["schedules"]] == [warm.pk, drain.pk]
    assert event.details["schedules"][0]["ready_target"] == 30 and event.details["schedules"][1]["capacity"] == 0
    assert event.message.startswith("workshop Intro planned: 2026-12-07 12:00 to 2026-12-07 13:00 Europe/Paris, 30 participants (30 on default), warming")
    assert f"#{warm.pk} at " in event.message and f"#{drain.pk} at 2026-12-07 13:10: default capacity 0, 0 ready" in event.message


@pytest.mark.django_db
def test_the_event_log_says_once_when_a_workshop_opened_and_ended_with_its_numbers(monkeypatch):
    now = timezone.now()
    session = SessionFactory(container__pool__capacity=5)
    pool = session.container.pool
    ContainerFactory(pool=pool, state=Container.State.READY, ready_at=now)
    workshop = plan_workshop(workshop_at(now - timedelta(minutes=5), minutes=60, pool=pool, headcount=3), memory=8 * GIB, now=now)

    workshops.advance_workshops(now)
    workshops.advance_workshops(now)  # a second beat tells nothing new
    [opened] = workshop_events("opened")
    assert (opened.details["ready"], opened.details["in_use"], opened.details["headcount"], opened.details["queued"]) == (1, 1, 3, 0)
    assert opened.message == "workshop Intro opened: 1 notebooks ready for 3 participants, 1 in use, 0 waiting"

    later = now + timedelta(minutes=56)
    workshops.advance_workshops(later)
    workshops.advance_workshops(later)
    [ended] = workshop_events("ended")
    assert ended.details["in_use"] == 1 and ended.details["closes_at"] == workshop.closes_at.isoformat()
    assert not workshop_events("collected")  # kept for keep_minutes first


@pytest.mark.django_db
def test_the_event_log_says_what_the_close_collected_and_ended(monkeypatch):
    now = timezone.now()
    session = SessionFactory(container__pool__capacity=5)
    pool = session.container.pool
    plan_workshop(workshop_at(now - timedelta(hours=1), minutes=50, keep=5, pool=pool), memory=8 * GIB, now=now - timedelta(hours=2))

    def collect(collection_id):
        Collection.objects.filter(pk=collection_id).update(participants=1, size=2048, file_name="intro.zip", taken_at=now)
        return Collection.objects.get(pk=collection_id)

    monkeypatch.setattr(workshops, "collect_work", collect)
    monkeypatch.setattr("pool.services.ending.finish_retirement", lambda container, **kwargs: container.mark_gone())
    monkeypatch.setattr("pool.services.ending.unroute_container", lambda container: None)
    workshops.advance_workshops(now)

    assert [event.details["step"] for event in workshop_events()] == ["planned", "ended", "collected", "closed"]
    [collected] = workshop_events("collected")
    assert (collected.details["participants"], collected.details["size"], collected.details["incomplete"]) == (1, 2048, 0)
    assert collected.message == "workshop Intro collected: work of 1 participants (0 not whole), 2048 bytes in intro.zip"
    [closed] = workshop_events("closed")
    assert closed.details["ended"] == 1 and closed.message == "workshop Intro closed: 1 notebooks ended, the pool drains"


@pytest.mark.django_db
def test_a_collection_that_fails_at_the_close_is_told_and_the_notebooks_end_all_the_same(monkeypatch):
    now = timezone.now()
    session = SessionFactory(container__pool__capacity=5)
    plan_workshop(workshop_at(now - timedelta(hours=1), minutes=50, keep=5, pool=session.container.pool), memory=8 * GIB, now=now - timedelta(hours=2))

    def collect(collection_id):
        raise OSError("No space left on device")

    monkeypatch.setattr(workshops, "collect_work", collect)
    monkeypatch.setattr("pool.services.ending.finish_retirement", lambda container, **kwargs: container.mark_gone())
    monkeypatch.setattr("pool.services.ending.unroute_container", lambda container: None)
    workshops.advance_workshops(now)

    [collected] = workshop_events("collected")
    assert collected.message == "workshop Intro collected: no zip was made: OSError: No space left on device"
    assert workshop_events("closed")[0].details["ended"] == 1


@pytest.mark.django_db
def test_the_admin_reads_the_times_in_the_workshops_time_zone_and_shows_them_back_in_it(admin_client, settings):
    settings.TMPNB_MACHINE_MEMORY_MB = 8192
    assert settings.TIME_ZONE != "America/New_York"
    pool = PoolFactory()
    typed = admin_form(pool, datetime(2027, 3, 2, 9, 0), datetime(2027, 3, 2, 12, 30), 20, zone="America/New_York")
    assert admin_client.post("/admin/pool/workshop/add/", typed).status_code == 302
    workshop = Workshop.objects.get()
    assert (workshop.starts_at, workshop.ends_at) == (datetime(2027, 3, 2, 14, 0, tzinfo=UTC), datetime(2027, 3, 2, 17, 30, tzinfo=UTC))
    page = admin_client.get(f"/admin/pool/workshop/{workshop.pk}/change/").content.decode()
    assert 'name="starts_at_1" value="09:00:00"' in page and 'name="ends_at_1" value="12:30:00"' in page


@pytest.mark.django_db
def test_the_admin_refuses_a_time_the_clocks_skip_and_a_zone_that_does_not_exist(admin_client, settings):
    settings.TMPNB_MACHINE_MEMORY_MB = 8192
    pool = PoolFactory()
    in_the_gap = admin_form(pool, datetime(2027, 3, 28, 2, 30), datetime(2027, 3, 28, 5, 0), 20, zone="Europe/Paris")
    page = admin_client.post("/admin/pool/workshop/add/", in_the_gap).content.decode()
    assert "2027-03-28 02:30 does not exist in Europe/Paris: its clocks skip it (summer time begins)" in page
    nowhere = admin_client.post("/admin/pool/workshop/add/", admin_form(pool, datetime(2027, 3, 2, 9, 0), datetime(2027, 3, 2, 10, 0), 20, zone="Mars/Olympus"))
    assert "&#x27;Mars/Olympus&#x27; is not a time zone" in nowhere.content.decode()
    assert not Workshop.objects.exists() and not Schedule.objects.exists() and not Event.objects.exists()


def test_a_time_shown_twice_when_summer_time_ends_is_the_first_of_the_two():
    assert workshops.in_time_zone(datetime(2027, 10, 31, 2, 30), "Europe/Paris") == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert workshops.in_time_zone(datetime(2027, 7, 1, 9, 0), "Asia/Tokyo") == datetime(2027, 7, 1, 0, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_a_workshop_on_two_pools_warms_and_drains_each_to_its_own_headcount():
    python, r = PoolFactory(name="python", capacity=2), PoolFactory(name="r", capacity=40)
    workshop = workshops.plan_workshop(workshop_at(T0 + timedelta(hours=2)), headcounts={python: 30, r: 10}, memory=8 * GIB, now=T0)
    assert workshop.headcount == 40 and [(seat.pool, seat.headcount) for seat in workshop.seats_by_pool()] == [(python, 30), (r, 10)]
    assert workshop.lead_seconds == workshops.warming_lead(30, workshops.DEFAULT_FILL).total_seconds()  # the slower pool's
    rows = {(row.pool.name, row.capacity, row.ready_target, row.at) for row in workshop.schedules.all()}
    warm_at = workshop.warms_at
    assert rows == {("python", 30, 30, warm_at), ("r", 40, 10, warm_at), ("python", 0, 0, workshop.closes_at), ("r", 0, 0, workshop.closes_at)}
    [event] = workshop_events()
    assert event.pool is None and event.details["headcounts"] == {"python": 30, "r": 10}
    assert "40 participants (30 on python, 10 on r)" in event.message

    workshops.plan_workshop(workshop, headcounts={r: 12}, memory=8 * GIB, now=T0)  # python dropped
    assert [(seat.pool, seat.headcount) for seat in workshop.seats_by_pool()] == [(r, 12)]
    assert set(workshop.schedules.values_list("pool__name", flat=True)) == {"r"}


@pytest.mark.django_db
def test_a_workshop_needs_a_pool_and_its_headcount_counts_over_all_its_pools():
    python, r = PoolFactory(name="python"), PoolFactory(name="r")
    with pytest.raises(workshops.WorkshopError, match="at least one pool"):
        workshops.plan_workshop(workshop_at(T0 + timedelta(hours=2)), headcounts={}, memory=8 * GIB, now=T0)
    with pytest.raises(workshops.WorkshopError, match="can hold about 81 notebooks"):
        workshops.plan_workshop(workshop_at(T0 + timedelta(hours=2)), headcounts={python: 50, r: 50}, memory=8 * GIB, now=T0)
    assert not Workshop.objects.exists() and not Schedule.objects.exists()


@pytest.mark.django_db
def test_each_pool_of_a_workshop_is_gated_by_it_and_its_page_shows_each_pools_numbers(client):
    python, r = PoolFactory(name="python", capacity=2), PoolFactory(name="r", capacity=2)
    ContainerFactory(pool=r, state=Container.State.READY, ready_at=timezone.now())
    SessionFactory(container__pool=python)
    workshop = workshops.plan_workshop(workshop_at(timezone.now() + timedelta(minutes=10)), headcounts={python: 3, r: 2}, memory=8 * GIB)
    assert workshops.governing(python, timezone.now()) == workshop == workshops.governing(r, timezone.now())
    assert new_visitor(client).get("/p/r/").status_code == 503
    glance = workshops.glance(workshop)
    assert [(each.pool, each.headcount, each.ready, each.in_use) for each in glance.pools] == [(python, 3, 0, 1), (r, 2, 1, 0)]
    assert (glance.headcount, glance.ready, glance.in_use) == (5, 1, 1)


@pytest.mark.django_db
def test_at_its_close_a_workshop_on_two_pools_collects_everyone_into_one_zip_and_ends_every_notebook(monkeypatch):
    now = timezone.now()
    python, r = SessionFactory(container__pool__name="python"), SessionFactory(container__pool__name="r")
    workshop = workshops.plan_workshop(
        workshop_at(now - timedelta(hours=1), minutes=50, keep=5),
        headcounts={python.container.pool: 1, r.container.pool: 1},
        memory=8 * GIB,
        now=now - timedelta(hours=2),
    )
    asked = []
    monkeypatch.setattr(workshops, "collect_work", lambda collection_id: asked.append(collection_id) or Collection.objects.get(pk=collection_id))
    monkeypatch.setattr("pool.services.ending.finish_retirement", lambda container, **kwargs: container.mark_gone())
    monkeypatch.setattr("pool.services.ending.unroute_container", lambda container: None)
    workshops.advance_workshops(now)
    [collection] = Collection.objects.all()
    assert asked == [collection.pk] and collection.workshop == workshop
    assert not Session.objects.active().exists()
    assert workshop_events("closed")[0].message == "workshop Intro closed: 2 notebooks ended, the pools drain"
    assert set(Pool.objects.filter(name__in=["python", "r"]).values_list("capacity", flat=True)) == {0}


@pytest.mark.django_db
def test_the_admin_takes_a_headcount_per_pool(admin_client, settings):
    settings.TMPNB_MACHINE_MEMORY_MB = 8192
    python, r = PoolFactory(name="python"), PoolFactory(name="r")
    start = timezone.now() + timedelta(hours=1)
    form = admin_form(python, start, start + timedelta(hours=2), 20)
    form.update({"seats-TOTAL_FORMS": "2", "seats-1-pool": r.pk, "seats-1-headcount": 8})
    assert admin_client.post("/admin/pool/workshop/add/", form).status_code == 302
    workshop = Workshop.objects.get()
    assert [(seat.pool, seat.headcount) for seat in workshop.seats_by_pool()] == [(python, 20), (r, 8)]
    assert workshop.schedules.count() == 4
    page = admin_client.get(f"/admin/pool/workshop/{workshop.pk}/change/").content.decode()
    assert "<strong>upcoming</strong>. Headcount 28:" in page and "<li>r: headcount 8: 0 ready" in page
    assert "python (20), r (8)" in admin_client.get("/admin/pool/workshop/").content.decode()
