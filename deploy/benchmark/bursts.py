"""Cases a, b and c: a burst of new visitors, all at once, each timed from
its first request to its own notebook page through the proxy; next to its
floors, the same visitors with less and less of the service behind them."""

import functools

from deploy.benchmark import Case, fmt, log, print_table
from deploy.benchmark.images import JUPYTER_IMAGE, TINY_IMAGE
from deploy.benchmark.machine import cpu_used
from deploy.benchmark.steps import landing_replay, steps_upstream
from deploy.benchmark.visitors import burst, to_floor

# Targets of issues 6 and 11 (2-core machine).
A_P50, A_MAX, A_FLOOR_FACTOR = 0.10, 0.175, 2.0
B_P50, B_P99 = 1.0, 1.5
C_LAST_FACTOR = 1.2

TITLE = "\nburst (seconds from a visitor's first request to its own notebook page, through the proxy)"
HEADER = (
    f"{'case':<4} {'image':<22} {'pool':>4} {'ready':>5} {'N':>4} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"
    f" {'served':>6} {'waited':>6} {'away':>5} {'refused':>7} {'failed':>6} {'dup':>4}"
)
# Each burst's floors: result key, what it is.
FLOORS = (
    ("floor", "floor (the same visitors straight through the proxy)"),
    ("steps_floor", "floor with the landing's steps (the cookie step and the redirect answered by an asyncio upstream that does no work)"),
    ("server_floor", "the same steps answered in gunicorn, as the service runs it, by a WSGI application that does no work"),
)
# The burst's p50, layer by layer: (result key of the layer's top, what the layer is).
LAYERS = (
    ("floor", "one request each through the proxy"),
    ("steps_floor", "two more steps through the proxy and the visitors' client"),
    ("server_floor", "gunicorn"),
    (None, "Django and the admission"),
)


def burst_case(bench, name, *, image, pool_size, ready_target, visitors):
    with bench.service(image=image, pool_size=pool_size, ready_target=ready_target, name=name) as service:
        service.wait_ready(ready_target, live=ready_target)
        prefill = service.refill_rate()
        log(f"case {name}: {visitors} visitors at once")
        with cpu_used(service) as used:
            started, summary, landed = burst(
                [f"{service.url}/spawn/"] * visitors, image=image, bound=bench.args.bound, retry_interval=bench.args.retry_interval
            )
        summary["burst_cpu_seconds"], summary["burst_machine_busy"] = used["seconds"], used["busy"]
        summary["prefill"] = prefill
        summary["pool_size"], summary["ready_target"], summary["image"] = pool_size, ready_target, image
        summary["retry_interval"] = bench.args.retry_interval
        summary["bound"] = bench.args.bound
        # Cross-check with the service's record: one session per served visitor.
        sessions = service.query("SELECT COUNT(*), COUNT(DISTINCT container_id), COUNT(DISTINCT client_ip) FROM pool_session WHERE ended_at IS NULL")[0]
        summary["sessions"], summary["session_containers"], summary["session_addresses"] = sessions
        if pool_size > ready_target:
            summary["under_load"] = under_load(service, pool_size, started)
        summary["floor"] = floor(bench, landed, image, service)
        summary["to_floor"] = to_floor(summary, summary["floor"])
        replay = landing_replay(f"{service.url}/spawn/")
        for key, upstream in (("steps_floor", "asyncio"), ("server_floor", "gunicorn")):
            summary[key] = steps_floor(bench, landed, image, service, upstream, replay)
            summary[f"to_{key}"] = to_floor(summary, summary[key])
    summary["stop_seconds"] = getattr(service, "stop_seconds", None)
    summary["removed_after_stop"] = getattr(service, "removed_after_stop", None)
    summary["leftovers"] = service.leftovers
    return summary


def under_load(service, pool_size, started):
    """The containers started under load, after the burst began: their rate
    and each one's creation, readiness and assignment."""
    service.wait_ready(0, live=pool_size, timeout=120)
    rate = service.refill_rate(since=started, start=started)

    def since_start(at):
        return round(at - started, 3) if at else None

    rows = sorted(service.rows(since=started), key=lambda row: row["created"])
    rate["timeline"] = [[round(row["created"] - started, 3), since_start(row["ready"]), since_start(row["assigned"])] for row in rows]
    return rate


def floor_summary(floor, used):
    floor = {key: floor[key] for key in ("visitors", "served", "failed", "p50", "p90", "p99", "max", "errors")}
    floor["cpu_seconds"], floor["machine_busy"] = used["seconds"], used["busy"]
    return floor


