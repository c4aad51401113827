"""The fill rate with workshop materials next to without (issues 15 and 36).

Starts notebooks the way a spawn does (the backend's start_container, then,
with materials, notebook_user + pack_for_user + copy_in before the landing
page is polled until it answers 200) and times each until it answers, and a
batch of them started side by side as the worker does (TMPNB_MAX_DOCK_WORKERS
slots), kept until the whole batch is ready. With --swarm, on a three-node
Swarm of network namespaces (tests/swarm.py, the tests' lab) with the tiny
image: the materials reach each node through its own engine. Runs with and without materials alternate,
as the machine is shared and its load drifts. Not measured: the database
and the proxy's route, the same with or without materials. Figures only;
docs/performance.md and the closing note hold the results.

Run with the project's venv, as root:
    .venv/bin/python -m deploy.benchmark.materials [--image IMAGE] [--rounds 3] [--batch 4] [--megabytes 5]
    .venv/bin/python -m deploy.benchmark.materials --swarm [--batch 30]
The tiny image (--image tmpnb/tiny:latest) shows the copy's own cost, as it
boots in a fraction of a second.
"""

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

# The backends read Django's settings: this run's own, before they are imported.
SCRATCH = tempfile.TemporaryDirectory(prefix="tmpnb-bench-materials-")
os.environ.update(
    DJANGO_SETTINGS_MODULE="tmpnb_site.settings",
    DJANGO_DEBUG="true",
    TMPNB_VAR_DIR=SCRATCH.name,
    TMPNB_INSTALLATION=f"benchmat{secrets.token_hex(3)}",
    TMPNB_ROUTE_TO="published",
)
import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

django.setup()
from deploy.benchmark import eventually  # noqa: E402
from deploy.benchmark.images import COMMANDS, JUPYTER_IMAGE, LANDINGS  # noqa: E402
from pool import materials_files  # noqa: E402
from pool.backends import get_backend  # noqa: E402
from pool.backends.base import ContainerSpec  # noqa: E402
from pool.command import render_command  # noqa: E402
from tests.stack import TINY_IMAGE  # noqa: E402


def make_materials(folder, megabytes):
    """A workshop: ten notebooks, a README and one data file of ``megabytes``."""
    folder.mkdir()
    for i in range(10):
        (folder / f"{i:02d}-lesson.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    (folder / "README.md").write_text("# Workshop\n")
    (folder / "data").mkdir()
    (folder / "data" / "measurements.csv").write_bytes(os.urandom(megabytes * 1_000_000))
    return folder


def spawn(image, tree):
    """Seconds from asking Docker to the landing page answering 200, and
    where the notebook runs (removed by the caller)."""
    base, token = f"/user/{secrets.token_hex(6)}/", secrets.token_hex(16)
    spec = ContainerSpec(
        name=f"tmpnb-{os.environ['TMPNB_INSTALLATION']}-{secrets.token_hex(4)}",
        image=image,
        pool="bench",
        command=render_command(COMMANDS[image], base_path=base, port=8888, ip="0.0.0.0", token=token),
        container_port=8888,
        host_ip="127.0.0.1",
        mem_limit="512m",
    )
    backend = get_backend()
    started_at = time.perf_counter()
    started = backend.start_container(spec)
    try:
        if tree is not None:
            user = backend.notebook_user(started.backend_id)
            tar_path = tree.parent / f"v1-{user.uid}-{user.gid}.tar"
            if not tar_path.exists():
                materials_files.pack_for_user(tree, tar_path, user.uid, user.gid)
            backend.copy_in(started.backend_id, tar_path=str(tar_path), destination=user.folder)
        url = f"http://{started.host_ip}:{started.host_port}{base}{LANDINGS[image].lstrip('/')}?token={token}"
        if eventually(lambda: requests.get(url, timeout=2).status_code == 200, 120, interval=0.05):
            return time.perf_counter() - started_at, started
        raise RuntimeError(f"{spec.name} did not answer within 120 s")
    except BaseException:
        backend.remove_container(started.backend_id)
        raise


def batch(image, tree, size, slots):
    """Containers ready per second when ``size`` start side by side, and how many ran on each node."""
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots * 2) as pool:
        each = list(pool.map(lambda _: spawn(image, tree), range(size)))
    rate = size / (time.perf_counter() - began)
    with ThreadPoolExecutor(max_workers=slots * 2) as pool:
        list(pool.map(lambda one: get_backend().remove_container(one[1].backend_id), each))
    return rate, Counter(started.node for _, started in each)


