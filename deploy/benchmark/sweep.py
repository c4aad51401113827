"""Case sweep (issue 6, part 3): one reconcile tick and one cull tick with
1,000 live sessions recorded: rows in a database of its own, routes in a real
configurable-http-proxy, and a real (sleeping, tiny) container for each in
Docker. The run below prints the time of each tick and the calls it made to
Docker and to the proxy, as JSON on its last line; deploy/bench runs it as
``python -m deploy.benchmark.sweep``, in a process of its own so that it has
Django and a database of its own."""

import json
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from deploy.benchmark import Case, run_module
from deploy.benchmark.images import TINY_IMAGE
from deploy.benchmark.inprocess import container_rows, setup_django
from tests.stack import Proxy

SESSIONS = int(os.environ.get("SWEEP_SESSIONS", "1000"))
SECONDS, LIST_CALLS = 1.0, 5  # targets of issue 6: each tick at most this long, with at most this many list calls
TARGET = f"tick <= {SECONDS} s, <= {LIST_CALLS} list calls"
TICKS = ("reconcile", "cull")


def case_sweep(bench):
    figures = run_module("sweep", timeout=1200)
    for tick in TICKS:
        calls = figures[f"{tick}_calls"]
        figures[f"{tick}_list_calls"] = calls["docker_list"] + calls["proxy_list"]
    return figures


def show(sweep, out):
    print(f"\nsweep with {sweep['sessions']} live sessions (set up in {sweep['setup_seconds']} s)", file=out)
    for tick in TICKS:
        calls = sweep[f"{tick}_calls"]
        print(
            f"  {tick:<9} {sweep[f'{tick}_seconds']:.3f} s   Docker calls {calls['docker']} (lists {calls['docker_list']})"
            f"   proxy calls {calls['proxy']} (lists {calls['proxy_list']})",
            file=out,
        )


def targets(sweep):
    if "reconcile_seconds" not in sweep:
        return [(TARGET, "not measured yet", None)]
    worst = max(sweep["reconcile_seconds"], sweep["cull_seconds"])
    calls = max(sweep["reconcile_list_calls"], sweep["cull_list_calls"])
    return [(TARGET, f"{worst:.3f} s, {calls} calls", worst <= SECONDS and calls <= LIST_CALLS)]


CASE = Case(run=case_sweep, show=show, title="sweep", targets=targets, images=lambda args: [TINY_IMAGE], quiet=False)

# --- the run in a process of its own ---------------------------------------


class Calls:
    """Counts the requests made to Docker and to the proxy, and the list calls among them."""

    def __init__(self):
        self.counts = {"docker": 0, "docker_list": 0, "proxy": 0, "proxy_list": 0}

    def install(self):
        from docker.api.client import APIClient

        from proxyapi.client import ProxyClient

        counts, send, request = self.counts, APIClient.send, ProxyClient._request

        def counted_send(client, prepared, **kwargs):
            counts["docker"] += 1
            counts["docker_list"] += "/containers/json" in prepared.url
            return send(client, prepared, **kwargs)

        def counted_request(client, method, path, **kwargs):
            counts["proxy"] += 1
            counts["proxy_list"] += method == "GET" and path == ""
            return request(client, method, path, **kwargs)

        APIClient.send, ProxyClient._request = counted_send, counted_request

    def take(self):
        taken = dict(self.counts)
        for key in self.counts:
            self.counts[key] = 0
        return taken


def main():
    state = tempfile.mkdtemp(prefix="tmpnb-sweep.")
    token = secrets.token_hex(16)
    proxy = Proxy("http://127.0.0.1:9", state, token=token).start()
    installation = f"sweep{secrets.token_hex(3)}"
    # no broker: the ticks below run in this process
    setup_django(state, token, CONFIGPROXY_ENDPOINT=proxy.api_url, TMPNB_INSTALLATION=installation, REDIS_URL="redis://127.0.0.1:9/0")
    from pool.backends import docker as docker_backend

    try:
        started = time.monotonic()
        live_sessions(installation)
        results = {"sessions": SESSIONS, "setup_seconds": round(time.monotonic() - started, 1)}
        print(json.dumps(results | ticks()))
    finally:
        with ThreadPoolExecutor(8) as pool_of_threads:
            list(pool_of_threads.map(lambda info: docker_backend.remove_container(info.backend_id), docker_backend.list_containers()))
        proxy.stop()
        shutil.rmtree(state, ignore_errors=True)


def live_sessions(installation):
    """SESSIONS sessions, each with its row, its sleeping container and its route."""
    from pool.backends.client import client as docker_engine, labels_for
    from pool.models import Container, Pool, Session
    from proxyapi import get_proxy

    pool = Pool.objects.create(name="sweep", image=TINY_IMAGE, command="sleep {base_path}", capacity=SESSIONS)
    docker_client = docker_engine()
    names = [f"tmpnb-{installation}-sweep-{n:04d}" for n in range(SESSIONS)]

    def run(name):
        container = docker_client.containers.create(TINY_IMAGE, "sleep 3600", name=name, labels=labels_for(pool.name, container_name=name), network_mode="none")
        container.start()
        return container.id

    with ThreadPoolExecutor(8) as pool_of_threads:
        ids = list(pool_of_threads.map(run, names))
    rows = container_rows(pool, names, ids, state=Container.State.ASSIGNED)
    Session.objects.bulk_create(Session(visitor=f"v{row.pk}", container=row) for row in rows)
    client = get_proxy()
    with ThreadPoolExecutor(8) as pool_of_threads:
        list(pool_of_threads.map(lambda row: client.add_route(row.route_path, row.target, container=row.name), rows))


def ticks():
    """One reconcile tick and one cull tick, timed, with the calls each made."""
    from pool.models import Session
    from pool.services import upkeep

    calls = Calls()
    calls.install()
    results = {}
    for tick, run_tick in zip(TICKS, (upkeep.reconcile, upkeep.cull_sessions)):
        begin = time.monotonic()
        outcome = run_tick()
        results[f"{tick}_seconds"] = round(time.monotonic() - begin, 3)
        results[f"{tick}_calls"] = calls.take()
        results[f"{tick}_result"] = str(outcome)
    assert Session.objects.active().count() == SESSIONS, "a tick ended live sessions"
    return results


if __name__ == "__main__":
    main()
