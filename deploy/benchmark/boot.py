"""Boot time and idle memory of the notebook images (issue 12).

Starts one container at a time from each image with the command the service
gives it (pool/command.py), times `docker run` until the server answers
HTTP 200 on BASE/api, then reads its memory from `docker stats` after it has
sat idle a few seconds, and removes it. Also prints each image's size.
Figures only, no assertion: docs/performance.md holds the results.

Run with the project's venv, as root:
    .venv/bin/python -m deploy.benchmark.boot [--runs 5] [--image IMAGE ...] [--extra ARGS]
``--extra`` appends options to every command (e.g. to try a server extension off).
"""

import argparse
import secrets
import statistics
import time

import docker
import requests

from deploy.benchmark import eventually
from deploy.benchmark.images import COMMANDS, LABEL_BENCH, MEM_LIMIT
from pool.command import CLASSIC_IMAGE, DEFAULT_COMMAND, DEFAULT_IMAGE, render_command


def boot_once(client, image, command, extra, idle_seconds):
    base, token = f"/user/{secrets.token_hex(6)}/", secrets.token_hex(16)
    rendered = render_command(command, base_path=base, port=8888, ip="0.0.0.0", token=token) + (f" {extra}" if extra else "")
    started = time.perf_counter()
    container = client.containers.run(
        image,
        ["sh", "-c", f"exec {rendered}"],
        detach=True,
        labels={LABEL_BENCH: "images"},
        ports={"8888/tcp": ("127.0.0.1", None)},
        mem_limit=MEM_LIMIT,
    )
    try:
        port = eventually(lambda: published_port(container), 60, interval=0.02)
        url = f"http://127.0.0.1:{port}{base}api"
        if not eventually(lambda: requests.get(url, timeout=2).status_code == 200, 60 - (time.perf_counter() - started), interval=0.02):
            raise RuntimeError(f"{image} did not answer within 60 s:\n{container.logs().decode()[-2000:]}")
        boot = time.perf_counter() - started
        time.sleep(idle_seconds)
        stats = container.stats(stream=False)
        memory = stats["memory_stats"]["usage"] - stats["memory_stats"].get("stats", {}).get("inactive_file", 0)
        return boot, memory / 2**20
    finally:
        container.remove(force=True)


def published_port(container):
    container.reload()
    bound = container.ports.get("8888/tcp")
    return bound and bound[0]["HostPort"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", action="append", help=f"default: {DEFAULT_IMAGE} and {CLASSIC_IMAGE}")
    parser.add_argument("--command", help="a command template instead of the image's own")
    parser.add_argument("--extra", default="", help="options appended to every command")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading memory (default 5)")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=60)
    try:
        for image in args.image or [DEFAULT_IMAGE, CLASSIC_IMAGE]:
            command = args.command or COMMANDS.get(image, DEFAULT_COMMAND)
            size = client.images.get(image).attrs["Size"] / 1e6
            runs = [boot_once(client, image, command, args.extra, args.idle) for _ in range(args.runs)]
            boots, memories = [b for b, _ in runs], [m for _, m in runs]
            print(
                f"{image} ({size:.0f} MB){' + ' + args.extra if args.extra else ''}: "
                f"boot to HTTP 200 {min(boots):.2f}-{max(boots):.2f} s (median {statistics.median(boots):.2f}), "
                f"idle memory {min(memories):.0f}-{max(memories):.0f} MiB (median {statistics.median(memories):.0f})"
                f"  [{', '.join(f'{b:.2f}' for b in boots)}]",
                flush=True,
            )
    finally:
        for left in client.containers.list(all=True, filters={"label": LABEL_BENCH + "=images"}):
            left.remove(force=True)
        client.close()


if __name__ == "__main__":
    main()
