"""Cases cpu and footprint: what the service's processes cost, in CPU time
per admission and in memory."""

import time

from deploy.benchmark import Case, fmt, log, print_table
from deploy.benchmark.images import TINY_IMAGE
from deploy.benchmark.machine import memory, process_cpu_seconds
from deploy.benchmark.visitors import burst, one_after_another

CPU_MS = 3.0  # target of issue 11: the web process's CPU per admission
FOOTPRINT_MIB, FOOTPRINT_READY = 250, 20  # target of issue 6: web+worker+beat+proxy RSS with 20 ready
FOOTPRINT_TITLE = "\nfootprint (MiB, each process tree; PSS counts shared pages once)"
ROLES = ("web", "worker", "beat", "proxy", "service", "redis")


def case_cpu(bench):
    """The web process's CPU time (gunicorn master and workers) per
    admission, with visitors arriving one after another."""
    n = bench.args.cpu_visitors
    with bench.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="cpu") as service:
        service.wait_ready(n)
        web = service.processes()["web"]
        log(f"cpu: {n} visitors one after another")
        before = process_cpu_seconds(web)
        summary = one_after_another(f"{service.url}/spawn/", n, image=TINY_IMAGE, bound=bench.args.bound)
        cpu = process_cpu_seconds(web) - before
    served = summary["served"]
    return {
        "visitors": n,
        "served": served,
        "web_cpu_seconds": round(cpu, 3),
        "ms_per_admission": round(1000 * cpu / served, 1) if served else None,
        "p50": summary["p50"],
        "max": summary["max"],
        "errors": summary["errors"],
        "leftovers": service.leftovers,
    }


def show_cpu(cpu, out):
    print(
        f"\ncpu: {cpu['served']}/{cpu['visitors']} visitors one after another: web CPU {cpu['web_cpu_seconds']} s,"
        f" {fmt(cpu['ms_per_admission'], 'ms')} per admission; each served in p50 {fmt(cpu['p50'])}, max {fmt(cpu['max'])}",
        file=out,
    )


def targets_cpu(cpu):
    if "ms_per_admission" not in cpu:
        return []
    ms = cpu["ms_per_admission"]
    return [(f"web CPU per admission <= {CPU_MS} ms", fmt(ms, "ms"), ms is not None and ms <= CPU_MS)]


def case_footprint(bench):
    n = FOOTPRINT_READY
    with bench.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="footprint") as service:
        service.wait_ready(n)
        idle = memory(service)
        log(f"footprint: {n} visitors take the ready containers")
        _, summary, _ = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=bench.args.bound, retry_interval=bench.args.retry_interval)
        time.sleep(2 * bench.args.heartbeat)
        in_use = memory(service)
        counts = service.counts()
    return {"ready_idle": idle, "in_use": in_use, "served": summary["served"], "counts_in_use": counts, "leftovers": service.leftovers}


def show_footprint(footprint, out):
    print(FOOTPRINT_TITLE, file=out)
    idle, busy = footprint["ready_idle"], footprint["in_use"]
    print_table(
        f"{'process':<10} {'procs':>5} {'RSS ready':>10} {'PSS ready':>10} {'RSS in use':>11} {'PSS in use':>11}",
        [
            f"{'= 4 above' if role == 'service' else role:<10} {idle[role]['processes']:>5} {idle[role]['rss_mib']:>10} {idle[role]['pss_mib']:>10}"
            f" {busy[role]['rss_mib']:>11} {busy[role]['pss_mib']:>11}"
            for role in ROLES
            if role in idle
        ],
        out,
    )


def targets_footprint(footprint):
    if "ready_idle" not in footprint:
        return []
    total = footprint["ready_idle"]["service"]["rss_mib"]
    return [(f"web+worker+beat+proxy RSS <= {FOOTPRINT_MIB} MiB, {FOOTPRINT_READY} ready", f"{total} MiB", total <= FOOTPRINT_MIB)]


CPU = Case(run=case_cpu, show=show_cpu, title="cpu", targets=targets_cpu, images=lambda args: [TINY_IMAGE])
FOOTPRINT = Case(run=case_footprint, show=show_footprint, title=FOOTPRINT_TITLE.strip(), targets=targets_footprint, images=lambda args: [TINY_IMAGE])
