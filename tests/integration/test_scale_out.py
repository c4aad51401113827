"""Several machines' worth of processes on one database: two Celery workers and
two gunicorn processes, a burst of visitors through both, heartbeats and fills
queued by the dozen, and every spawn task delivered twice (as a redelivered
task would be). No container is handed out twice and none is started twice.
Runs on SQLite and, from deploy/test, on PostgreSQL."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
from django.conf import settings
from django.db import connection

from pool import tasks
from pool.backends import docker as docker_backend
from pool.backends.client import LABEL_INSTALLATION, labels_for
from pool.models import Container, Session
from pool.services import pools
from tests import stack
from tests.conftest import stack_env
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import wait_until
from tests.stack import Browser

CAPACITY = 12
VISITORS = 30


class CreateWatch:
    """Names of this run's containers Docker creates while it watches, one per
    create. The events are streamed as they happen: Docker keeps only its last
    256 events, which other work on the host can push out before a query."""

    def __init__(self):
        self.created = Counter()
        self._client = docker.DockerClient(base_url=settings.DOCKER_HOST)
        self._stream = self._client.events(
            decode=True,
            filters={"type": "container", "event": "create", "label": f"{LABEL_INSTALLATION}={settings.TMPNB_INSTALLATION}"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            for event in self._stream:
                self.created[event["Actor"]["Attributes"]["name"]] += 1
        except Exception:  # the stream closed under the reader
            pass

    def stop(self, marker_name):
        """Stop once every event up to now is read: a container created now,
        ``marker_name``, is the last event of the watch."""
        marker = self._client.containers.create("tmpnb/tiny:latest", "true", name=marker_name, labels=labels_for("watch", container_name=marker_name))
        wait_until(lambda: marker_name in self.created, what="the watch's own marker event")
        docker_backend.remove_container(marker.id)  # a reconcile may have taken it for an orphan already
        self._stream.close()
        self._client.close()
        del self.created[marker_name]
        return self.created


@pytest.mark.postgres
def test_two_workers_and_two_web_processes_start_nothing_twice_and_hand_out_nothing_twice(live_stack, proxy, redis_server, web_port, log_dir):
    pool = PoolFactory(capacity=CAPACITY)
    # Rows made here and never queued by a fill: the test queues each spawn
    # twice, and the two workers share them out.
    rows = pools.fill_pool(pool.pk)
    watch = CreateWatch()
    live_stack.start(web_workers=2)
    environment = stack_env(proxy, redis_server, web_port)
    second_worker = stack.CeleryWorker(environment, log_dir).start()
    second_web = stack.WebApp(stack.free_port(), environment, log_dir, workers=2).start()
    try:
        for row in rows * 2:
            tasks.spawn_container_task.delay(row.pk)
        # (or a spawn failed: the assertions below say which)
        wait_until(lambda: not Container.objects.spawning().exists(), timeout=90, what="every spawn done")
        start = threading.Barrier(VISITORS)

        def visit(n):
            web = (live_stack.web, second_web)[n % 2]
            with Browser() as browser:
                start.wait()
                return browser.get(f"{web.url}/", headers={"X-Forwarded-For": f"10.1.{n}.1"}, allow_redirects=False, timeout=60)

        queued = set()
        for _ in range(10):
            queued |= {tasks.heartbeat_task.delay().id, tasks.fill_pool_task.delay(pool.pk).id}
        with ThreadPoolExecutor(VISITORS) as executor:
            responses = list(executor.map(visit, range(VISITORS)))

        def finished():
            names = (tasks.heartbeat_task.name, tasks.fill_pool_task.name)
            return {task_id for worker in (live_stack.worker, second_worker) for name in names for task_id in worker.tasks_succeeded(name)}

        wait_until(lambda: queued <= finished(), what="the heartbeats and fills queued meanwhile done")
        second_worker.assert_running()
    finally:
        second_web.stop()
        second_worker.stop()

    redirects = [r.headers["Location"] for r in responses if r.status_code == 302]
    assert len(redirects) == len(set(redirects)) == CAPACITY
    assert Session.objects.values("container").distinct().count() == Session.objects.count()
    assert list(Container.objects.filter(state=Container.State.FAILED).values_list("error", flat=True)) == []
    live = set(Container.objects.live().values_list("name", flat=True))
    assert len(live) == CAPACITY
    running = [info.name for info in docker_backend.list_containers()]
    assert sorted(running) == sorted(live)  # every container is exactly one row's
    created = watch.stop(f"tmpnb-{settings.TMPNB_INSTALLATION}-watch-marker")
    assert set(created) == live and set(created.values()) == {1}  # each started once, none removed
    print(
        f"\nscale-out on {connection.vendor}: {len(rows)} spawns queued twice, {len(redirects)} visitors placed at once, "
        f"{CAPACITY} containers each created once"
    )
