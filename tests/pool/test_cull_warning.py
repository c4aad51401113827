"""The warning inside a held notebook before its cull: the rule (how long
is left, by the same reckoning the culler uses) and the endpoint the
JupyterLab page asks, with Docker and the proxy faked at their boundary
(tests/integration/test_cull_warning.py shows the banner on the real stack)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pool.models import Session
from pool.services import pools, spawning, upkeep
from proxyapi import ProxyError
from proxyapi.client import Route
from tests.factories import PoolFactory, new_visitor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def holding(client, fake_backend, fake_proxy):
    """``client`` holds a notebook of a pool culling after 10 idle minutes or 4 hours; returns its session."""
    pool = PoolFactory(capacity=1, cull_timeout=600, cull_max=14400)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    return Session.objects.select_related("container__pool").get()


def time_left_url(session):
    return f"/api/notebooks/{session.container.path_id}/time-left"


def idle_since(session, fake_proxy, ago):
    """The proxy saw the notebook's last request ``ago`` ago (the session's own copy is older still)."""
    Session.objects.filter(pk=session.pk).update(last_activity=timezone.now() - timedelta(hours=1))
    route = fake_proxy.routes[session.container.route_path]
    fake_proxy.routes[route.path] = Route(path=route.path, target=route.target, last_activity=timezone.now() - ago, data=route.data)


def test_the_holder_is_warned_minutes_before_an_idle_cull(client, holding, fake_proxy):
    idle_since(holding, fake_proxy, timedelta(minutes=8))
    answer = client.get(time_left_url(holding)).json()
    assert answer["warn"] is True and answer["reason"] == Session.EndReason.CULLED_IDLE
    assert answer["idle_timeout"] == 600 and 110 <= answer["idle_left"] <= 120
    assert answer["message"].startswith("This notebook will be shut down in about 2 minutes because it has been idle")
    assert "any activity keeps it open" in answer["message"] and "offers them for download" in answer["message"]


def test_recent_traffic_seen_by_the_proxy_puts_the_warning_off(client, holding, fake_proxy):
    # The session's own last_activity is only synced at each cull: the proxy's is the truth.
    idle_since(holding, fake_proxy, timedelta(seconds=5))
    answer = client.get(time_left_url(holding)).json()
    assert answer["warn"] is False and 590 <= answer["idle_left"] <= 595


def test_the_age_limit_is_warned_of_even_when_active(client, holding, fake_proxy):
    idle_since(holding, fake_proxy, timedelta(seconds=0))
    Session.objects.filter(pk=holding.pk).update(started_at=timezone.now() - timedelta(seconds=14400 - 90))
    answer = client.get(time_left_url(holding)).json()
    assert answer["warn"] is True and answer["reason"] == Session.EndReason.CULLED_AGE and answer["age_left"] <= 90
    assert answer["message"].startswith("This notebook reaches its time limit and will be shut down in about 2 minutes.")


def test_the_warning_counts_down_to_the_moment_the_culler_ends_the_session(holding, fake_proxy):
    idle_since(holding, fake_proxy, timedelta(minutes=3))
    now = timezone.now()
    left = upkeep.time_left(path_id=holding.container.path_id, visitor=holding.visitor, now=now)
    due = now + timedelta(seconds=left.idle_left)
    assert upkeep.cull_sessions(now=due - timedelta(seconds=2))[Session.EndReason.CULLED_IDLE] == 0
    assert upkeep.cull_sessions(now=due + timedelta(seconds=2))[Session.EndReason.CULLED_IDLE] == 1


def test_nobody_but_the_holder_learns_anything(client, holding):
    url = time_left_url(holding)
    assert client.get(url).status_code == 200
    new_visitor(client)  # another browser
    assert client.get(url).status_code == 404
    client.cookies.clear()  # no visitor cookie at all
    assert client.get(url).status_code == 404
    assert client.get("/api/notebooks/nosuchnotebook/time-left").status_code == 404


def test_on_the_notebooks_origin_whoever_sends_its_token_is_answered_and_nobody_else(client, holding, settings):
    # What the banner does (deploy/images/cull-warning.js): no cookie of the service reaches that origin.
    client.cookies.clear()
    on_its_origin = {"HTTP_HOST": f"testserver:{settings.TMPNB_NOTEBOOK_PORT}"}
    url = time_left_url(holding)
    assert client.get(url, HTTP_AUTHORIZATION=f"token {holding.container.token}", **on_its_origin).json()["idle_timeout"] == 600
    assert client.get(url, HTTP_AUTHORIZATION="token guessed", **on_its_origin).status_code == 404
    assert client.get(url, **on_its_origin).status_code == 404
    # The token is the notebook's own: on the participants' pages it proves nothing.
    assert client.get(url, HTTP_AUTHORIZATION=f"token {holding.container.token}").status_code == 404


def test_an_ended_notebook_is_not_found(client, holding):
    Session.objects.filter(pk=holding.pk).end(Session.EndReason.KILLED, by="organiser")
    assert client.get(time_left_url(holding)).status_code == 404


def test_without_the_proxy_the_answer_is_unknown_not_a_guess(client, holding, monkeypatch):
    def unreachable():
        raise ProxyError("connection refused")

    monkeypatch.setattr("pool.services.upkeep.get_proxy", lambda: type("Down", (), {"get_route": lambda self, path: unreachable()})())
    response = client.get(time_left_url(holding))
    assert response.status_code == 503 and response.json() == {"status": "unknown"}


def test_without_saved_work_the_participant_is_told_to_download_their_files(client, holding, fake_proxy, settings):
    settings.TMPNB_SNAPSHOT_HOURS = 0
    idle_since(holding, fake_proxy, timedelta(minutes=9))
    assert client.get(time_left_url(holding)).json()["message"].endswith("Download the files you want to keep before then.")


def test_the_warning_is_in_the_participants_language(client, holding, fake_proxy):
    idle_since(holding, fake_proxy, timedelta(minutes=9))
    answer = client.get(time_left_url(holding), headers={"Accept-Language": "fr"}).json()
    assert answer["message"].startswith("Ce notebook sera arrêté dans environ 1 minute faute d’activité")
    assert answer["dismiss"] == "Fermer"
