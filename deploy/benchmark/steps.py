"""The floor with the landing page's steps: the burst's visitors make the
three requests through the proxy that a visitor of the service makes (the
cookie step's page, a redirect to their notebook, the notebook's page), but
the first two are answered by an upstream that does no work.

What a burst costs above this floor is the service's own: gunicorn, Django and
the admission. What this floor costs above the plain floor (one request each)
is the two extra hops through the proxy and the visitors' own client, which
any service that keeps the cookie step pays on this machine.

The upstream runs as a process of its own (``python -m deploy.benchmark.steps
PORT SPEC``), so that it takes no turn of the visitors' interpreter lock. It
answers as the service does: the service's own cookie-step page and headers,
replayed with the step's URL and a fresh cookie, then a 302 to the page the
visitor of the burst landed on (the visitor's number is in the path).
"""

import asyncio
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.stack import ROOT, free_port

PREFIX = "/steps-floor"
COOKIE = "steps_floor_visitor"
NEXT = "\x00next\x00"  # where the continue URL goes in the replayed page
# Written by the upstream itself, per answer.
OWN_HEADERS = {"date", "server", "content-length", "set-cookie", "connection", "location"}


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
def steps_upstream(landed, replay, proxy_api):
    """The no-work upstream, routed at PREFIX in the service's proxy for the
    block (a route without the installation's marker: the service leaves it
    alone). Yields the upstream's pid and the visitors' first URLs' paths."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="steps-floor-") as spec:
        json.dump({"landed": landed, **replay}, spec)
        spec.flush()
        port = free_port()
        upstream = subprocess.Popen([sys.executable, "-m", "deploy.benchmark.steps", str(port), spec.name], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            if upstream.stdout.readline().strip() != "ready":
                raise RuntimeError("the steps floor's upstream did not start")
            proxy_api("POST", PREFIX, json={"target": f"http://127.0.0.1:{port}"})
            try:
                yield upstream.pid, [f"{PREFIX}/{i}/" for i in range(len(landed))]
            finally:
                proxy_api("DELETE", PREFIX)
        finally:
            upstream.terminate()
            upstream.wait(10)


class _Answers(asyncio.Protocol):
    """HTTP/1.1 GETs on a kept-alive connection, as the proxy sends them."""

    def __init__(self, spec):
        self.spec = spec
        self.pending = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.pending += data
        while b"\r\n\r\n" in self.pending:
            head, self.pending = self.pending.split(b"\r\n\r\n", 1)
            self.transport.write(self.answer(head.decode("latin-1").split("\r\n")))

    def answer(self, lines):
        path = lines[0].split(" ")[1]
        visitor = int(path.split("/")[2])
        cookie = any(line.lower().startswith("cookie:") and f"{COOKIE}=" in line for line in lines[1:])
        headers = [f"{name}: {value}" for name, value in self.spec["headers"]]
        if cookie:  # the claim: straight to the notebook
            status, body = "302 Found", b""
            headers.append(f"Location: {self.spec['landed'][visitor]}")
        else:  # the cookie step
            status = "200 OK"
            body = self.spec["page"].replace(NEXT, f"{PREFIX}/{visitor}/?tmpnb_cookie_check={int(time.time())}").encode()
            headers.append(f"Set-Cookie: {COOKIE}={secrets.token_hex(48)}; HttpOnly; Max-Age=604800; Path=/; SameSite=Lax")
        headers.append(f"Content-Length: {len(body)}")
        return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode("latin-1") + body


async def _serve(port, spec):
    server = await asyncio.get_running_loop().create_server(lambda: _Answers(spec), "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())))
