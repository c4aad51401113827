"""Case route: the proxy's hop to a container both ways, on the same
containers in alternating bursts."""

import statistics
from urllib.parse import urlsplit

from deploy.benchmark import Case, fmt, log
from deploy.benchmark.images import CONTAINER_PORT, TINY_IMAGE
from deploy.benchmark.visitors import burst

# The proxy's routing key of its notebook port (pool/origins.py), before a notebook's /user/<id>/ path.
NOTEBOOK_ROUTES = "/@notebooks"
ROUNDS = 5
TITLE = "\nroute (the floor's burst both ways, median of 5 alternating rounds on the same containers)"
WAYS = (("published", "published loopback port"), ("container", "container's address"))


def case_route(bench):
    """To the port published on loopback (the service started with
    TMPNB_ROUTE_TO=published; Docker's userland docker-proxy carries it) and
    to the container's own address on the bridge (a more specific route,
    /user/<id>/<landing>, added for those rounds: the service's reconcile
    ignores routes without its marker; on the notebook port's key,
    NOTEBOOK_ROUTES)."""
    n = bench.args.visitors or 50
    with bench.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="route", env={"TMPNB_ROUTE_TO": "published"}) as service:
        service.wait_ready(n)
        _, _, landed = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=bench.args.bound)
        bridge = service.bridge_addresses()
        pages = [urlsplit(url).path for url in landed]
        out, routed = {"published": [], "container": []}, False
        for i in range(ROUNDS):
            for way in ("published", "container") if i % 2 == 0 else ("container", "published"):
                if (way == "container") != routed:
                    route_pages(service, pages, bridge, to_container=way == "container")
                routed = way == "container"
                log(f"route: round {i + 1}, {way}")
                _, summary, _ = burst(landed, image=TINY_IMAGE, bound=bench.args.bound)
                out[way].append({key: summary[key] for key in ("served", "p50", "p90", "max")})
    result = {"visitors": n, "rounds": ROUNDS, "leftovers": service.leftovers}
    for way, runs in out.items():
        result[way] = {key: statistics.median(run[key] for run in runs if run[key] is not None) for key in ("p50", "p90", "max")}
        result[way]["runs"] = runs
    return result


def route_pages(service, pages, bridge, *, to_container):
    """Each page to its container's address on the bridge, or back to the
    service's own route (the published port)."""
    for page in pages:
        if to_container:
            service.proxy_api("POST", NOTEBOOK_ROUTES + page, json={"target": f"http://{bridge[page.split('/')[2]]}:{CONTAINER_PORT}"})
        else:
            service.proxy_api("DELETE", NOTEBOOK_ROUTES + page)


def show(route, out):
    print(TITLE, file=out)
    for way, meaning in WAYS:
        r = route[way]
        print(f"  {meaning:<24} p50 {fmt(r['p50'])}, p90 {fmt(r['p90'])}, max {fmt(r['max'])}", file=out)


CASE = Case(run=case_route, show=show, title=TITLE.strip(), images=lambda args: [TINY_IMAGE])
