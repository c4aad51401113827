"""The pool heals itself and outlives restarts, on the real stack."""

import time

import docker
import requests

from pool.backends import docker as docker_backend
from pool.models import Container, Session
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import Browser


def reachable(url):
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return False
    return response.status_code == 200 and response.text.startswith("tree ")


def backend_ids():
    return sorted(c.backend_id for c in docker_backend.list_containers())


def ready_or_held():
    """The backend ids of the rows still ready or held (none taken for dead)."""
    held = (Container.State.READY, Container.State.ASSIGNED)
    return sorted(Container.objects.filter(state__in=held).values_list("backend_id", flat=True))


def start_with_one_visitor(live_stack, capacity=2, **pool_options):
    PoolFactory(capacity=capacity, **pool_options)
    live_stack.start()
    wait_until(lambda: ready_count() == capacity, what=f"{capacity} ready containers")
    browser = Browser()
    page = browser.get(f"{live_stack.url}/", timeout=30)
    assert page.status_code == 200
    return browser, page.url


def test_a_proxy_restart_loses_no_session(live_stack, proxy):
    browser, url = start_with_one_visitor(live_stack)
    before = backend_ids()
    proxy.stop()
    proxy.start()
    wait_until(lambda: reachable(url), timeout=10, what="the visitor's notebook reachable again")
    assert browser.get(f"{live_stack.url}/", timeout=30).url == url
    assert backend_ids() == before


def test_a_full_restart_of_web_worker_and_beat_loses_no_session(live_stack):
    browser, url = start_with_one_visitor(live_stack)
    before = backend_ids()
    live_stack.stop()
    assert reachable(url)  # the proxy still routes to the running notebook
    live_stack.start()
    live_stack.wait_for_heartbeats()  # each reconciles the rows with Docker and the proxy
    assert backend_ids() == ready_or_held() == before
    assert browser.get(f"{live_stack.url}/", timeout=30).url == url
    assert reachable(url)


def test_each_process_restarted_alone_loses_no_session(live_stack):
    browser, url = start_with_one_visitor(live_stack)
    before = backend_ids()
    for process in (live_stack.web, live_stack.worker, live_stack.beat):
        process.stop()
        process.start()
        live_stack.wait_for_heartbeats()
        assert reachable(url), f"lost after restarting {process.name}"
        assert backend_ids() == ready_or_held() == before, f"containers changed after restarting {process.name}"
    assert browser.get(f"{live_stack.url}/", timeout=30).url == url


def test_beat_culls_an_idle_session_while_an_active_one_survives(live_stack):
    PoolFactory(capacity=3, cull_timeout=3)
    live_stack.start(TMPNB_CULL_PERIOD=1)
    wait_until(lambda: ready_count() == 3, what="3 ready containers")
    idle = Browser()
    idle_url = idle.get(f"{live_stack.url}/", timeout=30).url
    active = Browser()
    active_url = active.get(f"{live_stack.url}/", timeout=30).url
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert reachable(active_url), "the active session was culled"
        time.sleep(0.5)
    wait_until(lambda: Session.objects.filter(end_reason=Session.EndReason.CULLED_IDLE).count() == 1, what="the idle session culled")
    assert not reachable(idle_url)
    assert Session.objects.active().count() == 1
    wait_until(lambda: ready_count() == 2, what="the culled place refilled")


def test_a_killed_visitor_sees_the_ended_page_and_gets_a_new_server_in_one_click(live_stack, admin_client):
    browser, url = start_with_one_visitor(live_stack)
    session = Session.objects.get()
    admin_client.post("/admin/pool/session/", {"action": "kill", "_selected_action": [session.pk]})
    ended = browser.get(url, timeout=10)
    assert ended.status_code == 410
    assert "This notebook server has ended" in ended.text
    fresh = browser.get(f"{live_stack.url}/spawn/", timeout=30)
    assert fresh.status_code == 200
    assert fresh.url != url and session.container.path_id not in fresh.url


def test_a_container_killed_behind_the_services_back_is_replaced(live_stack):
    PoolFactory(capacity=2)
    live_stack.start()
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    victim = Container.objects.ready().first()
    client = docker.from_env()
    client.containers.get(victim.backend_id).kill()
    client.close()
    wait_until(lambda: Container.objects.get(pk=victim.pk).state == Container.State.GONE, what="the dead container noticed")
    wait_until(lambda: ready_count() == 2, what="a replacement ready")
    assert victim.backend_id not in backend_ids()
