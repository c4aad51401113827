"""Hostile raw HTTP through the real proxy and gunicorn: no 5xx, no traceback."""

import socket
import struct
import threading

import pytest
import requests

from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import Proxy

HOSTILE = [
    b"GET /user/%ff%fe/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/../../var/secrets.env HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /spawn/\xff\xfe\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /?" + b"a=1&" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: tmpnb_visitor=" + b"A" * 4000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ' OR 1=1 --\r\nAccept: application/json\r\n\r\n",
    b"POST /api/spawn HTTP/1.1\r\nHost: x\r\nAuthorization: token \xff\r\nContent-Length: 5\r\n\r\n{{{{{",
    b"DELETE /api/pool HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1,",
    b"GET /user/abc HTTP/1.1\r\nHost: \r\nAccept: */*;q=abc\r\n\r\n",
    b"OPTIONS /api/spawn HTTP/1.1\r\nHost: x\r\nOrigin: null\r\nAccess-Control-Request-Method: DELETE\r\n\r\n",
]


def raw_status(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = conn.recv(4096)
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("target", ["proxy", "web"])
def test_hostile_requests_get_no_server_error(live_stack, target):
    PoolFactory(capacity=1)
    live_stack.start(beat=True)
    wait_until(lambda: ready_count() == 1, what="a ready container")
    port = live_stack.proxy.public_port if target == "proxy" else live_stack.web.port
    for request in HOSTILE:
        status, answer = raw_status(port, request)
        assert status < 500, (request[:80], answer[:300])
        assert b"Traceback" not in answer


# configurable-http-proxy decodes the path with decodeURIComponent and parses it
# with new URL, which throw on these; unpatched it answers "500 Proxy Error".
MALFORMED_ESCAPES = [b"/%ff", b"/%C0%AF", b"/user/%E0%A4%A/tree", b"/%"]
# Read as a relative URL, these name a host that cannot be parsed (500 too);
# they are paths, which the app does not serve.
DOUBLE_SLASHES = [b"//", b"//a:b", b"//[x/", b"//x:99999/", b"//user/abc"]


def test_the_proxy_answers_malformed_paths_with_4xx_and_keeps_serving(live_stack):
    live_stack.start(worker=False, beat=False)
    port = live_stack.proxy.public_port
    for path in MALFORMED_ESCAPES:
        status, answer = raw_status(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400, (path, answer[:300])
    for path in DOUBLE_SLASHES:
        status, answer = raw_status(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404 and b"gunicorn" in answer, (path, answer[:300])
    status, answer = raw_status(port, b"GET /admin/login/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, answer[:300]


class FloodingUpgrade:
    """A backend that accepts any websocket upgrade, then sends bytes until
    the connection breaks: what a notebook's busy kernel channel looks like."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.flood, args=(conn,), daemon=True).start()

    def flood(self, conn):
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                while not self.stopping.is_set():
                    conn.sendall(b"x" * 65536)
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        self.listener.close()


def test_a_client_that_breaks_its_websocket_mid_stream_never_ends_the_proxy(log_dir):
    # http-proxy-3 hands a client socket's errors (EPIPE, ECONNRESET) to the
    # proxy's "error" event and throws when nobody listens: one participant
    # resetting a busy websocket ended the proxy for everyone.
    backend, proxy = FloodingUpgrade(), Proxy("http://127.0.0.1:9", log_dir).start()
    try:
        headers = {"Authorization": f"token {proxy.token}"}
        requests.post(f"{proxy.api_url}/api/routes/@notebooks/user/flood", json={"target": backend.url}, headers=headers, timeout=5).raise_for_status()
        upgrade = b"GET /user/flood/api/kernels/k/channels HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", proxy.notebook_port), timeout=10) as conn:
                conn.sendall(upgrade)
                assert conn.recv(4096).startswith(b"HTTP/1.1 101")
                # Closed with a reset while the proxy is writing to it.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Its next answer comes after it has met those resets.
        assert requests.get(f"{proxy.notebook_url}/user/another/", timeout=10).status_code in (502, 503)
        proxy.assert_running()
        assert "/@notebooks/user/flood" in proxy.routes()
    finally:
        proxy.stop()
        backend.stop()
