"""The waiting room's rules (rows only; the real flow is in tests/integration)."""

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pool.models import Container, Pool, QueueEntry, Session
from pool.services import assignment, pools, room, turns, waiting
from pool.visitors import VISITOR_COOKIE
from tests.factories import ContainerFactory, PoolFactory, SessionFactory, on_notebook_origin

pytestmark = pytest.mark.django_db


def admit(pool, visitor, **kwargs):
    return assignment.admit(pool=pool, visitor=visitor, **kwargs)


def position(visitor):
    return waiting.admission_status(visitor).get("position")


def test_visitors_wait_in_arrival_order_and_a_reload_keeps_the_place():
    pool = PoolFactory(capacity=5)
    for name in ("ann", "bob", "cy"):
        assert admit(pool, name).session is None
    assert [position(v) for v in ("ann", "bob", "cy")] == [1, 2, 3]
    admit(pool, "ann")  # a reload
    assert [position(v) for v in ("ann", "bob", "cy")] == [1, 2, 3]
    assert QueueEntry.objects.waiting().count() == 3


def test_a_ready_container_goes_to_the_head_of_the_queue_not_to_a_newcomer():
    pool = PoolFactory(capacity=5)
    admit(pool, "first")
    admit(pool, "second")
    ContainerFactory(pool=pool)
    late = admit(pool, "late")
    assert late.session is None and position("late") == 2
    assert Session.objects.get().visitor == "first"
    assert waiting.admission_status("first")["status"] == "ready"
    assert position("second") == 1


def test_ready_containers_are_served_in_order_each_to_one_visitor():
    pool = PoolFactory(capacity=5)
    for name in ("a", "b", "c"):
        admit(pool, name)
    ContainerFactory.create_batch(2, pool=pool)
    assert assignment.serve_queue(pool.pk) == 2
    sessions = Session.objects.order_by("container__ready_at", "container__pk")
    assert [s.visitor for s in sessions] == ["a", "b"]
    assert len({s.container_id for s in sessions}) == 2
    assert all(s.waited is not None for s in sessions)
    assert position("c") == 1


@pytest.mark.parametrize(("capacity", "refills"), [(2, 0), (3, 1)])
def test_serving_the_queue_asks_for_one_refill_and_none_at_capacity(capacity, refills, monkeypatch, django_capture_on_commit_callbacks):
    asked = []
    monkeypatch.setattr(assignment, "request_refill", asked.append)
    pool = PoolFactory(capacity=capacity, ready_target=0)
    for name in ("a", "b"):
        admit(pool, name)
    asked.clear()
    ContainerFactory.create_batch(2, pool=pool)
    with django_capture_on_commit_callbacks(execute=True):
        assert assignment.serve_queue(pool.pk) == 2
    # The worker serves the queue after each spawn: at capacity, the claims
    # leave nothing to refill, and below it one fill counts them all.
    assert asked == [pool.pk] * refills


def test_waiting_visitors_make_the_pool_spawn_for_them_up_to_its_capacity():
    pool = PoolFactory(capacity=4, ready_target=1)
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED))
    for name in ("a", "b", "c", "d"):
        admit(pool, name)
    # Four waiting and a ready target of one: everything the capacity allows.
    assert len(pools.fill_pool(pool.pk)) == 3


def test_a_visitor_who_closed_the_page_leaves_the_queue():
    pool = PoolFactory(capacity=2)
    admit(pool, "gone")
    admit(pool, "stays")
    QueueEntry.objects.filter(visitor="gone").update(last_seen=timezone.now() - timedelta(minutes=5))
    assert waiting.drop_abandoned_places() == 1
    assert position("stays") == 1
    assert waiting.admission_status("gone") == {"status": "unknown"}


def test_a_waiting_page_checks_in_once_per_sixth_of_the_queue_timeout(settings):
    settings.TMPNB_QUEUE_TIMEOUT = 30
    admit(PoolFactory(capacity=0), "asks")
    lately = timezone.now() - timedelta(seconds=4)
    QueueEntry.objects.filter(visitor="asks").update(last_seen=lately)
    assert position("asks") == 1
    assert QueueEntry.objects.get(visitor="asks").last_seen == lately  # not written again yet
    QueueEntry.objects.filter(visitor="asks").update(last_seen=lately - timedelta(seconds=2))
    assert position("asks") == 1
    assert QueueEntry.objects.get(visitor="asks").last_seen > lately  # kept
    assert waiting.drop_abandoned_places() == 0


