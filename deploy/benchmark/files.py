"""Case files (issue 34): a broadcast and a collection in a live room.

N participants hold notebooks, each with WORK_MB of work written in it. Timed,
one after the other, through the organiser's commands: ``deploy/manage
broadcast`` of a BROADCAST_MB folder to all of them (handed out by the
worker), and ``deploy/manage collect_work`` of everyone's work into one zip.
Meanwhile a newcomer lands every LANDING_GAP seconds, and their landing times
are set beside the same without a copy running. The broadcast reaches every
live notebook, the spare ready ones too (a newcomer has it at once), and the
collection every held one, the newcomers' too. The tiny image: the copies
are the engine's archive API, the same whatever the notebook server, and a
hundred of them leave the machine to the copies.
"""

import concurrent.futures
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from deploy.benchmark import Case, log, print_table, spread
from deploy.benchmark.images import docker_client
from deploy.benchmark.visitors import visit, visitor_address
from tests.stack import ROOT, TINY_IMAGE, TINY_WORK_COMMAND

BROADCAST_MB = 5
WORK_MB = 20
LANDING_GAP = 1.0  # seconds between two newcomers while a copy runs
NEWCOMERS = 15  # at most, per phase: the pool keeps that many spare
OPERATIONS = ("quiet", "broadcast", "collect")
QUIET_SECONDS = 5


def write_work(service, megabytes):
    """WORK_MB of incompressible work in every held notebook's folder."""
    held = [backend_id for (backend_id,) in service.query("SELECT backend_id FROM pool_container WHERE state = 'assigned'")]
    client = docker_client()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as writers:
            script = f"head -c {megabytes * 1_000_000} /dev/urandom > /work/results.bin"
            list(writers.map(lambda backend_id: client.containers.get(backend_id).exec_run(["sh", "-c", script]), held))
    finally:
        client.close()
    return len(held)


def quiet():
    """No copy: the newcomers' landing times to set the others beside."""
    time.sleep(QUIET_SECONDS)
    return 0.0, ""


def manage(service, *command):
    started = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "deploy/manage"), *command], env=service.environment(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"deploy/manage {command[0]}: {done.stderr[-1500:]}")
    return time.perf_counter() - started, done.stdout.strip()


def land(service, i, bound):
    """Visitor ``i``, from an address of its own (the limits per address stay on)."""
    landing = visit(f"{service.url}/spawn/", threading.Barrier(1), image=TINY_IMAGE, bound=bound, address=visitor_address(i))
    return landing["seconds"] if landing["outcome"] == "served" else None


def landings_during(service, operation, bound, first):
    """Newcomers (visitors ``first``, ``first + 1``...) one every LANDING_GAP
    seconds while ``operation()`` runs, at least one and at most NEWCOMERS;
    returns its answer and their landing times (inf: not served)."""
    finished, answer, seconds = threading.Event(), {}, []

    def run():
        try:
            answer["value"] = operation()
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True).start()
    while len(seconds) < NEWCOMERS and (not seconds or not finished.is_set()):
        landed = land(service, first + len(seconds), bound)
        seconds.append(float("inf") if landed is None else landed)
        time.sleep(LANDING_GAP)
    finished.wait()
    return answer.get("value"), seconds


def files_in_a_room(service, n, bound, scratch):
    with concurrent.futures.ThreadPoolExecutor(min(n, 20)) as arrivals:
        landed = list(arrivals.map(lambda i: land(service, i, bound), range(n)))
    held = write_work(service, WORK_MB)
    folder = Path(scratch) / "handout"
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(BROADCAST_MB * 1_000_000))
    (folder / "exercise.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    zip_path = Path(scratch) / "work.zip"
    operations = {
        "quiet": quiet,
        "broadcast": lambda: manage(service, "broadcast", "default", str(folder)),
        "collect": lambda: manage(service, "collect_work", "default", "--out", str(zip_path)),
    }
    out = {"participants": n, "landed": sum(s is not None for s in landed), "with_work": held}
    for k, name in enumerate(OPERATIONS):
        (wall, said), seconds = landings_during(service, operations[name], bound, first=n + k * NEWCOMERS)
        out[name] = {"wall": round(wall, 2), "said": said, "landing": spread(seconds, "p50", "p99", "max"), "newcomers": len(seconds)}
        log(f"case files, {n}: {name} {out[name]}")
    out["zip_mb"] = round(zip_path.stat().st_size / 1e6, 1) if zip_path.exists() else None
    return out


def case_files(bench):
    out = {"sizes": {}}
    for n in bench.args.files_sizes:
        spare = 3 * NEWCOMERS
        with bench.service(image=TINY_IMAGE, command=TINY_WORK_COMMAND, pool_size=n + spare, ready_target=n + spare, name=f"files-{n}") as service:
            service.wait_ready(n + spare, live=n + spare)
            with tempfile.TemporaryDirectory(prefix="tmpnb-bench-files-") as scratch:
                out["sizes"][str(n)] = files_in_a_room(service, n, bench.args.bound, scratch)
    return out


def show(result, out):
    print(f"\nfiles: a {BROADCAST_MB} MB broadcast, then a collection of {WORK_MB} MB each, in a room of N; newcomers land meanwhile (seconds)", file=out)
    header = f"{'N':>4} {'operation':<10} {'wall':>7} {'newcomers':>9} {'landing p50/p99/max':>22}  what the command said"
    print_table(header, [], out)
    for n, r in result["sizes"].items():
        for name in OPERATIONS:
            o = r[name]
            landing = "/".join("-" if o["landing"][q] is None else f"{o['landing'][q]:.2f}" for q in ("p50", "p99", "max"))
            wall = f"{o['wall']:.2f}" if name != "quiet" else "-"
            print(f"{n:>4} {name:<10} {wall:>7} {o['newcomers']:>9} {landing:>22}  {o['said'][:90]}", file=out)
        print(f"       {r['landed']} landed, {r['with_work']} with work, zip {r['zip_mb']} MB", file=out)


CASE = Case(run=case_files, show=show, title="files", images=lambda args: [TINY_IMAGE], named_only=True)
