"""/metrics on the real stack, scraped through the proxy from this host."""

import requests

from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, visit, wait_until
from tests.pool.test_metrics import samples

DEFAULT = (("pool", "default"),)


def scrape(live_stack):
    response = requests.get(f"{live_stack.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def metric(live_stack, name, **labels):
    return scrape(live_stack)[(name, tuple(sorted({"pool": "default", **labels}.items())))]


def test_metrics_move_when_a_visitor_is_assigned_and_when_beat_culls_their_session(live_stack):
    PoolFactory(capacity=2, cull_timeout=2)
    live_stack.start(TMPNB_CULL_PERIOD=1)
    wait_until(lambda: ready_count() == 2, what="2 ready containers")
    assert metric(live_stack, "tmpnb_assignments_total") == 0
    assert metric(live_stack, "tmpnb_containers", state="ready") == 2
    assert metric(live_stack, "tmpnb_spawn_duration_seconds_count") == 2

    assert visit(live_stack.url)[0].status_code == 200
    values = scrape(live_stack)
    assert values[("tmpnb_assignments_total", DEFAULT)] == 1
    assert values[("tmpnb_containers", DEFAULT + (("state", "assigned"),))] == 1
    assert values[("tmpnb_culls_total", DEFAULT + (("reason", "culled-idle"),))] == 0

    # Nobody uses the notebook: beat culls it after cull_timeout.
    wait_until(lambda: metric(live_stack, "tmpnb_culls_total", reason="culled-idle") == 1, what="the idle session culled")
    assert metric(live_stack, "tmpnb_containers", state="assigned") == 0
    assert metric(live_stack, "tmpnb_assignments_total") == 1
