"""The pool on the real stack: gunicorn behind configurable-http-proxy, a
Celery worker and beat on Redis, Docker containers of the tiny image."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pool.backends import docker as docker_backend
from pool.models import Container, Pool, Session
from tests.factories import PoolFactory
from tests.stack import ROOT, Browser


def wait_until(check, timeout=30, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ready_count():
    return Container.objects.ready().count()


def visit(base_url, path="/"):
    """A new visitor (own cookie jar) following redirects through the proxy."""
    with Browser() as browser:
        response = browser.get(f"{base_url}{path}", timeout=30)
        return response, browser.cookies


def test_the_pool_is_prelaunched_and_a_visitor_lands_in_their_own_container(live_stack):
    PoolFactory(capacity=3)
    live_stack.start()
    wait_until(lambda: ready_count() == 3, what="3 ready containers")
    response, _ = visit(live_stack.url)
    assert response.status_code == 200
    session = Session.objects.get()
    assert response.url.startswith(f"{live_stack.notebook_url}/user/{session.container.path_id}/tree?token=")
    assert response.text.strip() == f"tree {session.container.base_path}"


def test_a_reload_through_the_proxy_returns_the_same_container(live_stack):
    PoolFactory(capacity=2)
    live_stack.start()
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    with Browser() as browser:
        first = browser.get(f"{live_stack.url}/", timeout=30)
        again = browser.get(f"{live_stack.url}/", timeout=30)
    assert first.status_code == again.status_code == 200
    assert first.url == again.url
    assert Session.objects.count() == 1


@pytest.mark.postgres
def test_fifty_concurrent_visitors_never_share_a_container(live_stack):
    PoolFactory(capacity=20)
    # All fifty come from 127.0.0.1 here: the per-address cap is raised.
    live_stack.start(web_workers=3, TMPNB_MAX_PER_IP=100)
    wait_until(lambda: ready_count() == 20, timeout=60, what="20 ready containers")
    with ThreadPoolExecutor(max_workers=50) as executor:
        results = list(executor.map(lambda _: visit(live_stack.url)[0], range(50)))
    served = [r for r in results if r.status_code == 200 and "/user/" in r.url]
    told_to_wait = [r for r in results if r.status_code == 200 and "tries again by itself" in r.text]
    assert len(served) == 20 and len(told_to_wait) == 30
    # Each served visitor reached the container named in their own URL.
    pages = {r.text.strip() for r in served}
    assert len(pages) == 20
    for response in served:
        assert response.text.strip() == f"tree {response.url.split('/tree?')[0].removeprefix(live_stack.notebook_url)}/"
    assert Session.objects.count() == 20
    assert Session.objects.values("container").distinct().count() == 20


def test_the_pool_refills_after_assignments_up_to_its_size(live_stack):
    pool = PoolFactory(capacity=4, ready_target=2)
    live_stack.start()
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    for _ in range(2):
        assert visit(live_stack.url)[0].status_code == 200
    wait_until(lambda: ready_count() == 2, what="the ready target refilled")
    assert pool.containers.live().count() == 4
    for _ in range(2):
        assert visit(live_stack.url)[0].status_code == 200
    # Full: four in use, none may be added.
    live_stack.wait_for_heartbeats()
    assert pool.containers.live().count() == 4 and ready_count() == 0
    assert "tries again by itself" in visit(live_stack.url)[0].text


def test_a_killed_session_frees_its_place_and_the_pool_refills(live_stack, admin_client):
    PoolFactory(capacity=2)
    live_stack.start()
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    visit(live_stack.url)
    session = Session.objects.get()
    admin_client.post("/admin/pool/session/", {"action": "kill", "_selected_action": [session.pk]})
    wait_until(lambda: ready_count() == 2, what="the killed place refilled")
    assert len(docker_backend.list_containers()) == 2


def test_resize_pool_is_honoured_by_the_next_beat_tick(live_stack):
    pool = PoolFactory(capacity=1)
    live_stack.start()
    wait_until(lambda: ready_count() == 1, what="1 ready container")
    env = {**live_stack.worker.env}
    result = subprocess.run([sys.executable, "manage.py", "resize_pool", "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Pool default: size 3" in result.stdout
    assert Pool.objects.get(pk=pool.pk).capacity == 3
    wait_until(lambda: ready_count() == 3, what="the resized pool filled")
    assert len(docker_backend.list_containers()) == 3
    subprocess.run([sys.executable, "manage.py", "resize_pool", "1"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    wait_until(lambda: len(docker_backend.list_containers()) == 1, what="the pool shrunk")


def test_a_pool_drained_three_times_while_starting_fills_again_with_no_failure_counted(live_stack):
    """What an organiser does right after changing the image: the drains
    cancel the starting containers, which is no failure, so the pool is
    never backed off or paused."""
    from pool.services import pools
    from tests.factories import TINY_COMMAND

    # A server that takes a few seconds to answer, as Jupyter does: drains land while it starts.
    pool = PoolFactory(capacity=6, command=TINY_COMMAND.replace("sh -c '", "sh -c 'sleep 4 && "))
    live_stack.start()
    for _ in range(3):
        wait_until(lambda: Container.objects.spawning().exists(), what="containers starting")
        pools.drain_pool(pool, by="organiser")
    wait_until(lambda: ready_count() == 6, timeout=60, what="the pool full again")
    pool.refresh_from_db()
    assert (pool.failure_streak, pool.paused_reason) == (0, "")
    assert not Container.objects.filter(state=Container.State.FAILED).exists()
    running = {info.name for info in docker_backend.list_containers()}
    assert running >= set(Container.objects.ready().values_list("name", flat=True))
