"""Raw Docker: the machine's own rate of starting containers that answer,
with no service in between."""

import concurrent.futures
import functools
import secrets
import threading
import time

import requests

from deploy.benchmark import eventually
from deploy.benchmark.images import COMMANDS, CONTAINER_PORT, LABEL_BENCH, LABEL_INSTALLATION, MEM_LIMIT, docker_client, remove_labelled, remove_network

PORT_KEY = f"{CONTAINER_PORT}/tcp"


def raw_rate(image, n, *, docker_slots, threads, installation, own_network=False):
    """``docker create`` + ``start`` + polling until the server answers under
    its base path (a status below 400, the service's own test of readiness), for ``n`` containers of ``image``, with at most
    ``docker_slots`` Docker calls at once (as the service's
    TMPNB_MAX_DOCK_WORKERS) and ``threads`` containers in flight (as the
    service's Celery worker: 4 per slot). Containers carry the benchmark's
    installation label and are removed at the end.

    Each container publishes its port on loopback, on Docker's default
    bridge; with ``own_network``, it joins a bridge network made for the run
    and is polled at its address there, as the service's containers are
    (TMPNB_ROUTE_TO=container): Docker then starts its DNS server inside each."""
    client = docker_client()
    labels = {LABEL_INSTALLATION: installation, LABEL_BENCH: "raw"}
    network = client.networks.create(f"tmpnb-{installation}-raw", labels=labels).name if own_network else None
    one = functools.partial(
        start_answering, client, image, f"tmpnb-{installation}-raw-", labels=labels, network=network, slots=threading.BoundedSemaphore(docker_slots)
    )
    started = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as executor:
            answered = list(executor.map(lambda _: one(), range(n)))
        seconds = max(answered) - started
        return {
            "image": image,
            "containers": n,
            "own_network": own_network,
            "docker_slots": docker_slots,
            "threads": threads,
            "seconds": round(seconds, 3),
            "per_second": round(n / seconds, 2),
        }
    finally:
        remove_labelled(client, labels)
        if network:
            remove_network(client.networks.get(network))
        client.close()


def start_answering(client, image, prefix, *, labels, network, slots):
    """One container started (its Docker calls in one of the ``slots``) and
    polled until it answers; the time it did."""
    path_id = secrets.token_hex(6)
    base = f"/user/{path_id}/"
    command = COMMANDS[image].format(base_path=base, port=CONTAINER_PORT, ip="0.0.0.0", token=secrets.token_urlsafe(24))
    where = {"network": network} if network else {"ports": {PORT_KEY: ("127.0.0.1", None)}}
    with slots:
        container = client.containers.create(image, command, name=prefix + path_id, labels=labels, mem_limit=MEM_LIMIT, **where)
        container.start()
        container.reload()
    settings = container.attrs["NetworkSettings"]
    if network:
        url = f"http://{settings['Networks'][network]['IPAddress']}:{CONTAINER_PORT}{base}"
    else:
        url = f"http://127.0.0.1:{settings['Ports'][PORT_KEY][0]['HostPort']}{base}"
    with requests.Session() as http:
        http.trust_env = False  # the containers' addresses are this machine's
        if eventually(lambda: http.get(url, timeout=2, allow_redirects=False).status_code < 400, 120, interval=0.05):
            return time.time()
    raise TimeoutError(f"raw container of {image} did not answer within 120 s")
