"""The event log: each kind of event is written by the service that acts,
and the organiser filters and exports it in the admin."""

import contextlib
import csv
import io
from datetime import timedelta

import docker
import pytest
from django.utils import timezone

from pool.models import Event, Pool, Schedule, Session, Workshop
from pool.services import assignment, broadcasts, collecting, disk, ending, live, look, materials, pools, resume, schedules, upkeep, worker, workshops
from tests.factories import ContainerFactory, PoolFactory, new_visitor, pool_admin_form
from tests.fakes import instead_of_sending
from tests.pool.test_upkeep import spawn_all


def events(kind):
    return list(Event.objects.filter(kind=kind).order_by("pk"))


def test_a_spawn_is_logged_with_its_duration(clean_pools):
    pool = PoolFactory(capacity=1)
    [container] = spawn_all(pool)
    [event] = events(Event.Kind.SPAWN)
    assert (event.pool, event.container) == (pool, container)
    assert 0 < event.details["seconds"] < 30
    assert event.message == f"{container.name} ready in {event.details['seconds']} s"


@pytest.mark.django_db
def test_an_assignment_names_the_visitor_by_a_short_tag_not_the_cookie_value():
    pool = PoolFactory()
    container = ContainerFactory(pool=pool)
    session = assignment.assign_container(pool=pool, visitor="the-cookie-value")
    [event] = events(Event.Kind.ASSIGNMENT)
    assert (event.container, event.session, event.actor) == (container, session, session.visitor_tag)
    assert "the-cookie-value" not in event.message + event.actor
    assert len(session.visitor_tag) == 10


def test_a_kill_names_the_organiser_and_the_session_it_ended(clean_pools):
    pool = PoolFactory(capacity=1)
    spawn_all(pool)
    session = assignment.assign_container(pool=pool, visitor="v")
    ending.kill_sessions([session], by="ada")
    [event] = events(Event.Kind.KILL)
    assert (event.session, event.container, event.actor) == (session, session.container, "ada")
    assert event.message == f"{session.container.name} killed by ada"


