"""The proxy client against a real configurable-http-proxy, and against a
stand-in for answers the real one never gives."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.utils import timezone

from proxyapi import ProxyClient, ProxyError, get_proxy


@pytest.fixture
def client(routes_cleaned):
    return get_proxy()


def test_an_added_route_is_in_the_proxy_with_our_marker(client, proxy):
    client.add_route("/user/abc", "http://127.0.0.1:12345", container="c1")
    raw = proxy.routes()["/user/abc"]
    assert raw["target"] == "http://127.0.0.1:12345"
    assert raw["container"] == "c1"
    route = client.list_routes()["/user/abc"]
    assert route.target == "http://127.0.0.1:12345"
    assert route.data == {"container": "c1"}
    assert route.last_activity is not None


def test_listing_skips_routes_that_are_not_ours(client, proxy):
    headers = {"Authorization": f"token {proxy.token}"}
    requests.post(f"{proxy.api_url}/api/routes/someone-else", json={"target": "http://127.0.0.1:1"}, headers=headers, timeout=5)
    try:
        client.add_route("/user/ours", "http://127.0.0.1:2")
        assert list(client.list_routes()) == ["/user/ours"]
    finally:
        requests.delete(f"{proxy.api_url}/api/routes/someone-else", headers=headers, timeout=5)


def test_one_route_is_read_with_its_activity_and_only_if_it_is_ours(client, proxy):
    client.add_route("/user/one", "http://127.0.0.1:5", container="c5")
    route = client.get_route("/user/one")
    assert (route.target, route.data) == ("http://127.0.0.1:5", {"container": "c5"})
    assert route.last_activity is not None
    assert client.get_route("/user/none") is None
    assert ProxyClient(proxy.api_url, token=proxy.token, installation="another-installation").get_route("/user/one") is None


def test_a_deleted_route_is_gone_and_deleting_it_again_is_fine(client, proxy):
    client.add_route("/user/gone", "http://127.0.0.1:3")
    client.delete_route("/user/gone")
    assert "/user/gone" not in proxy.routes()
    client.delete_route("/user/gone")


def test_inactive_since_keeps_only_idle_routes(client):
    client.add_route("/user/idle", "http://127.0.0.1:4")
    assert "/user/idle" in client.list_routes(inactive_since=timezone.now() + timedelta(seconds=5))
    assert "/user/idle" not in client.list_routes(inactive_since=timezone.now() - timedelta(hours=1))


def test_a_wrong_token_is_an_error_not_an_empty_answer(proxy):
    with pytest.raises(ProxyError, match="HTTP 403"):
        ProxyClient(proxy.api_url, token="wrong", installation="x").list_routes()


def test_an_unreachable_proxy_is_an_error():
    with pytest.raises(ProxyError):
        ProxyClient("http://127.0.0.1:9", token="t", installation="x").list_routes()


def test_answers_tells_a_running_proxy_from_one_that_is_not_there(client):
    assert client.answers()
    assert not ProxyClient("http://127.0.0.1:9", token="token", installation="x").answers()


def test_a_machine_wide_http_proxy_setting_does_not_take_the_api_requests(client, proxy, machine_http_proxy):
    with machine_http_proxy():  # the tests' own requests (proxy.routes()) go on without it
        client.add_route("/user/through-env", "http://127.0.0.1:12345", container="c1")
    assert proxy.routes()["/user/through-env"]["target"] == "http://127.0.0.1:12345"


@pytest.fixture
def answering():
    """A stand-in at the proxy's address that answers every GET with 200 and
    the body it is given (a page of whatever else listens at a wrong
    CONFIGPROXY_ENDPOINT, or JSON of a shape the proxy never sends)."""
    body = {"text": ""}

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body["text"].encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def client(text):
        body["text"] = text
        return ProxyClient(f"http://127.0.0.1:{server.server_address[1]}", token="t", installation="x")

    yield client
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("<html>Welcome to nginx!</html>", "the answer is not JSON: '<html>Welcome to nginx!</html>'"),
        ("[]", "the answer is not a JSON object"),
        (json.dumps({"/user/a": {"tmpnb": "x"}}), "route /user/a: unexpected entry"),
        (json.dumps({"/user/a": {"tmpnb": "x", "target": "http://127.0.0.1:1", "last_activity": "yesterday"}}), "route /user/a: unexpected entry"),
    ],
)
def test_an_answer_that_is_not_the_proxy_s_json_is_an_error_when_listing(answering, answer, message):
    with pytest.raises(ProxyError, match=message):
        answering(answer).list_routes()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("<html>Welcome to nginx!</html>", "the answer is not JSON"),
        ("[]", "the answer is not a JSON object"),
        (json.dumps({"tmpnb": "x", "target": 7}), "route /user/a: unexpected entry"),
    ],
)
def test_an_answer_that_is_not_the_proxy_s_json_is_an_error_when_reading_one_route(answering, answer, message):
    with pytest.raises(ProxyError, match=message):
        answering(answer).get_route("/user/a")


def test_entries_of_others_are_skipped_whatever_their_shape(answering):
    answer = {"/other": "not an entry", "/theirs": {"target": 7}, "/user/a": {"tmpnb": "x", "target": "http://127.0.0.1:1"}}
    assert list(answering(json.dumps(answer)).list_routes()) == ["/user/a"]
