"""Resume codes: made and shown to the holder only, typed on another device
to reach the same notebook or, once it has ended, its saved work in a new
one; with Docker and the proxy faked at their boundary
(tests/integration/test_resume.py does it on the real stack)."""

import io
import logging
import re
import tarfile
import threading
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.utils import timezone, translation

from pool.models import Event, Session, Snapshot
from pool.services import ending, pools, resume, spawning
from proxyapi.client import Route
from tests.factories import PoolFactory, new_visitor, on_notebook_origin, unused_address
from tests.pool.test_snapshots import restores_queued  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def resume_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.TMPNB_SNAPSHOT_HOURS = 48
    settings.CACHES = {"default": {"BACKEND": "tests.fakes.CountingCache"}}
    settings.TMPNB_RESUME_RATE = "10/m"
    caches["default"].clear()  # the counts of tests before


@pytest.fixture
def pool(fake_backend, fake_proxy):
    """A pool with two notebooks started: the holder's, and a spare for a new one."""
    pool = PoolFactory(capacity=2, redirect_uri="/lab", cull_timeout=600)
    for row in pools.fill_pool(pool.pk):
        spawning.spawn_container(row.pk)
    return pool


@pytest.fixture
def holder(client, pool, fake_backend):
    """``client`` holds a notebook with a file in it; returns its session."""
    assert client.get("/").status_code == 302
    session = Session.objects.select_related("container__pool").get()
    fake_backend.files[session.container.name] = {"notes.txt": b"my work\n"}
    return session


@pytest.fixture
def other_device():
    """A second browser: its own cookie jar, with a visitor cookie of its own."""
    return new_visitor(Client())


def shown_code(client):
    page = client.get("/resume/").content.decode()
    return re.search(r'id="resume-code">([^<]+)<', page).group(1)


def notebook_landing(session):
    return on_notebook_origin(session.container.url_for(session.container.pool.redirect_uri))


# --- the code -----------------------------------------------------------------


def test_a_code_is_an_adjective_two_nouns_and_four_digits_from_the_lists():
    adjectives, nouns = resume.word_lists()
    for _ in range(50):
        adjective, first, second, number = resume.new_code().split("-")
        assert adjective in adjectives and first in nouns and second in nouns
        assert re.fullmatch(r"\d{4}", number)


def test_a_code_carries_over_39_bits_that_the_docs_state():
    assert resume.entropy_bits() == pytest.approx(39.29, abs=0.01)
    assert "39.3 bits" in open("README.md").read()


# Words that sound like another, or read as an insult, in some combination.
UNWANTED = {
    "bear",
    "bare",
    "deer",
    "hare",
    "hair",
    "sea",
    "see",
    "sun",
    "son",
    "pear",
    "pair",
    "tail",
    "tale",
    "whale",
    "tide",
    "crab",
    "frog",
    "spade",
    "cracker",
    "coconut",
    "ass",
}


def test_the_word_lists_are_plain_short_distinct_and_clean():
    adjectives, nouns = resume.word_lists()
    assert (len(adjectives), len(nouns)) == (256, 512)
    for words in (adjectives, nouns):
        assert len(set(words)) == len(words)
        assert all(re.fullmatch(r"[a-z]{3,9}", word) for word in words)
    assert not set(adjectives) & set(nouns)
    assert not (set(adjectives) | set(nouns)) & UNWANTED


@pytest.mark.parametrize(
    "typed",
    ["Blue-Otter-Lantern-4271", " blue otter lantern 4271 ", "BLUE  OTTER - LANTERN 4271", "blue-otter-lantern4271", "blue_otter.lantern-4271"],
)
def test_a_typed_code_is_read_loosely(typed):
    assert resume.normalized(typed) == "blue-otter-lantern-4271"


@pytest.mark.parametrize("typed", ["", "blue-otter-4271", "blue-otter-lantern-427", "blue-otter-lantern-owl-4271", "blüe-otter-lantern-4271x", "a" * 101])
def test_what_cannot_be_a_code_is_refused_before_any_lookup(typed):
    assert resume.normalized(typed) is None