def floor(bench, landed, image, service):
    """The same burst without the service: each visitor straight to the page
    a visitor of the burst landed on, through the proxy, on a container
    already routed and warm."""
    log(f"floor: {len(landed)} visitors straight to the notebook pages")
    with cpu_used(service) as used:
        _, figures, _ = burst(landed, image=image, bound=bench.args.bound)
    return floor_summary(figures, used)


def steps_floor(bench, landed, image, service, upstream, replay):
    """The same visitors through the landing page's three steps, the first
    two answered by an ``upstream`` that does no work, with the service's
    cookie-step answer ``replay`` (deploy/benchmark/steps.py): asyncio,
    what any service with the cookie step would cost on this machine;
    gunicorn, what the service's server costs without Django."""
    log(f"floor with the landing's steps: {len(landed)} visitors, three requests each, a {upstream} upstream that does no work")
    with steps_upstream(upstream, landed, replay, service.proxy_api) as (pids, paths):
        with cpu_used(service, upstream=pids) as used:
            _, figures, _ = burst([service.url + path for path in paths], image=image, bound=bench.args.bound)
    return floor_summary(figures, used)


def case_a(bench):
    n = bench.args.visitors or 50
    return burst_case(bench, "a", image=TINY_IMAGE, pool_size=n, ready_target=n, visitors=n)


def case_b(bench):
    n = bench.args.visitors or 100
    return burst_case(bench, "b", image=JUPYTER_IMAGE, pool_size=n, ready_target=n, visitors=n)


def case_c(bench):
    n = bench.args.visitors or 50
    ready = max(1, round(0.4 * n))  # 20 of 50
    result = burst_case(bench, "c", image=TINY_IMAGE, pool_size=n, ready_target=ready, visitors=n)
    raw = bench.raw_for(TINY_IMAGE, bench.args.refill_n)
    extra = n - ready
    result["raw_per_second"] = raw["per_second"]
    result["raw_seconds_for_extra"] = round(extra / raw["per_second"], 3)
    result["bound_last"] = round(C_LAST_FACTOR * extra / raw["per_second"], 3)
    # The target's yardstick is raw Docker on its default bridge; the
    # service's containers join a network of their own (the network guard's),
    # where Docker's start does more: the same run that way shows how much.
    if result.get("max"):
        own = bench.raw_for(TINY_IMAGE, bench.args.refill_n, own_network=True)
        result["raw_own_network_per_second"] = own["per_second"]
        result["last_to_raw_own_network"] = round(result["max"] / (extra / own["per_second"]), 2)
    return result


def print_bursts(cases, out):
    """The bursts' table, a row for each that ran (a failed one's error in its row)."""
    bursts = [(name, cases[name]) for name in CASES if name in cases]
    if bursts:
        print(TITLE, file=out)
        print_table(HEADER, [burst_line(name, r) for name, r in bursts], out)


def burst_line(name, r):
    if "error" in r:
        return f"{name:<4} error: {r['error'][:150]}"

    def s(v):
        return "-" if v is None else f"{v:.3f}"

    return (
        f"{name:<4} {r['image']:<22} {r['pool_size']:>4} {r['ready_target']:>5} {r['visitors']:>4} {s(r['p50']):>7} {s(r['p90']):>7} "
        f"{s(r['p99']):>7} {s(r['max']):>7} {r['served']:>6} {r['waited']:>6} {r['turned_away']:>5} {r.get('refused', 0):>7} {r['failed']:>6} {r['duplicates']:>4}"
    )


def print_burst(name, r, out):
    """What a burst's row in the table does not hold."""
    extra = f"; redirect from Django p50 {fmt(r['redirect_p50'])}, max {fmt(r['redirect_max'])}"
    if r.get("burst_cpu_seconds"):
        extra += (
            f"; CPU s in the burst {r['burst_cpu_seconds']}, cores busy {r['burst_machine_busy']:.0%}"
            f" (before the case: {fmt(r.get('machine_busy_before'), '')})"
        )
    if r.get("under_load"):
        u = r["under_load"]
        extra += f"; started under load: {u['containers']} in {u['seconds']} s ({u['per_second']}/s)"
    print(f"  {name}: prefill {r['prefill']['containers']} ready in {r['prefill']['seconds']} s ({r['prefill']['per_second']}/s){extra}", file=out)
    print_floors(name, r, out)
    if layers := p50_layers(r):
        print(f"  {name}: where the p50 goes (each floor's p50 less the one before; runs differ by their noise): {layers}", file=out)
    if r.get("raw_own_network_per_second"):
        extra_n = r["visitors"] - r["ready_target"]
        print(
            f"  {name}: raw Docker for the {extra_n} extra: {r['raw_seconds_for_extra']} s on the default bridge ({r['raw_per_second']}/s,"
            f" the target's yardstick), {round(extra_n / r['raw_own_network_per_second'], 3)} s on a network of their own"
            f" ({r['raw_own_network_per_second']}/s, as the service's); the last served is {round(r['max'] / r['raw_seconds_for_extra'], 2)}"
            f" x the first, {r['last_to_raw_own_network']} x the second",
            file=out,
        )
    if r["errors"]:
        print(f"  {name}: errors: {r['errors'][:3]}", file=out)


