"""The floors with the landing page's steps: the burst's visitors make the
three requests through the proxy that a visitor of the service makes (the
cookie step's page, a redirect to their notebook, the notebook's page), but
the first two are answered by an upstream that does no work.

- ``asyncio``: a bare event loop. What a burst costs above it is the
  service's own work; what it costs above the plain floor (one request each)
  is the two extra hops through the proxy and the visitors' own client,
  which any service that keeps the cookie step pays on this machine.
- ``gunicorn``: the same answers from a WSGI application in the service's
  server, with the service's worker and threads. What a burst costs above it
  is Django and the admission.

Either runs as a process of its own, so that it takes no turn of the
visitors' interpreter lock. It answers as the service does: the service's
own cookie-step page and headers, replayed with the step's URL and a fresh
cookie, then a 302 to the page the visitor of the burst landed on (the
visitor's number is in the path).
"""

import asyncio
import functools
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.stack import ROOT, WEB_KEEP_ALIVE, free_port, wait_for

PREFIX = "/steps-floor"
ROUTE = f"/127.0.0.1{PREFIX}"  # the proxy routes by host: the visitors' requests name 127.0.0.1
COOKIE = "steps_floor_visitor"
NEXT = "\x00next\x00"  # where the continue URL goes in the replayed page
# Written by the upstream itself, per answer.
OWN_HEADERS = {"date", "server", "content-length", "set-cookie", "connection", "location"}
# deploy/up's web process with its defaults: one worker, 8 + TMPNB_LONG_POLLS (16) threads.
WEB_THREADS = 24
SPEC = "TMPNB_STEPS_FLOOR_SPEC"  # the upstream's file: the landed URLs and the replayed answer


def landing_replay(landing_url):
    """The service's cookie-step answer to a new visitor (a cookieless GET:
    it takes no container): its headers, and its page with the continue URL
    marked."""
    response = requests.get(landing_url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    response.raise_for_status()
    page, found = re.subn(r"/spawn/\?tmpnb_cookie_check=\d+", NEXT, response.text)
    if not found:
        raise RuntimeError(f"no cookie step at {landing_url}: {response.text[:200]!r}")
    headers = [(name, value) for name, value in response.headers.items() if name.lower() not in OWN_HEADERS]
    return {"page": page, "headers": headers}


@contextmanager
def steps_upstream(kind, landed, replay, proxy_api):
    """The no-work upstream of ``kind``, routed at PREFIX in the service's
    proxy for the block (a route without the installation's marker: the
    service leaves it alone). Yields the upstream's pids and the paths of the
    visitors' first requests."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="steps-floor-") as spec:
        json.dump({"landed": landed, **replay}, spec)
        spec.flush()
        port = free_port()
        if kind == "gunicorn":
            command = [str(Path(sys.executable).parent / "gunicorn"), "deploy.benchmark.steps:application", "--bind", f"127.0.0.1:{port}"]
            command += ["--workers", "1", "--threads", str(WEB_THREADS), "--keep-alive", str(WEB_KEEP_ALIVE)]
        else:
            command = [sys.executable, "-m", "deploy.benchmark.steps", str(port)]
        upstream = subprocess.Popen(command, cwd=ROOT, env={**os.environ, SPEC: spec.name}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # An answer, not only a connection: gunicorn's master listens
            # before its worker is forked, and the worker's CPU is counted.
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}{PREFIX}/0/", timeout=1).ok, 30, "the steps floor's upstream")
            proxy_api("POST", ROUTE, json={"target": f"http://127.0.0.1:{port}"})
            try:
                yield _tree(upstream.pid), [f"{PREFIX}/{i}/" for i in range(len(landed))]
            finally:
                proxy_api("DELETE", ROUTE)
        finally:
            upstream.terminate()
            upstream.wait(10)


def _tree(pid):
    """A process and its children (gunicorn's worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


class Answers:
    """The two answers of the landing page, with no work behind them."""

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, path, cookie_header):
        """Status line, headers and body for GET ``path`` with these cookies."""
        visitor = int(path.split("/")[2])
        headers = list(self.spec["headers"])
        if f"{COOKIE}=" in cookie_header:  # the claim: straight to the notebook
            status, body = "302 Found", b""
            headers.append(("Location", self.spec["landed"][visitor]))
        else:  # the cookie step
            status = "200 OK"
            body = self.spec["page"].replace(NEXT, f"{PREFIX}/{visitor}/?tmpnb_cookie_check={int(time.time())}").encode()
            headers.append(("Set-Cookie", f"{COOKIE}={secrets.token_hex(48)}; HttpOnly; Max-Age=604800; Path=/; SameSite=Lax"))
        headers.append(("Content-Length", str(len(body))))
        return status, headers, body


class _Connection(asyncio.Protocol):
    """HTTP/1.1 GETs on a kept-alive connection, as the proxy sends them."""

    def __init__(self, answers):
        self.answers = answers
        self.pending = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.pending += data
        while b"\r\n\r\n" in self.pending:
            head, self.pending = self.pending.split(b"\r\n\r\n", 1)
            request_line, *lines = head.decode("latin-1").split("\r\n")
            cookie = "; ".join(line.split(":", 1)[1] for line in lines if line.lower().startswith("cookie:"))
            status, headers, body = self.answers(request_line.split(" ")[1], cookie)
            head = "\r\n".join([f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)])
            self.transport.write(f"{head}\r\n\r\n".encode("latin-1") + body)


@functools.cache
def _answers():
    return Answers(json.loads(Path(os.environ[SPEC]).read_text()))


def application(environ, start_response):
    """The gunicorn upstream."""
    status, headers, body = _answers()(environ["PATH_INFO"], environ.get("HTTP_COOKIE", ""))
    start_response(status, headers)
    return [body]


async def _serve(port):
    server = await asyncio.get_running_loop().create_server(lambda: _Connection(_answers()), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