@contextlib.contextmanager
def swarm_lab():
    """The tests' three-node Swarm, the tiny image on every node, as this run's backend."""
    from tests.swarm import SwarmLab  # needs root, nsenter and dockerd; only here

    archive = Path(SCRATCH.name) / "tiny.tar"
    subprocess.run(["docker", "save", TINY_IMAGE, "-o", str(archive)], check=True, timeout=120)
    lab = SwarmLab(archive)
    try:
        lab.up()
        print(f"Swarm lab of 3 nodes up in {lab.setup_seconds:.1f} s")
        overrides = {
            "TMPNB_BACKEND": "swarm",
            "DOCKER_HOST": lab.docker_host(),
            "TMPNB_SWARM_NODE_ENGINES": lab.node_engines(),
            "TMPNB_SWARM_ENGINE_CERTS": str(lab.certs),
            "TMPNB_NETWORK_GUARD": False,  # its labels place notebooks; the fill is measured here
        }
        with override_settings(**overrides):
            yield
    finally:
        print(f"Swarm lab down in {lab.down():.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=JUPYTER_IMAGE, choices=sorted(COMMANDS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=5, help="the data file's size in the materials")
    parser.add_argument("--swarm", action="store_true", help="on the tests' three-node Swarm lab, with the tiny image")
    args = parser.parse_args()
    if args.swarm:
        args.image = TINY_IMAGE
    with swarm_lab() if args.swarm else contextlib.nullcontext():
        measure(args)


def measure(args):
    tree = make_materials(Path(SCRATCH.name) / "v1", args.megabytes)
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    where = f"a Swarm of 3 nodes ({settings.TMPNB_MAX_DOCK_WORKERS} Docker slots)" if args.swarm else "one engine"
    print(f"materials: 12 files, {size / 1e6:.1f} MB; image {args.image} on {where}; {args.rounds} rounds, batches of {args.batch}")
    results = {"without": {"one": [], "rate": []}, "with": {"one": [], "rate": []}}
    try:
        for round_ in range(args.rounds):
            for kind in ("without", "with") if round_ % 2 == 0 else ("with", "without"):
                given = tree if kind == "with" else None
                one, started = spawn(args.image, given)
                get_backend().remove_container(started.backend_id)
                rate, spread = batch(args.image, given, args.batch, settings.TMPNB_MAX_DOCK_WORKERS)
                results[kind]["one"].append(one)
                results[kind]["rate"].append(rate)
                nodes = f" (per node: {', '.join(str(n) for _, n in sorted(spread.items()))})" if args.swarm else ""
                print(f"round {round_ + 1} {kind:>7} materials: one alone ready in {one:.2f} s; batch of {args.batch}: {rate:.2f}/s{nodes}")
    finally:
        for info in get_backend().list_containers():
            get_backend().remove_container(info.backend_id)
        SCRATCH.cleanup()
    for kind, figures in results.items():
        print(
            f"{kind:>7} materials: one alone median {statistics.median(figures['one']):.2f} s "
            f"(min {min(figures['one']):.2f}); fill rate median {statistics.median(figures['rate']):.2f}/s "
            f"(max {max(figures['rate']):.2f})"
        )
    with_, without = (statistics.median(results[kind]["rate"]) for kind in ("with", "without"))
    print(f"fill rate with materials / without: {with_ / without:.2f}")


if __name__ == "__main__":
    main()