def print_floors(name, r, out):
    for key, what in FLOORS:
        if floor := r.get(key):
            ratio = r[f"to_{key}"]
            print(
                f"  {name}: {what}: p50 {fmt(floor['p50'])}, p90 {fmt(floor['p90'])},"
                f" p99 {fmt(floor['p99'])}, max {fmt(floor['max'])}, {floor['served']}/{floor['visitors']} served;"
                f" the case as a multiple of it: p50 {ratio['p50']}, p90 {ratio['p90']}, p99 {ratio['p99']}, max {ratio['max']}",
                file=out,
            )
            if floor.get("cpu_seconds"):
                print(f"  {name}: CPU s in that burst {floor['cpu_seconds']}, cores busy {floor['machine_busy']:.0%}", file=out)


def p50_layers(result):
    """The case's p50 split by its floors, as text; None without all floors,
    or when visitors waited (case c: the wait for Docker is no layer)."""
    tops = [result.get(key, {}).get("p50") if key else result.get("p50") for key, _ in LAYERS]
    if None in tops or result.get("waited"):
        return None
    below = [0.0, *tops[:-1]]
    return ", ".join(f"{what} {top - under:+.3f} s" for (_, what), top, under in zip(LAYERS, tops, below, strict=True))


def at_most(figures, key, bound):
    return figures[key] is not None and figures[key] <= bound


def targets_a(a):
    if "p50" not in a:
        return []
    ratio = a.get("to_floor", {}).get("p50")
    return [
        (f"p50 <= {A_P50} s", fmt(a["p50"]), at_most(a, "p50", A_P50)),
        (f"max <= {A_MAX} s", fmt(a["max"]), at_most(a, "max", A_MAX)),
        (
            f"p50 <= {A_FLOOR_FACTOR} x the floor's p50 ({fmt(a.get('floor', {}).get('p50'))})",
            "-" if ratio is None else f"{ratio} x",
            None if ratio is None else ratio <= A_FLOOR_FACTOR,
        ),
        (
            "no failure, no duplicate",
            f"{a['served']}/{a['visitors']} served, {a['failed']} failed, {a['turned_away']} turned away, {a['refused']} refused, {a['duplicates']} duplicates",
            a["served"] == a["visitors"] and a["duplicates"] == 0,
        ),
    ]


def targets_b(b):
    if "p50" not in b:
        return []
    return [(f"p50 <= {B_P50} s", fmt(b["p50"]), at_most(b, "p50", B_P50)), (f"p99 <= {B_P99} s", fmt(b["p99"]), at_most(b, "p99", B_P99))]


def targets_c(c):
    if "served" not in c or c["visitors"] <= c["ready_target"]:
        return []
    return [
        (
            "all served, none turned away",
            f"{c['served']}/{c['visitors']} served, {c['turned_away']} turned away, {c['refused']} refused, {c['failed']} failed",
            c["served"] == c["visitors"] and c["turned_away"] == 0,
        ),
        (
            f"last served <= {C_LAST_FACTOR} x raw time for {c['visitors'] - c['ready_target']} extra ({fmt(c['bound_last'])})",
            fmt(c["max"]),
            at_most(c, "max", c["bound_last"]),
        ),
    ]


CASES = {
    "a": Case(run=case_a, show=functools.partial(print_burst, "a"), title=None, targets=targets_a, images=lambda args: [TINY_IMAGE]),
    "b": Case(run=case_b, show=functools.partial(print_burst, "b"), title=None, targets=targets_b, images=lambda args: [JUPYTER_IMAGE]),
    "c": Case(run=case_c, show=functools.partial(print_burst, "c"), title=None, targets=targets_c, images=lambda args: [TINY_IMAGE]),
}