def test_the_estimate_is_a_spawn_while_places_are_free():
    pool = PoolFactory(capacity=3)
    ContainerFactory(pool=pool, created_at=timezone.now() - timedelta(seconds=8), ready_at=timezone.now() - timedelta(seconds=2))
    estimate = waiting.estimate_wait(pool, 2)
    assert estimate.phase == "starting" and estimate.seconds == pytest.approx(6, abs=0.5)


def test_the_estimate_follows_the_rate_at_which_places_freed_up():
    pool = PoolFactory(capacity=2)
    for _ in range(2):
        SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED))
    now = timezone.now()
    for minutes_ago in (1, 4, 7):  # three places freed in the last 15 minutes: one per 300 s
        ended = now - timedelta(minutes=minutes_ago)
        SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.GONE), started_at=ended - timedelta(minutes=10), ended_at=ended)
    estimate = waiting.estimate_wait(pool, 2, now=now)
    assert estimate.phase == "waiting"
    # Two places needed ahead of a spawn (these rows took no time to start).
    assert estimate.seconds == pytest.approx(2 * 300, abs=1)


def test_a_pool_that_opened_lately_counts_the_rate_since_its_first_session():
    pool = PoolFactory(capacity=1)
    now = timezone.now()
    opened = now - timedelta(minutes=5)
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.GONE), started_at=opened, ended_at=now - timedelta(minutes=1))
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED), started_at=now - timedelta(minutes=1))
    # One place freed in the 300 s since it opened (not in 15 minutes): one needed ahead of a spawn.
    assert waiting.estimate_wait(pool, 1, now=now).seconds == pytest.approx(300, abs=1)


def test_visitors_who_joined_at_the_same_moment_stand_in_the_order_they_were_written():
    pool = PoolFactory(capacity=1)
    now = timezone.now()
    for name in ("ann", "bob", "cy"):
        QueueEntry.objects.create(pool=pool, visitor=name, joined_at=now)
    assert [position(v) for v in ("ann", "bob", "cy")] == [1, 2, 3]


def test_with_no_place_freed_lately_the_estimate_is_the_next_cull():
    pool = PoolFactory(capacity=2, cull_timeout=600, cull_max=3600)
    now = timezone.now()
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED), last_activity=now - timedelta(seconds=500))
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED), started_at=now - timedelta(seconds=3500))
    # The first place frees when the idle one reaches its idle timeout (100 s),
    # the second when the old one reaches cull_max (100 s too, at the latest).
    assert waiting.estimate_wait(pool, 1, now=now).seconds == pytest.approx(100, abs=1)
    assert waiting.estimate_wait(pool, 2, now=now).seconds == pytest.approx(100, abs=1)
    # Nobody can say when a third place frees: neither culls nor a history tell.
    assert waiting.estimate_wait(pool, 3, now=now) == waiting.Estimate(None, "waiting")


def test_the_status_endpoint_tells_the_page_where_it_stands(client):
    pool = PoolFactory(capacity=3)
    client.get("/spawn/notebooks/intro.ipynb")
    status = client.get("/waiting/status").json()
    assert status["status"] == "waiting" and status["position"] == 1 and status["phase"] == "starting"
    container = ContainerFactory(pool=pool)
    assignment.serve_queue(pool.pk)
    ready = client.get("/waiting/status").json()
    assert ready == {"status": "ready", "url": on_notebook_origin(container.url_for("notebooks/intro.ipynb"))}
    assert client.get("/").status_code == 302


def test_an_unknown_visitor_has_no_status(client):
    assert client.get("/waiting/status").json() == {"status": "unknown"}
    client.cookies[VISITOR_COOKIE] = "forged"
    assert client.get("/waiting/status").json() == {"status": "unknown"}


