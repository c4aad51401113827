"""The organiser's dashboard, the admin's home page."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from pool.charts import MAX_POINTS, line_chart
from pool.models import Container, Event, Session, UsageSample
from pool.services import assignment, usage
from tests.factories import ContainerFactory, PoolFactory, SessionFactory, new_visitor
from tests.pool.test_upkeep import spawn_all

NOW = timezone.now()


def sample(pool, minutes_ago, in_use, ready=0, waiting=0):
    """A pool's sample as beat takes them: every pool's at the same time."""
    UsageSample.objects.create(time=NOW - timedelta(minutes=minutes_ago), pool=pool, in_use=in_use, ready=ready, starting=0, waiting=waiting)


@pytest.mark.django_db
def test_the_home_page_shows_each_pools_numbers_and_keeps_the_model_list(admin_client):
    pool = PoolFactory(capacity=6)
    PoolFactory(name="python", capacity=1, image="tmpnb/jupyter:latest")
    ContainerFactory.create_batch(2, pool=pool, state=Container.State.READY)
    ContainerFactory(pool=pool, state=Container.State.SPAWNING)
    ContainerFactory(pool=pool, state=Container.State.FAILED, ended_at=timezone.now())
    SessionFactory(container__pool=pool)
    page = admin_client.get("/admin/").content.decode()
    rows = re.findall(r"<tr>\s*<th><a[^>]*>(\w+)</a> · <a[^>]*>room</a></th>(.*?)</tr>", page, re.S)
    cells = {name: re.findall(r'<td class="num">(?:<a[^>]*>)?(\d+)', row) for name, row in rows}
    assert cells == {"default": ["6", "2", "1", "1", "1"], "python": ["1", "0", "0", "0", "0"]}
    assert 'href="/p/python/"' in page and 'href="/"' in page
    assert "Site administration" in page and 'href="/admin/pool/pool/"' in page and 'href="/admin/pool/event/"' in page


@pytest.mark.django_db
def test_live_sessions_show_a_short_visitor_tag_start_activity_and_age_never_the_cookie(admin_client):
    session = SessionFactory(visitor="secret-cookie-value", started_at=timezone.now() - timedelta(minutes=12))
    page = admin_client.get("/admin/").content.decode()
    assert f'data-visitor="{session.visitor_tag}"' in page
    assert "secret-cookie-value" not in page
    assert "12\xa0minutes" in page
    assert f'name="one" value="{session.pk}"' in page


@pytest.mark.django_db
def test_the_usage_chart_is_inline_svg_and_today_has_its_peak(admin_client):
    pool, other = PoolFactory(), PoolFactory(name="other")
    for minutes, in_use in ((50, 1), (40, 4), (30, 2)):
        sample(pool, minutes, in_use, ready=1, waiting=1)
        sample(other, minutes, in_use, ready=2)
    page = admin_client.get("/admin/", {"window": "1h"}).content.decode()
    assert '<svg id="usage-chart"' in page
    assert re.findall(r'(?:src|href)="(?:https?:)?//', page) == []  # no asset from anywhere else
    polylines = dict(re.findall(r'class="series-(\w+)" points="([^"]+)"', page))
    assert set(polylines) == {"in_use", "ready", "waiting"}
    assert len(polylines["in_use"].split()) == 3
    assert re.search(r'<b id="peak-today">8</b>', page)
    assert "in use: 4" in page and "ready: 3" in page and "turned away: 1" in page


@pytest.mark.django_db
def test_the_dashboard_alone_is_served_for_its_refresh_and_needs_a_login(admin_client, client):
    assert admin_client.get("/admin/dashboard/").status_code == 200
    assert 'id="live-sessions"' in admin_client.get("/admin/dashboard/").content.decode()
    assert client.get("/admin/dashboard/").status_code == 302
    assert client.get("/admin/").status_code == 302


def test_the_organiser_kills_sessions_from_the_dashboard(clean_pools, endings_finish_here, admin_client, admin_user):
    pool = PoolFactory(capacity=3)
    spawn_all(pool)
    one, two, three = (assignment.assign_container(pool=pool, visitor=v) for v in ("a", "b", "c"))
    response = admin_client.post("/admin/dashboard/kill/", {"session": [one.pk, two.pk]}, follow=True)
    assert "Killed 2 session(s)." in response.content.decode()
    response = admin_client.post("/admin/dashboard/kill/", {"one": three.pk}, follow=True)
    page = response.content.decode()
    assert "Killed 1 session(s)." in page
    assert page.count(f"killed by {admin_user.username}") == 3  # under Recently ended
    assert Session.objects.active().count() == 0
    assert set(Container.objects.values_list("state", flat=True)) == {Container.State.GONE}


@pytest.mark.django_db
def test_a_kill_needs_the_csrf_token_and_a_post(admin_user):
    session = SessionFactory()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.post("/admin/dashboard/kill/", {"one": session.pk}).status_code == 403
    assert browser.get("/admin/dashboard/kill/", {"one": session.pk}).status_code == 405
    session.refresh_from_db()
    assert session.ended_at is None


def test_a_long_window_is_merged_to_a_drawable_number_of_points_keeping_peaks():
    start = timezone.now() - timedelta(days=1)
    rows = [{"time": start + timedelta(seconds=10 * n), "in_use": 9 if n == 5000 else 1} for n in range(8640)]
    chart = line_chart(rows, [("in_use", "in use", "red")], start, start + timedelta(days=1))
    points = chart.series[0].points.split()
    assert len(points) <= MAX_POINTS
    assert [label for _, label in chart.y_ticks] == [0, 5, 10]
    (zero, _), _, (ten, _) = chart.y_ticks
    assert min(float(p.split(",")[1]) for p in points) == pytest.approx(ten + (zero - ten) * 0.1)  # the one peak of 9 kept


@pytest.mark.django_db
def test_today_counts_the_visitors_kept_waiting_not_each_period_they_waited(admin_client, client):
    PoolFactory()
    client.get("/")
    usage.take_usage_sample()
    client.get("/")  # the same visitor, still waiting in the next period
    new_visitor(client)
    client.get("/")
    assert Event.objects.filter(kind=Event.Kind.TURNED_AWAY).count() == 3
    assert '<b id="turned-away-today">2</b>' in admin_client.get("/admin/").content.decode()
