"""Faults injected into the real stack: nothing leaks, no session is lost."""

import signal

from pool.backends import docker as docker_backend
from pool.models import Container, Session
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, visit, wait_until

# Takes a few seconds to answer, so a test can act while it is spawning.
SLOW_COMMAND = (
    "sh -c 'sleep 4; mkdir -p /www{base_path} && echo tree {base_path} > /www{base_path}tree"
    " && echo up > /www{base_path}index.html && exec httpd -f -p {port} -h /www'"
)


def test_a_worker_killed_mid_spawn_leaks_nothing_and_the_pool_recovers(live_stack):
    PoolFactory(capacity=1, command=SLOW_COMMAND)
    live_stack.start()
    wait_until(lambda: Container.objects.spawning().exclude(backend_id="").exists(), what="a spawn under way")
    victim = Container.objects.spawning().get()
    live_stack.worker.stop(signal.SIGKILL)
    live_stack.worker.start()
    wait_until(lambda: Container.objects.get(pk=victim.pk).state == Container.State.FAILED, timeout=30, what="the orphaned spawn noticed")
    wait_until(lambda: victim.backend_id not in [c.backend_id for c in docker_backend.list_containers()], what="its container removed")
    wait_until(lambda: ready_count() == 1, timeout=30, what="the pool refilled")
    assert not Container.objects.spawning().exists()
    assert sorted(c.name for c in docker_backend.list_containers()) == sorted(Container.objects.live().values_list("name", flat=True))


def test_visitors_are_served_while_redis_restarts_and_the_pool_refills_after(live_stack, redis_server):
    PoolFactory(capacity=3, ready_target=2)
    live_stack.start()
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    redis_server.stop()
    try:
        response, _ = visit(live_stack.url)
        assert response.status_code == 200  # assignment needs only the database
    finally:
        redis_server.start()
    wait_until(lambda: ready_count() == 2, timeout=60, what="the pool refilled once Redis is back")
    assert Session.objects.active().count() == 1
    assert len(docker_backend.list_containers()) == 3
    second, _ = visit(live_stack.url)
    assert second.status_code == 200
