"""This machine: what it is, how busy its cores are, and what a process
tree costs in CPU time and memory."""

import contextlib
import os
import platform
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from deploy.benchmark import log
from deploy.benchmark.images import LABEL_INSTALLATION, docker_client
from tests.stack import ROOT


def mib(kib):
    return round(kib / 1024, 1)


def cpu_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def machine_busy(seconds=1.0):
    """Share of all cores busy over ``seconds`` (0..1)."""
    busy0, total0 = cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = cpu_ticks()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_quiet(limit, threshold=0.25):
    """Wait up to ``limit`` seconds until other work on the machine leaves the
    cores mostly idle; returns the share busy last seen."""
    deadline = time.monotonic() + limit
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    if busy > threshold:
        log(f"the machine is busy with other work ({busy:.0%} of the cores): figures will be slower than on a quiet machine")
    return round(busy, 2)


def process_cpu_seconds(pids):
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / hz


def service_cpu_seconds(service):
    """CPU seconds used so far by all of the service's processes."""
    return sum(process_cpu_seconds(pids) for pids in service.processes().values())


def container_cpu_seconds(installation):
    """CPU seconds used so far by the service's containers, from their cgroups (v1 or v2)."""
    client = docker_client()
    try:
        ids = [c.id for c in client.containers.list(filters={"label": f"{LABEL_INSTALLATION}={installation}"})]
    finally:
        client.close()
    total = 0.0
    for cid in ids:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat")
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            total += int(v2.read_text().split()[1]) / 1e6  # usage_usec
    return total


def container_cores(backend_id, seconds=5.0):
    """The cores a container may use (its CPU quota) and used over ``seconds``
    (less than allowed when the machine's other work takes the cores)."""
    client = docker_client()
    try:
        host = client.api.inspect_container(backend_id)["HostConfig"]
        allowed = round(host["CpuQuota"] / (host["CpuPeriod"] or 100_000), 2) if host["CpuQuota"] else None

        def used():
            return client.api.stats(backend_id, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"], time.monotonic()

        before, started = used()
        time.sleep(seconds)
        after, ended = used()
        return {"cores_allowed": allowed, "cores_used": round((after - before) / 1e9 / (ended - started), 2)}
    finally:
        client.close()


@contextlib.contextmanager
def cpu_used(service, **more_roles):
    """CPU seconds each of the service's roles (and ``more_roles``: name ->
    pids) used in the block, and how busy the machine's cores were. The
    visitors are this process's threads: on one machine they take the same
    cores as the service, so their share is shown too."""
    roles = {**service.processes(), "visitors": [os.getpid()], **more_roles}
    before = {role: process_cpu_seconds(pids) for role, pids in roles.items()}
    machine_before = cpu_ticks()
    used = {}
    yield used
    machine_after = cpu_ticks()
    used["seconds"] = {role: round(process_cpu_seconds(pids) - before[role], 2) for role, pids in roles.items()}
    used["busy"] = round((machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1), 2)


def memory(service):
    """RSS and PSS (kB from /proc) of each role's process tree, in MiB."""
    out = {}
    for role, pids in sorted(service.processes().items()):
        rss = pss = 0
        each = []
        for pid in pids:
            try:
                status = (Path("/proc") / str(pid) / "status").read_text()
                one_rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
                rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
                one_pss = int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
                name = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
            except (OSError, AttributeError):
                continue
            rss, pss = rss + one_rss, pss + one_pss
            each.append({"pid": pid, "rss_mib": mib(one_rss), "pss_mib": mib(one_pss), "cmdline": name})
        out[role] = {"processes": len(each), "rss_mib": mib(rss), "pss_mib": mib(pss), "each": each}
    four = [out[role] for role in ("web", "worker", "beat", "proxy") if role in out]
    out["service"] = {
        "processes": sum(r["processes"] for r in four),
        "rss_mib": round(sum(r["rss_mib"] for r in four), 1),
        "pss_mib": round(sum(r["pss_mib"] for r in four), 1),
    }
    return out


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    try:
        client = docker_client()
        version = client.version()
        client.close()
        docker_version = f"{version['Version']} (API {version['ApiVersion']})"
    except Exception as error:
        docker_version = f"? ({error})"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        node = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
        code = f"{commit}" + (f" + {len(dirty)} uncommitted changes" if dirty else "")
    except OSError:
        code = "?"
    return {
        "code": code,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "docker": docker_version,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
