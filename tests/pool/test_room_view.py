"""The room view (pool/services/room.py): its rows, the one pass over the
notebook servers (fake servers here, some hostile), and the admin's pages;
tests/integration/test_room_view.py shows it on the real stack."""

import threading
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from pool.models import Session
from pool.services import room
from tests.factories import PoolFactory, SessionFactory, from_the_banner

pytestmark = pytest.mark.django_db

KERNELS = [{"id": "k1", "name": "python3", "execution_state": "idle"}, {"id": "k2", "name": "python3", "execution_state": "busy"}]
SESSIONS = [
    {"id": "s1", "path": "a.ipynb", "type": "notebook", "kernel": KERNELS[0]},
    {"id": "s2", "path": "b.ipynb", "type": "notebook", "kernel": KERNELS[1]},
    {"id": "s3", "path": "console-1", "type": "console", "kernel": KERNELS[1]},
]


@pytest.fixture
def pool():
    return PoolFactory(capacity=10, cull_timeout=600, cull_max=3600)


def test_each_participant_has_a_row_with_their_kernels_notebooks_and_time_left(pool, servers):
    now = timezone.now()
    session = servers.holding(
        pool, kernels=KERNELS, sessions=SESSIONS, started_at=now - timedelta(minutes=55), last_activity=now - timedelta(minutes=1), display_name="Ada"
    )
    session.container.disk_at_landing, session.container.disk_used = 1_000, 13_345
    session.container.save()
    idle = servers.holding(pool, kernels=[KERNELS[0]], sessions=SESSIONS[:1], started_at=now - timedelta(minutes=5), last_activity=now - timedelta(minutes=4))
    bare = servers.holding(pool, started_at=now - timedelta(minutes=3), last_activity=now - timedelta(minutes=3))
    SessionFactory(container__pool=PoolFactory(name="other"))  # another pool's room

    rows = room.room(pool, now=now)

    assert [row.label for row in rows] == [session.visitor_tag, idle.visitor_tag, bare.visitor_tag]
    first = rows[0]
    assert (first.name, first.kernel, first.notebooks, first.work_bytes) == ("Ada", room.BUSY, 2, 12_345)
    assert first.seconds_left == 300  # the age cull (55 of 60 minutes) comes before the idle one (9 minutes)
    assert (first.landed_at, first.last_activity) == (session.started_at, session.last_activity)
    assert (rows[1].kernel, rows[1].notebooks, rows[1].seconds_left) == (room.IDLE, 1, 360)  # idle for 4 of 10 minutes
    assert (rows[2].kernel, rows[2].notebooks, rows[2].work_bytes) == (room.NO_KERNEL, 0, None)


def test_raised_hands_come_first_longest_raised_first(pool, servers):
    now = timezone.now()
    quiet = servers.holding(pool, started_at=now - timedelta(minutes=9))
    late = servers.holding(pool, started_at=now - timedelta(minutes=8))
    early = servers.holding(pool, started_at=now - timedelta(minutes=7))
    room.raise_hand(early, "stuck on cell 3")
    Session.objects.filter(pk=early.pk).update(hand_raised_at=now - timedelta(minutes=2))
    room.raise_hand(late)
    rows = room.room(pool, now=now)
    assert [row.label for row in rows] == [early.visitor_tag, late.visitor_tag, quiet.visitor_tag]
    assert (rows[0].hand_text, rows[1].hand_text) == ("stuck on cell 3", "")


def test_a_server_that_does_not_answer_in_time_shows_unknown_and_holds_up_nobody(pool, servers, monkeypatch):
    monkeypatch.setattr(room, "PASS_SECONDS", 1.0)
    answering = servers.holding(pool, kernels=KERNELS, sessions=SESSIONS)
    stalled = servers.holding(pool, kernels=5, sessions=[])
    closed = SessionFactory(container__pool=pool, container__host_port=9)  # nothing listens there
    started = time.monotonic()
    rows = {row.label: row for row in room.room(pool)}
    assert time.monotonic() - started < 2.5
    assert rows[answering.visitor_tag].kernel == room.BUSY
    for session in (stalled, closed):
        assert (rows[session.visitor_tag].kernel, rows[session.visitor_tag].notebooks) == (room.UNKNOWN, None)


@pytest.mark.parametrize(
    "kernels, sessions",
    [
        (b"[" + b'{"execution_state": "busy"},' * 20_000 + b"{}]", []),  # over the size read
        ({"execution_state": "busy"}, []),  # not a list
        (b"<script>alert(1)</script>", []),  # not JSON
        ([], "<b>many</b>"),
        (b"[" * 100_000 + b"]" * 100_000, []),  # nested past Python's recursion limit, within the size read
    ],
    ids=["too-big", "not-a-list", "not-json", "sessions-not-a-list", "too-deep"],
)
def test_a_hostile_server_shows_unknown(pool, servers, kernels, sessions):
    session = servers.holding(pool, kernels=kernels, sessions=sessions)
    [row] = room.room(pool)
    assert (row.kernel, row.notebooks) == (room.UNKNOWN, None)
    assert session.visitor_tag == row.label