def test_a_cull_is_logged_with_its_reason(clean_pools):
    pool = PoolFactory(capacity=2, cull_max=60)
    spawn_all(pool)
    session = assignment.assign_container(pool=pool, visitor="old")
    Session.objects.filter(pk=session.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    upkeep.cull_sessions()
    [event] = events(Event.Kind.CULL)
    assert event.session == session
    assert event.details == {"reason": Session.EndReason.CULLED_AGE}
    assert event.message.endswith("culled: open too long")


def test_a_failed_spawn_and_a_container_that_died_are_failures(clean_pools, settings):
    settings.TMPNB_SPAWN_TIMEOUT = 1
    broken = PoolFactory(name="broken", capacity=1, image="tmpnb/not-here:0")
    spawn_all(broken)
    pool = PoolFactory(capacity=1)
    [victim] = spawn_all(pool)
    client = docker.from_env()
    client.containers.get(victim.backend_id).kill()
    client.close()
    upkeep.reconcile()
    spawn_failure, death = events(Event.Kind.FAILURE)
    assert spawn_failure.pool == broken and spawn_failure.details == {"stage": "spawn"}
    assert "image tmpnb/not-here:0 is not on this host" in spawn_failure.message
    assert death.container == victim and death.details == {"reason": Session.EndReason.CONTAINER_GONE, "stage": "running"}


@pytest.mark.django_db
def test_a_resize_and_a_drain_record_who_asked_and_the_numbers():
    pool = PoolFactory(capacity=4, ready_target=2)
    pools.resize_pool(pool, 6, by="ada")
    pools.drain_pool(pool, by="grace")
    [resize] = events(Event.Kind.RESIZE)
    assert resize.actor == "ada" and resize.details == {"capacity": [4, 6], "ready_target": [2, 2]}
    assert resize.message == "pool default: size 6, ready target 2"
    [drain] = events(Event.Kind.DRAIN)
    assert (drain.actor, drain.details) == ("grace", {"replaced": 0})


@pytest.mark.django_db
@pytest.mark.integration  # the admin's form asks Docker whether the image is there
def test_a_new_size_saved_in_the_admin_is_logged_as_a_resize_by_the_organiser(admin_client, admin_user):
    pool = PoolFactory(capacity=2)
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", pool_admin_form(pool, capacity=5))
    assert response.status_code == 302, response.content.decode()[:3000]
    [resize] = events(Event.Kind.RESIZE)
    assert resize.actor == admin_user.username and resize.details["capacity"] == [2, 5]


@pytest.mark.django_db
def test_the_admin_filters_events_by_kind_and_pool(admin_client):
    first, second = PoolFactory(name="first"), PoolFactory(name="second")
    pools.resize_pool(first, 3, by="ada")
    pools.drain_pool(second, by="ada")
    page = admin_client.get("/admin/pool/event/", {"kind": "drain"}).content.decode()
    assert "pool second: replacing 0 container(s)" in page and "pool first: size 3" not in page
    page = admin_client.get("/admin/pool/event/", {"pool__id__exact": first.pk}).content.decode()
    assert "pool first: size 3" in page and "pool second" not in page


@pytest.mark.django_db
def test_the_admin_exports_the_selected_events_as_csv(admin_client):
    pool = PoolFactory()
    container = ContainerFactory(pool=pool)
    session = assignment.assign_container(pool=pool, visitor="v")
    pools.resize_pool(pool, 7, by="ada")
    selected = Event.objects.values_list("pk", flat=True)
    response = admin_client.post("/admin/pool/event/", {"action": "export_csv", "_selected_action": list(selected)})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="tmpnb-events-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["kind"] for row in rows] == ["assignment", "resize"]
    assert rows[0]["container"] == container.name and rows[0]["visitor"] == session.visitor_tag
    assert rows[1]["actor"] == "ada" and rows[1]["details"] == '{"capacity": [2, 7], "ready_target": [null, null]}'
    assert rows[1]["time"] == Event.objects.get(kind="resize").time.isoformat()


@pytest.mark.django_db
def test_the_event_log_cannot_be_edited_or_deleted_in_the_admin(admin_client):
    pools.resize_pool(PoolFactory(), 3, by="ada")
    event = Event.objects.get()
    assert admin_client.post(f"/admin/pool/event/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Event.objects.count() == 1


def test_a_workshop_day_leaves_a_row_of_every_kind(clean_pools, client, settings, tmp_path, tmp_path_factory, monkeypatch):
    settings.TMPNB_SPAWN_TIMEOUT = 1
    settings.VAR_DIR = tmp_path
    pool = PoolFactory(capacity=2)
    spawn_all(PoolFactory(name="broken", capacity=1, image="tmpnb/not-here:0"))  # failure
    spawn_all(pool)  # spawn x2
    client.get("/")  # assignment
    new_visitor(client)
    client.get("/")  # assignment
    new_visitor(client)
    client.get("/")  # turned away
    first, second = Session.objects.order_by("pk")
    Session.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(days=1))
    upkeep.cull_sessions()  # cull
    ending.kill_sessions([second], by="ada")  # kill
    pools.resize_pool(pool, 3, by="ada")  # resize
    Schedule.objects.create(pool=pool, at=timezone.now(), capacity=4)
    schedules.apply_due_schedules()  # schedule
    (tmp_path / "workshop").mkdir()
    Pool.objects.filter(pk=pool.pk).update(materials_source=str(tmp_path / "workshop"))
    materials.prepare_materials(pool.pk)  # materials, and a drain of the ready containers
    pools.drain_pool(pool, by="ada")  # drain
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ada", "password": "guess"})  # lockout
    settings.TMPNB_DISK_LIMIT = 1024 * 1024
    full = PoolFactory(name="full", capacity=1)
    spawn_all(full)  # spawn
    filler = assignment.assign_container(pool=full, visitor="filler")  # assignment
    resume.record_resume(session=filler, visitor="filler")  # resume (from another device)
    handout = tmp_path_factory.mktemp("organiser") / "week2.md"
    handout.write_text("# Week 2\n")
    instead_of_sending(monkeypatch, worker.HAND_OUT_BROADCAST, broadcasts.hand_out)  # the worker's part, here
    broadcasts.broadcast_path(pool=full, path=str(handout), by="ada")  # broadcast
    collecting.collect_now(pool=full, by="ada")  # collection
    with contextlib.suppress(look.LookError):  # the tiny image has no notebook server to read: the look is logged all the same
        look.look(filler, "", by="ada")  # look
    Pool.objects.filter(pk=full.pk).update(live_help=True)  # after its spawn: the tiny image takes no JupyterLab option
    live.ask(Session.objects.get(pk=filler.pk), helper="ada")  # live
    with contextlib.closing(docker.from_env()) as engine:
        engine.containers.get(filler.container.backend_id).exec_run(["dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=2"])
    disk.check_disk()  # a disk limit's end (its work saved first)
    start = timezone.now() + timedelta(days=1)
    workshops.plan_workshop(Workshop(name="Intro", starts_at=start, ends_at=start + timedelta(hours=1)), headcounts={pool: 1}, by="ada")  # workshop
    kinds = list(Event.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == [
        # A held container's end saves its work (here: none, as the tiny image has no folder to save) before it is logged.
        "failure",
        "spawn",
        "spawn",
        "assignment",
        "assignment",
        "turned_away",
        "snapshot",
        "cull",
        "snapshot",
        "kill",
        "resize",
        "schedule",
        "materials",
        "drain",
        "drain",
        "lockout",
        "spawn",
        "assignment",
        "resume",
        "broadcast",
        "collection",
        "look",
        "live",
        "snapshot",
        "disk",
        "workshop",
    ]
    assert set(kinds) == set(Event.Kind.values)
