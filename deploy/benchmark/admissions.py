"""Admissions in one process, without HTTP: each visitor's two requests (the
cookie step, then the claim) handed to the web process's WSGI application
one after another, against a database of its own and a real Redis, with
every container ready (rows only: no Docker, no proxy, no refill, since the
pool is at capacity). Prints, as JSON on its last line, the CPU time per
admission, so that the service's own code can be weighed apart from gunicorn,
the proxy and the machine's other work. Run by deploy/bench (case
"instructions", below), as ``python -m deploy.benchmark.admissions --help`` says."""

import argparse
import html
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

from deploy.benchmark import Case, fmt, run_module
from deploy.benchmark.inprocess import container_rows, setup_django
from deploy.benchmark.visitors import visitor_address
from tests.stack import CONTINUES, ROOT, RedisServer

# Case instructions: visitors timed back to back and with a pause between
# them, and visitors counted by valgrind (twice as many in a second run).
TIMED, PAUSE, COUNTED = 200, 0.01, 50
# And back to back again in a pool with a history: weeks of workshops, kept
# for TMPNB_HISTORY_DAYS, behind the morning's burst.
HISTORY = 20_000
TITLE = "\ninstructions (admissions in one process, no HTTP: deploy/benchmark/admissions.py)"


def case_instructions(bench):
    """The service's own work per admission, in one process without HTTP:
    its CPU time with visitors back to back and with a pause between them,
    and the instructions valgrind counts, a figure that the machine's other
    work does not move. The count is the difference between a run of 2N
    visitors and one of N, so that start-up and set-up, the same in both,
    drop out."""
    timed = {pause: admissions(TIMED, pause=pause)["cpu_ms_per_admission"] for pause in (0.0, PAUSE)}
    with_history = admissions(TIMED, pause=0.0, history=HISTORY)["cpu_ms_per_admission"]
    n, rows = COUNTED, 2 * COUNTED
    counted = [instructions(["-m", "deploy.benchmark.admissions", str(visitors), "--rows", str(rows)]) for visitors in (n, 2 * n)]
    return {
        "timed_visitors": TIMED,
        "cpu_ms_back_to_back": timed[0.0],
        "pause_seconds": PAUSE,
        "cpu_ms_with_pause": timed[PAUSE],
        "history_visitors": HISTORY,
        "cpu_ms_with_history": with_history,
        "counted_visitors": n,
        "instructions_per_admission": round((counted[1] - counted[0]) / n),
    }


def admissions(visitors, *, pause, history=0):
    return run_module("admissions", str(visitors), "--pause", str(pause), "--history", str(history), timeout=600)


def instructions(python_args):
    """Instructions that valgrind's callgrind counts for a Python run (a
    fixed hash seed: the same run counts the same, to a few in 100,000)."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *python_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    collected = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or not collected:
        raise RuntimeError(f"valgrind failed:\n{result.stderr[-3000:]}")
    return int(collected.group(1))


def show(counted, out):
    print(TITLE, file=out)
    print(
        f"  CPU per admission: {fmt(counted['cpu_ms_back_to_back'], 'ms')} back to back,"
        f" {fmt(counted['cpu_ms_with_pause'], 'ms')} with {counted['pause_seconds']} s between visitors,"
        f" {fmt(counted.get('cpu_ms_with_history'), 'ms')} back to back after {counted.get('history_visitors')} past visitors ({counted['timed_visitors']} each);"
        f" instructions per admission (valgrind, {counted['counted_visitors']} visitors): {counted['instructions_per_admission'] / 1e6:.2f} million",
        file=out,
    )


CASE = Case(run=case_instructions, show=show, title=TITLE.strip())

# --- the run in a process of its own ---------------------------------------

WARM_UP = 10  # visitors before the measured ones: first requests load code and fill caches


def environ(path, query, *, cookie, address):
    """What gunicorn hands the application for a browser's GET through the proxy."""
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "text/html",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_USER_AGENT": "python-requests",
        "HTTP_X_FORWARDED_FOR": address,
        "HTTP_X_FORWARDED_PROTO": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def request(application, path, query="", *, cookie=None, address):
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=headers)

    body = b"".join(application(environ(path, query, cookie=cookie, address=address), start_response))
    return answer["status"], answer["headers"], body.decode()


def admit(application, i):
    """One new visitor: the cookie step, then the claim; returns where the claim sends it."""
    address = visitor_address(i)
    status, headers, body = request(application, "/spawn/", address=address)
    step = CONTINUES.search(body)
    assert status.startswith("200") and step, f"visitor {i}: no cookie step: {status} {body[:300]!r}"
    cookie = "; ".join(value.split(";")[0] for name, value in headers if name.lower() == "set-cookie")
    path, _, query = html.unescape(step.group(1)).partition("?")
    status, headers, body = request(application, path, query, cookie=cookie, address=address)
    location = dict(headers).get("Location", "")
    assert status.startswith("302") and "/user/" in location, f"visitor {i}: not sent to a notebook: {status} {body[:300]!r}"
    return location


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m deploy.benchmark.admissions", description=__doc__.split("\n\n")[0])
    parser.add_argument("visitors", type=int, help="visitors measured, one after another")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds of sleep between two visitors (default none)")
    parser.add_argument(
        "--rows", type=int, default=0, help="ready containers to make, if more than the visitors need: runs that differ only in visitors then set up the same"
    )
    parser.add_argument(
        "--history", type=int, default=0, help="visitors the pool has served before (ended containers, sessions, queue places, events; default none)"
    )
    return parser.parse_args()


def main():
    args = parse_args()
    state = tempfile.mkdtemp(prefix="tmpnb-admissions.")
    redis = RedisServer(state).start()
    try:
        setup_django(state, secrets.token_hex(16), REDIS_URL=redis.url, TMPNB_INSTALLATION=f"admissions{secrets.token_hex(3)}")
        print(json.dumps(timed_admissions(args.visitors, args.pause, rows=args.rows, history=args.history)))
    finally:
        redis.stop()
        shutil.rmtree(state, ignore_errors=True)


def timed_admissions(visitors, pause, *, rows, history):
    """``visitors`` admitted one after another (after WARM_UP), from a pool of
    at least ``rows`` ready containers and ``history`` past visitors."""
    from django.utils import timezone

    from pool.models import Container, Pool
    from pool.services import pools
    from tests.factories import past_visitors
    from tmpnb_site.wsgi import application

    pool = pools.get_default_pool()
    rows = max(WARM_UP + visitors, rows)
    names = [f"admissions-{n:05d}" for n in range(rows)]
    container_rows(pool, names, [f"b{n}" for n in range(rows)], state=Container.State.READY, ready_at=timezone.now())
    Pool.objects.filter(pk=pool.pk).update(capacity=rows)  # at capacity: a claim asks for no refill
    past_visitors(pool, history)
    for i in range(WARM_UP):
        admit(application, visitors + i)
    started_cpu, started = time.process_time(), time.perf_counter()
    landed = set()
    for i in range(visitors):
        landed.add(admit(application, i))
        if pause:
            time.sleep(pause)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    assert len(landed) == visitors, "a container was handed out twice"
    assert Container.objects.ready().count() == rows - WARM_UP - visitors, "a visitor was not given a ready container"
    return {"visitors": visitors, "pause": pause, "history": history, "cpu_ms_per_admission": round(1000 * cpu / visitors, 3), "wall_seconds": round(wall, 3)}


if __name__ == "__main__":
    main()