def test_only_the_rooms_own_words_and_counts_come_out_of_a_servers_answer(pool, servers):
    kernels = [{"execution_state": "<img src=x onerror=alert(1)>"}, "busy", 7, None, {"execution_state": ["busy"]}, {"execution_state": {"a": 1}}]
    sessions = [{"type": "notebook"}, {"type": "<script>"}, "notebook", {"type": ["notebook"]}]
    servers.holding(pool, kernels=kernels, sessions=sessions)
    [row] = room.room(pool)
    assert (row.kernel, row.notebooks) == (room.UNKNOWN, 1)
    assert room.kernel_summary([{"execution_state": "restarting"}, {"execution_state": "idle"}]) == room.STARTING


def test_several_organisers_within_a_couple_of_seconds_share_one_pass(pool, servers, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "room-test"}}
    servers.holding(pool, kernels=KERNELS, sessions=SESSIONS)
    servers.holding(pool, kernels=KERNELS, sessions=SESSIONS)
    room.room(pool)
    assert servers.requests == 4  # one pass: two questions to each server
    room.room(pool)
    room.room(pool)
    assert servers.requests == 4
    servers.holding(pool)  # a newcomer the last pass did not see
    room.room(pool)
    assert servers.requests == 10


def test_organisers_asking_at_once_wait_for_one_pass(pool, servers, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "room-test-at-once"}}
    containers = [servers.holding(pool, kernels=0.5, sessions=SESSIONS).container]  # a pass takes half a second
    containers.append(servers.holding(pool, kernels=KERNELS, sessions=SESSIONS).container)
    found = []
    pages = [threading.Thread(target=lambda: found.append(room.server_states(pool, containers))) for _ in range(4)]
    for page in pages:
        page.start()
    for page in pages:
        page.join()
    assert servers.requests == 4  # one pass: two questions to each server
    assert [sorted(state.notebooks for state in states.values()) for states in found] == [[2, 2]] * 4


def test_only_the_notebooks_token_finds_its_session(pool):
    session = SessionFactory(container__pool=pool)
    path_id, token = session.container.path_id, session.container.token
    assert room.held_session(path_id=path_id, token=token) == session
    assert room.held_session(path_id=path_id, token="guessed") is None
    assert room.held_session(path_id=path_id, token="") is None
    Session.objects.filter(pk=session.pk).end("killed")
    assert room.held_session(path_id=path_id, token=token) is None


def test_typed_text_is_kept_as_one_plain_line_within_its_cap(pool):
    session = SessionFactory(container__pool=pool)
    room.raise_hand(session, "  line one\nline\ttwo \u202eevil\x00 ")
    assert session.hand_text == "line one line two evil"
    with pytest.raises(room.InvalidText, match="at most 300"):
        room.raise_hand(session, "x" * 301)
    with pytest.raises(room.InvalidText, match="must be text"):
        room.set_display_name(session, ["Ada"])
    room.set_display_name(session, " Ada  Lovelace ")
    session.refresh_from_db()
    assert (session.display_name, session.hand_text) == ("Ada Lovelace", "line one line two evil")
    room.lower_hand(session)
    session.refresh_from_db()
    assert (session.hand_raised_at, session.hand_text) == (None, "")


def test_the_room_page_and_its_rows_are_for_staff_only(pool, servers, admin_client, client):
    session = servers.holding(pool, kernels=KERNELS, sessions=SESSIONS, display_name="<b>Ada</b>")
    room.raise_hand(session, "<script>alert(1)</script>")
    page = admin_client.get(f"/admin/room/{pool.pk}/")
    assert page.status_code == 200 and f'data-url="/admin/room/{pool.pk}/rows"' in page.content.decode()
    assert admin_client.get("/admin/room/").status_code == 200  # the default pool's
    rows = admin_client.get(f"/admin/room/{pool.pk}/rows").json()["participants"]
    assert [(row["label"], row["name"], row["hand_text"], row["kernel"]) for row in rows] == [
        (session.visitor_tag, "<b>Ada</b>", "<script>alert(1)</script>", room.BUSY)
    ]
    assert "<script>alert" not in page.content.decode()
    for url in (f"/admin/room/{pool.pk}/", f"/admin/room/{pool.pk}/rows"):
        assert client.get(url).status_code == 302  # to the login page
    assert admin_client.get("/admin/room/999999/rows").status_code == 404


