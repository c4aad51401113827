"""Hostile raw HTTP through the real proxy and gunicorn: no 5xx, no traceback."""

import socket

import pytest

from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until

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