def test_a_code_is_made_once_and_kept(holder):
    code = resume.code_for(holder)
    assert resume.code_for(Session.objects.get(pk=holder.pk)) == code
    assert resume.find(code.upper()).pk == holder.pk


def test_two_requests_at_once_show_one_code(holder):
    stale = Session.objects.get(pk=holder.pk)  # read before the other request made its code
    first = resume.code_for(holder)
    assert resume.code_for(stale) == first
    assert Session.objects.get(pk=holder.pk).resume_code == first


@pytest.mark.postgres
def test_concurrent_first_views_agree_on_one_code(holder):
    codes, start = [], threading.Barrier(8)

    def view():
        start.wait()
        codes.append(resume.code_for(Session.objects.get(pk=holder.pk)))
        connection.close()

    threads = [threading.Thread(target=view) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(codes)) == 1


def test_a_code_another_session_has_is_drawn_again(holder, pool, monkeypatch):
    other = Session.objects.create(visitor="bea", container=pool.containers.exclude(pk=holder.container_id).get())
    taken = resume.code_for(other)
    draws = iter([taken, "calm-otter-lantern-0001"])
    monkeypatch.setattr(resume, "new_code", lambda: next(draws))
    assert resume.code_for(holder) == "calm-otter-lantern-0001"


def test_a_code_stops_working_after_its_hours_and_a_new_one_is_shown(holder, settings):
    code = resume.code_for(holder)
    later = timezone.now() + timedelta(hours=settings.TMPNB_RESUME_HOURS, minutes=1)
    assert resume.find(code, now=later) is None
    assert resume.code_for(holder, now=later) != code


# --- where it is shown ----------------------------------------------------------


def test_the_holder_reads_their_code_on_the_resume_page(client, holder):
    code = shown_code(client)
    assert resume.normalized(code) == code
    assert shown_code(client) == code
    assert client.get("/resume/", headers=JSON).json()["code"] == code


def test_a_browser_holding_nothing_gets_the_form_and_no_code(other_device, holder):
    page = other_device.get("/resume/").content.decode()
    assert 'id="resume-code"' not in page and 'name="code"' in page
    assert Session.objects.get(pk=holder.pk).resume_code is None  # nobody asked for it yet


def test_the_resume_page_gives_a_new_browser_its_visitor_cookie(pool):
    response = Client().get("/resume/")
    assert response.status_code == 200 and response.cookies["tmpnb_visitor"]["httponly"]


def time_left_on_its_origin(client, session, settings):
    url = f"/api/notebooks/{session.container.path_id}/time-left"
    return client.get(url, HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}", HTTP_AUTHORIZATION=f"token {session.container.token}").json()


def idle_for(session, fake_proxy, minutes):
    Session.objects.filter(pk=session.pk).update(last_activity=timezone.now() - timedelta(hours=1))
    route = fake_proxy.routes[session.container.route_path]
    fake_proxy.routes[route.path] = Route(path=route.path, target=route.target, last_activity=timezone.now() - timedelta(minutes=minutes), data=route.data)


def test_the_cull_banner_gives_the_code_and_where_to_type_it(holder, fake_proxy, settings):
    idle_for(holder, fake_proxy, 8)
    answer = time_left_on_its_origin(Client(), holder, settings)
    code = Session.objects.get(pk=holder.pk).resume_code
    assert answer["warn"] is True
    assert answer["message"].endswith(
        f"To carry on from another device, open http://testserver:{settings.TMPNB_PUBLIC_PORT}/resume/ there and type your resume code {code}."
    )


def test_no_code_is_made_or_given_while_the_banner_is_hidden_nor_on_the_services_origin(client, holder, fake_proxy, settings):
    answer = time_left_on_its_origin(Client(), holder, settings)
    assert answer["warn"] is False and "resume" not in answer["message"]
    assert Session.objects.get(pk=holder.pk).resume_code is None
    idle_for(holder, fake_proxy, 8)
    # The holder's visitor cookie on the participants' pages: the JSON answer, without the code.
    answer = client.get(f"/api/notebooks/{holder.container.path_id}/time-left").json()
    assert answer["warn"] is True and "resume code" not in answer["message"]