def test_an_organiser_lowers_a_hand(pool, admin_client):
    session = SessionFactory(container__pool=pool)
    room.raise_hand(session, "help")
    answer = admin_client.post(f"/admin/room/{pool.pk}/lower/", {"session": session.pk})
    assert answer.status_code == 302 and answer["Location"] == f"/admin/room/{pool.pk}/"
    session.refresh_from_db()
    assert session.hand_raised_at is None
    assert admin_client.post(f"/admin/room/{pool.pk}/lower/", {"session": "nonsense"}).status_code == 302
    assert Client().post(f"/admin/room/{pool.pk}/lower/", {"session": session.pk}).status_code == 302  # to the login page


def test_a_participant_raises_and_lowers_a_hand_and_gives_a_name_from_the_banner(pool, settings):
    session = SessionFactory(container__pool=pool)
    answer = from_the_banner("POST", session, "hand", {"text": "<b>cell 3</b> fails"}, settings=settings)
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    assert answer.json() == {"hand": {"raised": True, "text": "<b>cell 3</b> fails"}, "name": "", "live": None}
    assert from_the_banner("POST", session, "name", {"name": "Ada"}, settings=settings).json()["name"] == "Ada"
    [row] = room.room(pool)
    assert (row.name, row.hand_text) == ("Ada", "<b>cell 3</b> fails")
    assert from_the_banner("DELETE", session, "hand", settings=settings).json()["hand"] == {"raised": False, "text": ""}
    assert room.room(pool)[0].hand_raised_at is None


def test_nobody_but_the_notebooks_page_raises_its_hand(pool, settings, client):
    session = SessionFactory(container__pool=pool)
    assert from_the_banner("POST", session, "hand", {}, token="guessed", settings=settings).status_code == 404
    other = SessionFactory(container__pool=pool)
    assert from_the_banner("POST", session, "hand", {}, token=other.container.token, settings=settings).status_code == 404
    url = f"/api/notebooks/{session.container.path_id}/hand"
    # The participants' pages' origin: not even with the token.
    assert client.post(url, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"token {session.container.token}").status_code == 404
    assert from_the_banner("GET", session, "hand", settings=settings).status_code == 405
    session.refresh_from_db()
    assert session.hand_raised_at is None


@pytest.mark.parametrize(
    "what, body, error",
    [
        ("hand", {"text": "x" * 301}, "at most 300"),
        ("hand", {"text": 3}, "must be text"),
        ("hand", ["text"], "JSON object"),
        ("name", {"name": "n" * 61}, "at most 60"),
    ],
)
def test_bad_input_from_the_banner_gets_a_clear_error_and_changes_nothing(pool, settings, what, body, error):
    session = SessionFactory(container__pool=pool)
    answer = from_the_banner("POST", session, what, body, settings=settings)
    assert answer.status_code == 400 and error in answer.json()["error"]
    session.refresh_from_db()
    assert (session.hand_raised_at, session.display_name) == (None, "")


def test_a_body_nested_past_reading_is_refused_as_bad_input(pool, settings):
    session = SessionFactory(container__pool=pool)
    answer = Client().post(
        f"/api/notebooks/{session.container.path_id}/hand",
        "[" * 100_000,
        content_type="application/json",
        HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}",
        HTTP_AUTHORIZATION=f"token {session.container.token}",
    )
    assert answer.status_code == 400


def test_a_hand_raised_too_often_is_refused_for_a_while(pool, settings):
    settings.CACHES = {"default": {"BACKEND": "tests.fakes.CountingCache", "LOCATION": "hand-rate"}}
    settings.TMPNB_HAND_RATE = "3/m"
    session = SessionFactory(container__pool=pool)
    answers = [from_the_banner("POST", session, "hand", {"text": "help"}, settings=settings).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = from_the_banner("DELETE", session, "hand", settings=settings, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert refused.json()["error"] != "Too many requests; wait a minute and try again."  # in the participant's language


def test_the_banners_question_tells_its_holder_the_hand_the_name_and_the_words(client, fake_backend, fake_proxy, settings):
    from pool.services import pools, spawning

    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    session = Session.objects.select_related("container").get()
    room.raise_hand(session, "help")
    answer = from_the_banner("GET", session, "time-left", settings=settings, HTTP_ACCEPT_LANGUAGE="de").json()
    assert answer["hand"] == {"raised": True, "text": "help"} and answer["name"] == ""
    assert answer["words"]["raise"] == "Hand heben" and answer["words"]["hand_max"] == "300"
    # The holder's visitor cookie on the participants' pages: no hand there.
    assert "hand" not in client.get(f"/api/notebooks/{session.container.path_id}/time-left").json()


def test_an_organiser_finds_a_session_by_the_name_its_participant_typed(pool, admin_client):
    ada, other = SessionFactory(container__pool=pool), SessionFactory(container__pool=pool)
    room.set_display_name(ada, "Ada Lovelace")
    page = admin_client.get("/admin/pool/session/", {"q": "lovelace"}).content.decode()
    assert ada.container.name in page and other.container.name not in page
