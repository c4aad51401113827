"""Admissions in one process, without HTTP: each visitor's two requests (the
cookie step, then the claim) handed to the web process's WSGI application
one after another, against a database of its own and a real Redis, with
every container ready (rows only: no Docker, no proxy, no refill, since the
pool is at capacity). Prints, as JSON on its last line, the CPU time per
admission, so that the service's own code can be weighed apart from gunicorn,
the proxy and the machine's other work. Run by deploy/bench (case
"instructions"), as ``python -m deploy.benchmark.admissions --help`` says."""

import argparse
import html
import io
import json
import os
import secrets
import shutil
import sys
import tempfile
import time

from deploy.benchmark.visitors import visitor_address
from tests.stack import CONTINUES, RedisServer

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
    visitors, pause = args.visitors, args.pause
    state = tempfile.mkdtemp(prefix="tmpnb-admissions.")
    redis = RedisServer(state).start()
    token = secrets.token_hex(16)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tmpnb_site.settings",
        TMPNB_VAR_DIR=state,
        DJANGO_SECRET_KEY=token,
        CONFIGPROXY_AUTH_TOKEN=token,
        REDIS_URL=redis.url,
        TMPNB_INSTALLATION=f"admissions{secrets.token_hex(3)}",
    )
    os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.utils import timezone

        from pool.models import Container, Pool
        from pool.services import pools
        from tests.factories import past_visitors
        from tmpnb_site.wsgi import application

        call_command("migrate", verbosity=0)
        pool = pools.get_default_pool()
        rows = max(WARM_UP + visitors, args.rows)
        Container.objects.bulk_create(
            Container(
                pool=pool,
                name=f"admissions-{n:05d}",
                path_id=f"{n:012x}",
                token=f"t{n}",
                backend_id=f"b{n}",
                host_ip="127.0.0.1",
                host_port=20000 + n,
                state=Container.State.READY,
                ready_at=timezone.now(),
            )
            for n in range(rows)
        )
        Pool.objects.filter(pk=pool.pk).update(capacity=rows)  # at capacity: a claim asks for no refill
        past_visitors(pool, args.history)
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
        print(
            json.dumps(
                {
                    "visitors": visitors,
                    "pause": pause,
                    "history": args.history,
                    "cpu_ms_per_admission": round(1000 * cpu / visitors, 3),
                    "wall_seconds": round(wall, 3),
                }
            )
        )
    finally:
        redis.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