@pytest.fixture
def ended(holder):
    """The holder's notebook, killed by an organiser with its work saved."""
    ending.kill_sessions(Session.objects.filter(pk=holder.pk), by="organiser")
    return Session.objects.select_related("container__pool").get(pk=holder.pk)


def test_the_ended_page_shows_the_holder_their_code_and_nobody_else(client, ended, other_device):
    page = client.get(f"/user/{ended.container.path_id}/lab").content.decode()
    code = re.search(r'id="resume-code">([^<]+)<', page).group(1)
    assert code == Session.objects.get(pk=ended.pk).resume_code
    assert shown_code(client) == code  # and the resume page, until the files come back
    strangers = other_device.get(f"/user/{ended.container.path_id}/lab").content.decode()
    assert 'id="resume-code"' not in strangers and 'id="resume-link" href="/resume/"' in strangers


def test_the_admin_never_shows_a_code(admin_client, holder):
    code = resume.code_for(holder)
    assert code not in admin_client.get(f"/admin/pool/session/{holder.pk}/change/").content.decode()


# --- typed on another device -----------------------------------------------------


def test_a_code_typed_on_another_device_lands_in_the_same_live_notebook(client, holder, other_device):
    code = shown_code(client)
    response = other_device.post("/resume/", {"code": code})
    assert response.status_code == 302 and response["Location"] == notebook_landing(holder)
    assert other_device.post("/resume/", {"code": f"  {code.upper().replace('-', ' ')} "})["Location"] == notebook_landing(holder)


def test_the_first_device_keeps_its_notebook(client, holder, other_device):
    other_device.post("/resume/", {"code": shown_code(client)})
    assert client.get("/")["Location"] == notebook_landing(holder)
    assert Session.objects.get(pk=holder.pk).visitor == holder.visitor
    assert Session.objects.active().count() == 1  # the other device took no notebook


def test_a_json_client_gets_the_notebooks_url_as_json(client, holder, other_device):
    answer = other_device.post("/resume/", {"code": shown_code(client)}, headers=JSON)
    assert answer.status_code == 200 and answer.json() == {"status": "ready", "url": notebook_landing(holder)}


def test_a_wrong_code_is_refused_with_a_message(client, holder, other_device):
    code = shown_code(client)
    wrong = "calm-otter-lantern-0000" if code != "calm-otter-lantern-0000" else "calm-otter-lantern-0001"
    for typed in (wrong, "not a code", ""):
        response = other_device.post("/resume/", {"code": typed})
        assert response.status_code == 403
        assert "That resume code is not right" in response.content.decode() and 'role="alert"' in response.content.decode()
    answer = other_device.post("/resume/", {"code": wrong}, headers=JSON)
    assert answer.status_code == 403 and answer.json()["status"] == "wrong-code"


def test_the_form_needs_its_csrf_token(client, holder, pool):
    code = shown_code(client)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/resume/").content.decode()
    assert browser.post("/resume/", {"code": code}).status_code == 403
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post("/resume/", {"code": code, "csrfmiddlewaretoken": token}).status_code == 302


def test_tries_are_limited_per_address(client, holder, other_device, settings):
    settings.TMPNB_RESUME_RATE = "3/m"
    code, address = shown_code(client), unused_address()
    for number in range(3):
        assert other_device.post("/resume/", {"code": f"calm-otter-lantern-{number:04d}"}, REMOTE_ADDR=address).status_code == 403
    refused = other_device.post("/resume/", {"code": code}, REMOTE_ADDR=address)  # even the right one now
    assert refused.status_code == 429 and refused["Retry-After"] == "60" and "Too many tries" in refused.content.decode()
    assert other_device.post("/resume/", {"code": code}, REMOTE_ADDR=unused_address()).status_code == 302


