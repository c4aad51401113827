"""Raw Docker: the machine's own rate of starting containers that answer,
with no service in between."""

import concurrent.futures
import secrets
import threading
import time

import requests

from deploy.benchmark.images import COMMANDS, CONTAINER_PORT, LABEL_BENCH, LABEL_INSTALLATION, MEM_LIMIT, docker_client, remove_labelled, remove_network


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
    slots = threading.BoundedSemaphore(docker_slots)
    labels = {LABEL_INSTALLATION: installation, LABEL_BENCH: "raw"}
    port_key = f"{CONTAINER_PORT}/tcp"
    network = client.networks.create(f"tmpnb-{installation}-raw", labels=labels).name if own_network else None
    where = {"network": network} if network else {"ports": {port_key: ("127.0.0.1", None)}}

    def address(container, base):
        if network:
            return f"http://{container.attrs['NetworkSettings']['Networks'][network]['IPAddress']}:{CONTAINER_PORT}{base}"
        return f"http://127.0.0.1:{container.attrs['NetworkSettings']['Ports'][port_key][0]['HostPort']}{base}"

    def one(i):
        path_id = secrets.token_hex(6)
        base = f"/user/{path_id}/"
        command = COMMANDS[image].format(base_path=base, port=CONTAINER_PORT, ip="0.0.0.0", token=secrets.token_urlsafe(24))
        with slots:
            container = client.containers.create(
                image,
                command,
                name=f"tmpnb-{installation}-raw-{path_id}",
                labels=labels,
                mem_limit=MEM_LIMIT,
                **where,
            )
            container.start()
            container.reload()
        url = address(container, base)
        deadline = time.monotonic() + 120
        with requests.Session() as http:
            http.trust_env = False  # the containers' addresses are this machine's
            while time.monotonic() < deadline:
                try:
                    if http.get(url, timeout=2, allow_redirects=False).status_code < 400:
                        return time.time()
                except requests.RequestException:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"raw container of {image} did not answer within 120 s")

    started = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as executor:
            answered = list(executor.map(one, range(n)))
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
        remove_labelled(client, {LABEL_INSTALLATION: installation, LABEL_BENCH: "raw"})
        if network:
            remove_network(client.networks.get(network))
        client.close()
