"""Several named pools on the real stack: each keeps its own numbers filled
and serves its own image at its own landing URL."""

import time
from datetime import timedelta

import docker
from django.utils import timezone

from pool.backends import docker as docker_backend
from pool.command import DEFAULT_COMMAND
from pool.models import Container, Event, Pool, Schedule
from tests.factories import JUPYTER_IMAGE, TINY_IMAGE, PoolFactory
from tests.integration.test_pool_lifecycle import visit, wait_until
from tests.stack import Browser


def ready_in(name):
    return Container.objects.ready().filter(pool__name=name).count()


def served_container(response):
    path_id = response.url.split("/user/", 1)[1].split("/", 1)[0]
    return Container.objects.get(path_id=path_id)


def test_two_pools_serve_their_own_images_side_by_side_at_their_own_urls(live_stack):
    PoolFactory(name="default", capacity=3, ready_target=2)
    PoolFactory(name="jupyter", image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", capacity=2, ready_target=1, mem_limit="256m")
    live_stack.start()
    wait_until(lambda: ready_in("default") == 2 and ready_in("jupyter") == 1, timeout=60, what="both pools filled")

    tiny_page, _ = visit(live_stack.url, "/")
    notebook_page, _ = visit(live_stack.url, "/p/jupyter/")
    assert tiny_page.status_code == notebook_page.status_code == 200
    tiny, notebook = served_container(tiny_page), served_container(notebook_page)
    assert (tiny.pool.name, notebook.pool.name) == ("default", "jupyter")
    assert tiny_page.text.strip() == f"tree {tiny.base_path}"
    assert "<title>JupyterLab</title>" in notebook_page.text  # JupyterLab's own page

    engine = docker.from_env()
    try:
        for container, image in ((tiny, TINY_IMAGE), (notebook, JUPYTER_IMAGE)):
            inspected = engine.containers.get(container.backend_id)
            assert inspected.image.tags == [image]
            assert inspected.labels["tmpnb.pool"] == container.pool.name
    finally:
        engine.close()
    # The workers refill each pool to its own numbers.
    wait_until(lambda: ready_in("default") == 2 and ready_in("jupyter") == 1, timeout=60, what="both pools refilled")
    assert {p.name: p.containers.live().count() for p in Pool.objects.all()} == {"default": 3, "jupyter": 2}


def test_a_visitor_holding_a_notebook_is_led_back_to_it_from_another_pool(live_stack):
    PoolFactory(name="default", capacity=1)
    PoolFactory(name="second", capacity=1)
    live_stack.start()
    wait_until(lambda: ready_in("default") == 1 and ready_in("second") == 1, what="both pools filled")
    with Browser() as browser:
        mine = browser.get(f"{live_stack.url}/", timeout=30)
        elsewhere = browser.get(f"{live_stack.url}/p/second/", timeout=30)
    assert elsewhere.status_code == 409
    assert f'href="{live_stack.notebook_url}{served_container(mine).url_for("/tree")}"' in elsewhere.text
    assert ready_in("second") == 1


def test_beat_applies_a_planned_size_on_time_and_once(live_stack):
    pool = PoolFactory(capacity=1)
    live_stack.start()
    wait_until(lambda: ready_in("default") == 1, what="1 ready container")
    at = timezone.now() + timedelta(seconds=2)
    schedule = Schedule.objects.create(pool=pool, at=at, capacity=3)
    time.sleep(1)
    assert Pool.objects.get(pk=pool.pk).capacity == 1  # not before its time
    wait_until(lambda: ready_in("default") == 3, what="the planned size filled")
    schedule.refresh_from_db()
    assert at <= schedule.applied_at < at + timedelta(seconds=5)
    [event] = Event.objects.filter(kind=Event.Kind.SCHEDULE)
    assert event.details["capacity"] == [1, 3]
    assert len(docker_backend.list_containers()) == 3