def test_api_clients_may_wait_in_the_queue(client, settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    pool = PoolFactory(capacity=3)
    auth = {"Authorization": "token api-secret"}
    response = client.post("/api/spawn", data={"wait": True}, content_type="application/json", headers=auth)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "waiting" and body["position"] == 1
    assert client.get(body["status_url"]).status_code == 403  # the token is needed to poll too
    assert client.get(body["status_url"], headers=auth).json()["status"] == "waiting"
    container = ContainerFactory(pool=pool)
    assignment.serve_queue(pool.pk)
    assert client.get(body["status_url"], headers=auth).json() == {"status": "ready", "url": on_notebook_origin(container.url_for("/tree"))}


def test_api_clients_that_do_not_wait_get_a_retry_after_from_the_estimate(client, settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    pool = PoolFactory(capacity=2)
    ContainerFactory(pool=pool, state=Container.State.SPAWNING, ready_at=None)
    ContainerFactory(pool=pool, created_at=timezone.now() - timedelta(seconds=12), ready_at=timezone.now(), state=Container.State.ASSIGNED)
    response = client.post("/api/spawn", headers={"Authorization": "token api-secret"})
    assert response.status_code == 429
    assert response["Retry-After"] == "12"
    assert not QueueEntry.objects.exists()


def test_without_redis_a_status_request_does_not_wait_and_says_to_ask_again_soon(settings, monkeypatch):
    # A closed port, even once an integration test has started the session's Redis
    # (which may still hold a note for an earlier "ann").
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    monkeypatch.setattr(turns, "_clients", {})
    pool = PoolFactory(capacity=1)
    admit(pool, "ann")
    status = waiting.await_admission("ann")
    assert status["status"] == "waiting" and status["poll_seconds"] == waiting.POLL_SECONDS


def test_a_long_poll_works_out_the_place_when_it_answers_not_before_it_waits(monkeypatch):
    """Before the wait it only reads whether the visitor is served and keeps
    their place; the position it answers with is the one after the wait."""
    pool = PoolFactory(capacity=1)
    admit(pool, "ahead")
    admit(pool, "ann")
    queries_before_the_wait = []

    def wait_for_turn(visitor, *, seconds):
        queries_before_the_wait.extend(query["sql"] for query in queries.captured_queries)
        QueueEntry.objects.filter(visitor="ahead").update(left_at=timezone.now())  # gave up meanwhile
        return True  # the wait ran its time

    monkeypatch.setattr(waiting, "wait_for_turn", wait_for_turn)
    with CaptureQueriesContext(connection) as queries:
        status = waiting.await_admission("ann")
    assert status["status"] == "waiting" and status["position"] == 1 and status["poll_seconds"] == 0
    # Whether they hold a session, their place, and its pool (read at most once a second).
    assert len(queries_before_the_wait) == 3, queries_before_the_wait


def test_the_pool_of_a_place_is_read_once_a_second_and_a_change_saved_here_at_once(django_assert_num_queries, monkeypatch):
    pool = PoolFactory(capacity=1)
    admit(pool, "ann")
    assert waiting.waiting_entry("ann").pool == pool
    with django_assert_num_queries(1):  # the place; its pool as read just now
        assert waiting.waiting_entry("ann").pool.capacity == 1
    pool.capacity = 3
    pool.save()  # in this process: seen at once
    assert waiting.waiting_entry("ann").pool.capacity == 3
    Pool.objects.filter(pk=pool.pk).update(capacity=5)  # as another process saves it: no signal here
    assert waiting.waiting_entry("ann").pool.capacity == 3
    a_second_later = time.monotonic() + pools.POOL_LOOKUP_SECONDS
    monkeypatch.setattr(pools, "time", SimpleNamespace(monotonic=lambda: a_second_later))
    assert waiting.waiting_entry("ann").pool.capacity == 5


def test_waiting_visitors_share_their_pool_s_outlook_for_a_second_and_each_keeps_their_place(monkeypatch):
    pool = PoolFactory(capacity=1, cull_timeout=600, cull_max=3600)
    SessionFactory(container=ContainerFactory(pool=pool, state=Container.State.ASSIGNED), last_activity=timezone.now() - timedelta(seconds=500))
    for name in ("ann", "bob", "cy"):
        admit(pool, name)
    expected = [waiting.estimate_wait(pool, place) for place in (1, 2, 3)]  # each read afresh
    now = time.monotonic()  # the process's clock, stopped: a slow run stays within the second
    monkeypatch.setattr(pools, "time", SimpleNamespace(monotonic=lambda: now))
    read, reads = waiting.pool_outlook, []
    monkeypatch.setattr(waiting, "pool_outlook", lambda pool: reads.append(pool.pk) or read(pool))
    statuses = [waiting.admission_status(name) for name in ("ann", "bob", "cy")]
    assert reads == [pool.pk]  # one read for the three of them
    assert [status["position"] for status in statuses] == [1, 2, 3]
    for status, estimate in zip(statuses, expected, strict=True):
        assert status["phase"] == estimate.phase
        assert status["estimate_seconds"] == (None if estimate.seconds is None else pytest.approx(estimate.seconds, abs=2))
    assert expected[0].seconds is not None and expected[1].seconds is None  # the idle session's cull frees one place
    ContainerFactory(pool=pool)  # ready for ann, as another process saves it: told within the second
    assert waiting.admission_status("ann")["phase"] == "waiting"
    now += pools.POOL_LOOKUP_SECONDS
    assert waiting.admission_status("ann")["phase"] == "starting"
    assert reads == [pool.pk] * 2
    pool.save()  # changed in this process: told at once
    waiting.admission_status("ann")
    assert reads == [pool.pk] * 3


def test_a_served_visitor_is_told_at_once_without_waiting():
    pool = PoolFactory(capacity=1)
    admit(pool, "ann")
    ContainerFactory(pool=pool)
    assignment.serve_queue(pool.pk)
    assert waiting.await_admission("ann")["status"] == "ready"


def test_a_visitor_waiting_for_one_pool_who_opens_another_moves_their_place_there():
    """The last pool asked for is the one they want (the waiting page does not
    name the pool: waiting on for the first would land them somewhere they
    no longer asked for). The first pool's queue no longer counts them."""
    python, julia = PoolFactory(name="python", capacity=2), PoolFactory(name="julia", capacity=2)
    admit(python, "earlier")
    admit(python, "visitor")
    admit(julia, "ahead")
    admission = admit(julia, "visitor")
    assert admission.session is None and admission.entry.pool == julia
    assert list(QueueEntry.objects.waiting().filter(visitor="visitor").values_list("pool__name", flat=True)) == ["julia"]
    assert list(python.queue.waiting().values_list("visitor", flat=True)) == ["earlier"]
    assert position("visitor") == 2  # behind those already waiting there


def test_a_visitor_waiting_for_one_pool_gets_a_ready_container_of_the_other_at_once():
    python, julia = PoolFactory(name="python", capacity=2), PoolFactory(name="julia", capacity=2)
    admit(python, "visitor")
    ready = ContainerFactory(pool=julia)
    assert admit(julia, "visitor").session.container == ready
    assert not QueueEntry.objects.waiting().exists()


def test_a_waiting_visitor_types_a_name_and_their_session_takes_it(client):
    pool = PoolFactory(capacity=3)
    page = client.get("/")
    assert 'action="/waiting/name"' in page.content.decode() and 'name="csrfmiddlewaretoken"' in page.content.decode()
    response = client.post("/waiting/name", {"name": "  Ada\u202e  Lovelace\n"})
    assert response.status_code == 302 and response["Location"] == pool.landing_path
    assert QueueEntry.objects.waiting().get().display_name == "Ada Lovelace"  # one plain line, reordering controls out
    assert 'value="Ada Lovelace"' in client.get("/").content.decode()  # the page shows what is kept
    ContainerFactory(pool=pool)
    assignment.serve_queue(pool.pk)
    assert Session.objects.get().display_name == "Ada Lovelace"


def test_a_name_typed_just_after_the_turn_came_goes_to_the_session():
    pool = PoolFactory(capacity=3)
    admit(pool, "ann")
    ContainerFactory(pool=pool)
    assignment.serve_queue(pool.pk)
    assert room.name_waiting_visitor("ann", "Ann") == pool
    assert Session.objects.get().display_name == "Ann"


def test_a_name_is_optional_and_bad_input_changes_nothing(client):
    pool = PoolFactory(capacity=3)
    client.get("/")
    client.post("/waiting/name", {"name": "Bo"})
    too_long = client.post("/waiting/name", {"name": "x" * (room.NAME_MAX + 1)})
    assert too_long.status_code == 400 and "at most 60" in too_long.content.decode()
    assert 'aria-invalid="true"' in too_long.content.decode()
    assert QueueEntry.objects.waiting().get().display_name == "Bo"
    assert client.get("/waiting/name").status_code == 405
    assert client.post("/waiting/name", {"name": ""}).status_code == 302  # clearing it is fine
    assert QueueEntry.objects.waiting().get(pool=pool).display_name == ""


def test_a_visitor_who_neither_waits_nor_holds_a_notebook_names_nobody(client):
    PoolFactory(capacity=3)
    response = client.post("/waiting/name", {"name": "Cy"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not QueueEntry.objects.exists() and not Session.objects.exists()
    assert room.name_waiting_visitor("nobody", "Cy") is None
