"""Issue 6, part 3: one reconcile tick and one cull tick with 1,000 live
sessions recorded: rows in a database of its own, routes in a real
configurable-http-proxy, and a real (sleeping, tiny) container for each in
Docker. Prints the time of each tick and the calls it made to Docker and to
the proxy, as JSON on its last line. Run by deploy/bench (case "sweep"), as
``python -m deploy.benchmark.sweep``."""

import json
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from tests.stack import Proxy

SESSIONS = int(os.environ.get("SWEEP_SESSIONS", "1000"))


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
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tmpnb_site.settings",
        TMPNB_VAR_DIR=str(state),
        DJANGO_SECRET_KEY=token,
        CONFIGPROXY_AUTH_TOKEN=token,
        CONFIGPROXY_ENDPOINT=proxy.api_url,
        TMPNB_INSTALLATION=installation,
        REDIS_URL="redis://127.0.0.1:9/0",  # no broker: the ticks below run in this process
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from pool.backends import docker as docker_backend
    from pool.backends.client import client as docker_engine, labels_for
    from pool.models import Container, Pool, Session
    from pool.services import upkeep
    from proxyapi import get_proxy

    call_command("migrate", verbosity=0)
    pool = Pool.objects.create(name="sweep", image="tmpnb/tiny:latest", command="sleep {base_path}", capacity=SESSIONS)
    docker_client = docker_engine()
    names = [f"tmpnb-{installation}-sweep-{n:04d}" for n in range(SESSIONS)]
    started = time.monotonic()
    try:

        def run(name):
            container = docker_client.containers.create(
                "tmpnb/tiny:latest", "sleep 3600", name=name, labels=labels_for(pool.name, container_name=name), network_mode="none"
            )
            container.start()
            return container.id

        with ThreadPoolExecutor(8) as pool_of_threads:
            ids = list(pool_of_threads.map(run, names))
        rows = Container.objects.bulk_create(
            Container(
                pool=pool,
                name=name,
                path_id=f"{n:012x}",
                token="t",
                backend_id=backend_id,
                host_ip="127.0.0.1",
                host_port=20000 + n,
                state=Container.State.ASSIGNED,
            )
            for n, (name, backend_id) in enumerate(zip(names, ids))
        )
        Session.objects.bulk_create(Session(visitor=f"v{row.pk}", container=row) for row in rows)
        client = get_proxy()
        with ThreadPoolExecutor(8) as pool_of_threads:
            list(pool_of_threads.map(lambda row: client.add_route(row.route_path, row.target, container=row.name), rows))
        setup_seconds = time.monotonic() - started

        calls = Calls()
        calls.install()
        results = {"sessions": SESSIONS, "setup_seconds": round(setup_seconds, 1)}
        for tick, run_tick in (("reconcile", upkeep.reconcile), ("cull", upkeep.cull_sessions)):
            begin = time.monotonic()
            outcome = run_tick()
            results[f"{tick}_seconds"] = round(time.monotonic() - begin, 3)
            results[f"{tick}_calls"] = calls.take()
            results[f"{tick}_result"] = str(outcome)
        assert Session.objects.active().count() == SESSIONS, "a tick ended live sessions"
        print(json.dumps(results))
    finally:
        with ThreadPoolExecutor(8) as pool_of_threads:
            list(pool_of_threads.map(lambda info: docker_backend.remove_container(info.backend_id), docker_backend.list_containers()))
        proxy.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
