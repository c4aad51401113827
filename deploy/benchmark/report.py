"""The results as tables, with each target met or missed."""

import sys

from deploy.benchmark.cases import fmt
from deploy.benchmark.room import print_room
from deploy.benchmark.soak import print_soak

# Each burst's floors (deploy/benchmark/cases.py): result key, what it is.
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


def p50_layers(result):
    """The case's p50 split by its floors, as text; None without all floors,
    or when visitors waited (case c: the wait for Docker is no layer)."""
    tops = [result.get(key, {}).get("p50") if key else result.get("p50") for key, _ in LAYERS]
    if None in tops or result.get("waited"):
        return None
    below = [0.0, *tops[:-1]]
    return ", ".join(f"{what} {top - under:+.3f} s" for (_, what), top, under in zip(LAYERS, tops, below, strict=True))


def print_report(results):
    out = sys.stdout
    machine_info = results["machine"]
    print(
        f"\nmachine: {machine_info['nproc']} cores {machine_info['cpu']}, {machine_info['memory_gib']} GiB, "
        f"Docker {machine_info['docker']}, kernel {machine_info['kernel']}",
        file=out,
    )
    cases = results["cases"]
    bursts = [(name, cases[name]) for name in ("a", "b", "c") if name in cases]
    if bursts:
        print("\nburst (seconds from a visitor's first request to its own notebook page, through the proxy)", file=out)
        print_table(
            f"{'case':<4} {'image':<22} {'pool':>4} {'ready':>5} {'N':>4} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'served':>6} {'waited':>6} {'away':>5} {'refused':>7} {'failed':>6} {'dup':>4}",
            [burst_line(name, r) for name, r in bursts],
            out,
        )
        for name, r in bursts:
            if "error" in r:
                continue
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
    if route := section(cases, "route", "\nroute (the floor's burst both ways, median of 5 alternating rounds on the same containers)", out):
        for way, meaning in (("published", "published loopback port"), ("container", "container's address")):
            r = route[way]
            print(f"  {meaning:<24} p50 {fmt(r['p50'])}, p90 {fmt(r['p90'])}, max {fmt(r['max'])}", file=out)
    cpu = cases.get("cpu")
    if cpu:
        if "error" in cpu:
            print(f"\ncpu: error: {cpu['error'][:300]}", file=out)
        else:
            print(
                f"\ncpu: {cpu['served']}/{cpu['visitors']} visitors one after another: web CPU {cpu['web_cpu_seconds']} s,"
                f" {fmt(cpu['ms_per_admission'], 'ms')} per admission; each served in p50 {fmt(cpu['p50'])}, max {fmt(cpu['max'])}",
                file=out,
            )
    if counted := section(cases, "instructions", "\ninstructions (admissions in one process, no HTTP: deploy/benchmark/admissions.py)", out):
        print(
            f"  CPU per admission: {fmt(counted['cpu_ms_back_to_back'], 'ms')} back to back,"
            f" {fmt(counted['cpu_ms_with_pause'], 'ms')} with {counted['pause_seconds']} s between visitors,"
            f" {fmt(counted.get('cpu_ms_with_history'), 'ms')} back to back after {counted.get('history_visitors')} past visitors ({counted['timed_visitors']} each);"
            f" instructions per admission (valgrind, {counted['counted_visitors']} visitors): {counted['instructions_per_admission'] / 1e6:.2f} million",
            file=out,
        )
    if refill := section(cases, "refill", "\nrefill (containers made ready per second)", out):
        print_table(
            f"{'image':<8} {'n':>3} {'raw/s':>7} {'prefill/s':>10} {'ratio':>6} {'refill/s':>9} {'ratio':>6}",
            [
                f"{kind:<8} {r['raw']['containers']:>3} {r['raw']['per_second']:>7} {r['prefill']['per_second']:>10} {r['ratio_prefill']:>6} "
                f"{r['refill']['per_second']:>9} {r['ratio_refill']:>6}   raw runs {r['raw'].get('runs_per_second')}"
                for kind, r in refill.items()
                if isinstance(r, dict) and "raw" in r
            ],
            out,
        )
        print(
            f"  raw: docker create + start + poll until it answers, {refill_slots(refill)}, mean of 2 runs;"
            f" service: the same TMPNB_MAX_DOCK_WORKERS; prefill = pool filled at start-up,"
            f" refill = the same number started after visitors took every ready one",
            file=out,
        )
    if footprint := section(cases, "footprint", "\nfootprint (MiB, each process tree; PSS counts shared pages once)", out):
        idle, busy = footprint["ready_idle"], footprint["in_use"]
        print_table(
            f"{'process':<10} {'procs':>5} {'RSS ready':>10} {'PSS ready':>10} {'RSS in use':>11} {'PSS in use':>11}",
            [
                f"{'= 4 above' if role == 'service' else role:<10} {idle[role]['processes']:>5} {idle[role]['rss_mib']:>10} {idle[role]['pss_mib']:>10}"
                f" {busy[role]['rss_mib']:>11} {busy[role]['pss_mib']:>11}"
                for role in ("web", "worker", "beat", "proxy", "service", "redis")
                if role in idle
            ],
            out,
        )
    if "sweep" in cases:
        sweep_ = cases["sweep"]
        print(f"\nsweep with {sweep_['sessions']} live sessions (set up in {sweep_['setup_seconds']} s)", file=out)
        for tick in ("reconcile", "cull"):
            calls = sweep_[f"{tick}_calls"]
            print(
                f"  {tick:<9} {sweep_[f'{tick}_seconds']:.3f} s   Docker calls {calls['docker']} (lists {calls['docker_list']})"
                f"   proxy calls {calls['proxy']} (lists {calls['proxy_list']})",
                file=out,
            )
    if cases.get("room") and "error" not in cases["room"]:
        print_room(cases["room"], out)
    if soak := section(cases, "soak", "\nsoak (deploy/benchmark/soak.py; sessions lost and work lost must be 0)", out):
        print_soak(soak, out)
    print("\ntargets (issues 6 and 11)", file=out)
    for t in results["targets"]:
        print(f"  [{t['status']:>12}] {t['case']:<9} {t['target']:<62} {t['figure']}", file=out)


def section(cases, name, title, out):
    """A case's result, once its title is printed; None when the case did not
    run, or failed (its error printed instead)."""
    result = cases.get(name)
    if not result:
        return None
    print(title, file=out)
    if "error" in result:
        print(f"  error: {result['error'][:300]}", file=out)
        return None
    return result


def print_table(header, lines, out):
    print(header, file=out)
    print("-" * len(header), file=out)
    for line in lines:
        print(line, file=out)


def burst_line(name, r):
    if "error" in r:
        return f"{name:<4} error: {r['error'][:150]}"

    def s(v):
        return "-" if v is None else f"{v:.3f}"

    return (
        f"{name:<4} {r['image']:<22} {r['pool_size']:>4} {r['ready_target']:>5} {r['visitors']:>4} {s(r['p50']):>7} {s(r['p90']):>7} "
        f"{s(r['p99']):>7} {s(r['max']):>7} {r['served']:>6} {r['waited']:>6} {r['turned_away']:>5} {r.get('refused', 0):>7} {r['failed']:>6} {r['duplicates']:>4}"
    )


def refill_slots(refill):
    for r in refill.values():
        if isinstance(r, dict) and "raw" in r:
            return f"{r['raw']['docker_slots']} Docker calls at once, {r['raw']['threads']} in flight"
    return ""