def test_tries_are_limited_per_code_from_any_address(client, holder, other_device, settings):
    settings.TMPNB_RESUME_RATE = "3/m"
    code = shown_code(client)
    for _ in range(3):
        assert other_device.post("/resume/", {"code": code.replace("-", " ")}, REMOTE_ADDR=unused_address()).status_code == 302
    assert other_device.post("/resume/", {"code": code.upper()}, REMOTE_ADDR=unused_address()).status_code == 429


def test_each_resume_is_an_event_that_never_holds_the_code(client, holder, other_device, caplog):
    code = shown_code(client)
    with caplog.at_level(logging.DEBUG):
        other_device.post("/resume/", {"code": code})
    event = Event.objects.get(kind=Event.Kind.RESUME)
    assert event.session_id == holder.pk and event.container_id == holder.container_id
    assert event.actor and event.actor != holder.visitor_tag  # the device that typed it, by its tag
    assert all(code not in f"{e.message} {e.details} {e.actor}" for e in Event.objects.all())
    assert code not in caplog.text


def test_an_ended_notebooks_code_starts_a_new_one_with_its_saved_files(client, ended, other_device, fake_backend, restores_queued):  # noqa: F811
    code = shown_code(client)
    response = other_device.post("/resume/", {"code": code})
    new = Session.objects.active().select_related("container__pool").get()
    assert response.status_code == 302 and response["Location"] == notebook_landing(new)
    assert new.visitor != ended.visitor and new.container_id != ended.container_id
    restores_queued.run()
    [(name, _, data)] = fake_backend.copied_in
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert name == new.container.name and tar.extractfile("notes.txt").read() == b"my work\n"
    event = Event.objects.get(kind=Event.Kind.RESUME)
    assert event.session_id == ended.pk and event.container_id == new.container_id
    # The code went with the work: it now leads to the new notebook, from any device.
    assert Session.objects.get(pk=new.pk).resume_code == code
    assert client.post("/resume/", {"code": code})["Location"] == notebook_landing(new)
    assert 'id="resume-code"' not in client.get(f"/user/{ended.container.path_id}/lab").content.decode()


def test_the_ended_pages_start_again_carries_the_code_too(client, ended, restores_queued):  # noqa: F811
    code = shown_code(client)
    client.post(f"/ended/{ended.container.path_id}/restore")
    assert Session.objects.active().get().resume_code == code


def test_an_ended_notebook_whose_work_is_being_saved_asks_to_try_again(client, holder, other_device):
    code = shown_code(client)
    Session.objects.filter(pk=holder.pk).end(Session.EndReason.KILLED, by="organiser")  # the copy not begun
    response = other_device.post("/resume/", {"code": code}, headers=JSON)
    assert response.status_code == 409 and response.json()["status"] == "saving" and response["Retry-After"] == "2"


def test_an_ended_notebook_with_nothing_kept_says_so(client, ended, other_device):
    code = shown_code(client)
    Snapshot.objects.filter(session=ended).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = other_device.post("/resume/", {"code": code})
    assert response.status_code == 410 and "cannot be brought back" in response.content.decode()
    assert Session.objects.active().count() == 0


@pytest.mark.parametrize(
    ("language", "heading"), [("de", "Auf einem anderen Gerät fortsetzen"), ("fr", "Reprendre sur un autre appareil"), ("ja", "別の端末で再開する")]
)
def test_the_resume_page_comes_in_the_browsers_language(pool, language, heading):
    page = Client().get("/resume/", headers={"Accept-Language": language}).content.decode()
    assert f"<h1>{heading}</h1>" in page


def test_every_catalogue_translates_the_resume_texts(settings):
    for code, _ in settings.LANGUAGES:
        if code == "en":
            continue
        with translation.override(code):
            for text in ("Resume on another device", "To carry on from another device, open %(url)s there and type your resume code %(code)s."):
                assert translation.gettext(text) != text, code


def test_the_resume_page_shows_the_live_notebooks_code_before_an_ended_ones(client, holder, pool):
    spare = pool.containers.exclude(pk=holder.container_id).get()
    Session.objects.create(visitor=holder.visitor, container=spare, started_at=timezone.now() + timedelta(minutes=1), ended_at=timezone.now())
    assert resume.find(shown_code(client)).pk == holder.pk
