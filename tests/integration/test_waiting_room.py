"""The waiting room on the real stack: visitors who find no container wait in
arrival order and are let in, each to a container of their own."""

import re
from concurrent.futures import ThreadPoolExecutor

from django.utils import timezone

from pool.models import Session
from pool.services import ending
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import Browser


def arrive(url):
    browser = Browser()
    page = browser.get(f"{url}/", timeout=30)
    return browser, page


def status(browser, url):
    return browser.get(f"{url}/waiting/status", headers={"Accept": "application/json"}, timeout=10).json()


def test_visitors_who_find_the_pool_full_are_let_in_in_arrival_order(live_stack):
    PoolFactory(capacity=10)
    live_stack.start(TMPNB_MAX_PER_IP=50)
    wait_until(lambda: ready_count() == 10, timeout=60, what="10 ready containers")
    holders = [arrive(live_stack.url)[0] for _ in range(10)]
    assert Session.objects.active().count() == 10

    waiting = []
    for n in range(5):
        browser, page = arrive(live_stack.url)
        assert "Your place in the queue" in page.text and "/user/" not in page.url
        waiting.append(browser)
        assert status(browser, live_stack.url)["position"] == n + 1
    assert status(waiting[2], live_stack.url)["phase"] == "waiting"
    # The first in line gives a name (optional) through the page's own form;
    # the page comes back with their place, and their session will carry it.
    page = waiting[0].get(f"{live_stack.url}/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    named = waiting[0].post(f"{live_stack.url}/waiting/name", data={"name": "Ada", "csrfmiddlewaretoken": token}, timeout=30)
    assert named.status_code == 200 and 'value="Ada"' in named.text and status(waiting[0], live_stack.url)["position"] == 1
    arrive_again = waiting[2].get(f"{live_stack.url}/", timeout=30)  # a reload keeps the place
    assert "/user/" not in arrive_again.url and status(waiting[2], live_stack.url)["position"] == 3

    holder_sessions = list(Session.objects.active().order_by("started_at"))
    served_urls = []
    for n, freed in enumerate(holder_sessions[:5]):
        ending.kill_sessions([freed], by="test")
        wait_until(lambda: status(waiting[n], live_stack.url)["status"] == "ready", timeout=30, what=f"visitor {n + 1} let in")
        for later, browser in enumerate(waiting[n + 1 :], start=1):
            assert status(browser, live_stack.url)["position"] == later  # everyone behind moved up
        page = waiting[n].get(f"{live_stack.url}/", timeout=30)
        assert page.status_code == 200 and "/user/" in page.url
        served_urls.append(page.url.split("/tree")[0])
    assert len(set(served_urls)) == 5
    assert Session.objects.get(display_name="Ada").container.path_id in served_urls[0]  # the first let in
    active = Session.objects.active()
    assert active.count() == 10 and active.values("container").distinct().count() == 10
    # The five holders not killed kept their notebooks: a reload takes each
    # back to the same container, which still answers.
    kept = {session.container.path_id for session in holder_sessions[5:]}
    assert all(session.is_active for session in Session.objects.filter(container__path_id__in=kept))
    landed = set()
    for browser in holders:
        page = browser.get(f"{live_stack.url}/", timeout=30)
        if "/user/" in page.url:
            assert page.status_code == 200
            landed.add(page.url.split("/user/")[1].split("/")[0])
    assert landed == kept
    assert Session.objects.active().filter(visitor__in=[s.visitor for s in holder_sessions[5:]]).count() == 5


def test_with_room_in_the_pool_waiting_visitors_get_new_spawns_and_nobody_is_turned_away(live_stack):
    PoolFactory(capacity=6, ready_target=1)
    live_stack.start()
    wait_until(lambda: ready_count() == 1, what="1 ready container")
    with ThreadPoolExecutor(max_workers=5) as executor:
        arrivals = list(executor.map(lambda _: arrive(live_stack.url), range(5)))
    for browser, page in arrivals:
        if "/user/" not in page.url:
            wait_until(lambda: status(browser, live_stack.url)["status"] == "ready", timeout=60, what="a spawn for a waiting visitor")
    urls = [browser.get(f"{live_stack.url}/", timeout=30).url for browser, _ in arrivals]
    assert all("/user/" in url for url in urls)
    assert len({url.split("/tree")[0] for url in urls}) == 5
    assert Session.objects.active().count() == 5


def test_a_waiting_visitors_status_request_is_answered_ready_as_soon_as_they_are_served(live_stack):
    PoolFactory(capacity=1)
    # Status requests may then be held for a minute: one answered "ready"
    # well before that was woken by the handover itself.
    live_stack.start(TMPNB_QUEUE_TIMEOUT=3600)
    wait_until(lambda: ready_count() == 1, timeout=60, what="1 ready container")
    arrive(live_stack.url)
    waiter, page = arrive(live_stack.url)
    assert "Your place in the queue" in page.text
    first = status(waiter, live_stack.url)
    assert first["status"] == "waiting" and first["long_poll_seconds"] == 60 and first["poll_seconds"] == 1

    def long_poll():
        asked_at = timezone.now()
        answer = waiter.get(f"{live_stack.url}/waiting/status?wait=1", headers={"Accept": "application/json"}, timeout=50)
        return asked_at, answer.json()

    with ThreadPoolExecutor(max_workers=1) as executor:
        pending = executor.submit(long_poll)
        ending.kill_sessions(list(Session.objects.active()), by="test")  # a place frees up: a spawn for the waiter
        asked_at, answer = pending.result()
    assert answer["status"] == "ready" and "/user/" in answer["url"]
    served = Session.objects.active().get()
    assert asked_at < served.started_at  # asked while still waiting
    page = waiter.get(answer["url"], timeout=30)
    assert page.status_code == 200 and page.url.split("?")[0].endswith(served.container.base_path + "tree")
