"""The participant's pages, through Django's test client (rows only; the real
path through the proxy is in tests/integration)."""

import secrets
import socket
import time
from unittest import mock

import pytest
from django.core import signing

from pool.http import _period
from pool.models import Container, Session
from pool.visitors import VISITOR_COOKIE, VISITOR_COOKIE_AGE
from tests.factories import ContainerFactory, PoolFactory, continue_url, new_visitor, on_notebook_origin, unused_address

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    return PoolFactory(capacity=2, redirect_uri="/tree")


def test_the_landing_page_redirects_into_a_ready_container_with_its_token(client, pool):
    container = ContainerFactory(pool=pool)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == on_notebook_origin(f"/user/{container.path_id}/tree?token={container.token}")
    assert VISITOR_COOKIE in response.cookies
    assert response.cookies[VISITOR_COOKIE]["httponly"]


def test_every_answer_renews_the_visitor_cookie_as_it_came(client, pool):
    ContainerFactory(pool=pool)
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):  # signed an hour ago
        sent = signing.get_cookie_signer(salt=VISITOR_COOKIE + VISITOR_COOKIE).sign(secrets.token_hex(16))
    client.cookies[VISITOR_COOKIE] = sent
    for _ in range(2):  # the claim, then a reload
        renewed = client.get("/").cookies[VISITOR_COOKIE]
        assert renewed.value == sent
        assert renewed["max-age"] == VISITOR_COOKIE_AGE and renewed["httponly"] and renewed["samesite"] == "Lax"
    assert Session.objects.count() == 1


def test_a_reload_returns_the_same_container(client, pool):
    ContainerFactory.create_batch(2, pool=pool)
    first = client.get("/")["Location"]
    assert client.get("/")["Location"] == first
    assert client.get("/spawn/")["Location"] == first
    assert Session.objects.count() == 1
    assert Container.objects.ready().count() == 1


def test_a_deep_link_lands_on_that_path(client, pool):
    container = ContainerFactory(pool=pool)
    response = client.get("/spawn/notebooks/intro.ipynb")
    assert response["Location"] == on_notebook_origin(f"/user/{container.path_id}/notebooks/intro.ipynb?token={container.token}")


def test_two_visitors_get_two_containers(client, pool):
    ContainerFactory.create_batch(2, pool=pool)
    first = client.get("/")["Location"]
    new_visitor(client)
    assert client.get("/")["Location"] != first


def test_a_forged_visitor_cookie_is_ignored(client, pool):
    ContainerFactory(pool=pool)
    client.get("/")
    session = Session.objects.get()
    new_visitor(client)
    client.cookies[VISITOR_COOKIE] = session.visitor  # unsigned: not accepted as theirs
    response = client.get(continue_url(client.get("/")))  # through the cookie step, as a new visitor
    assert "tries again by itself" in response.content.decode()


def test_when_nothing_is_ready_the_visitor_waits_on_a_page_that_moves_on_by_itself(client, pool):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Retry-After"] == "5"
    html = response.content.decode()
    assert 'Your place in the queue: <strong id="position">1</strong>' in html
    assert "A notebook server is starting for you." in html
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    assert 'fetch("/waiting/status?wait=1"' in html  # a long poll


def test_when_nothing_is_ready_an_api_client_gets_429_json(client, pool):
    response = client.get("/spawn/", headers={"Accept": "application/json"})
    assert response.status_code == 429
    assert response["Retry-After"] == "5"
    assert response.json()["status"] == "full"


def test_the_client_address_comes_from_the_proxy_header_only_from_a_trusted_proxy(client, pool):
    ContainerFactory.create_batch(2, pool=pool)
    client.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    new_visitor(client)
    client.get("/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.10")
    assert sorted(Session.objects.values_list("client_ip", flat=True)) == ["198.51.100.7", "203.0.113.9"]


def test_one_address_holds_at_most_max_per_ip_notebooks(client, pool, settings):
    settings.TMPNB_MAX_PER_IP = 2
    ContainerFactory.create_batch(4, pool=PoolFactory(capacity=4))
    for _ in range(2):
        new_visitor(client)
        assert client.get("/", REMOTE_ADDR="203.0.113.5").status_code == 302
    new_visitor(client)
    refused = client.get("/", REMOTE_ADDR="203.0.113.5")
    assert refused.status_code == 429
    assert "TMPNB_MAX_PER_IP" in refused.content.decode()
    json_refusal = client.get("/", REMOTE_ADDR="203.0.113.5", headers={"Accept": "application/json"})
    assert json_refusal.status_code == 429 and json_refusal.json()["status"] == "refused"
    new_visitor(client)
    assert client.get("/", REMOTE_ADDR="203.0.113.6").status_code == 302
    assert Container.objects.ready().count() == 1


def test_spawn_requests_are_rate_limited_per_address(client, pool, settings):
    settings.CACHES = {"default": {"BACKEND": "tests.fakes.CountingCache"}}
    settings.TMPNB_SPAWN_RATE = "3/m"
    address, other = unused_address(), unused_address()
    for _ in range(3):
        assert client.get("/", REMOTE_ADDR=address).status_code == 200  # nothing ready, but served
    limited = client.get("/", REMOTE_ADDR=address)
    assert limited.status_code == 429 and "Too many requests" in limited.content.decode()
    assert client.get("/", REMOTE_ADDR=other).status_code == 200


@pytest.mark.parametrize(("rate", "period"), [("600/m", (600, 60)), ("20/s", (20, 1)), ("5/10m", (5, 600)), ("100/2h", (100, 7200)), ("9/d", (9, 86400))])
def test_a_rate_reads_as_requests_per_seconds(rate, period):
    assert _period(rate) == period


def test_without_the_cache_nobody_is_rate_limited(client, pool, settings):
    with socket.socket() as unreachable:  # bound, never listening: connections are refused
        unreachable.bind(("127.0.0.1", 0))
        redis_url = f"redis://127.0.0.1:{unreachable.getsockname()[1]}/0"
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": redis_url}}
        settings.TMPNB_SPAWN_RATE = "1/m"
        for _ in range(3):
            assert client.get("/", REMOTE_ADDR="203.0.113.9").status_code == 200


# --- named pools ----------------------------------------------------------------


def test_a_named_pool_serves_its_own_landing_url_and_deep_links(client, pool):
    ContainerFactory(pool=pool)
    python = PoolFactory(name="python", redirect_uri="/lab")
    container = ContainerFactory(pool=python)
    response = client.get("/p/python/")
    assert response["Location"] == on_notebook_origin(f"/user/{container.path_id}/lab?token={container.token}")
    assert client.get("/p/python/spawn/notebooks/a.ipynb")["Location"] == on_notebook_origin(
        f"/user/{container.path_id}/notebooks/a.ipynb?token={container.token}"
    )
    assert Session.objects.get().container == container


def test_the_default_pool_answers_at_its_own_name_too(client, pool):
    container = ContainerFactory(pool=pool)
    assert client.get(f"/p/{pool.name}/")["Location"].startswith(on_notebook_origin(f"/user/{container.path_id}/"))


def test_an_unknown_pool_is_not_found(client, pool):
    assert client.get("/p/nosuch/").status_code == 404


def test_a_visitor_holding_a_notebook_of_another_pool_is_told_so_and_led_back_to_it(client, pool):
    held = ContainerFactory(pool=pool)
    python = PoolFactory(name="python")
    ContainerFactory(pool=python)
    client.get("/")
    response = client.get("/p/python/")
    assert response.status_code == 409
    html = response.content.decode()
    assert "You already have a notebook server" in html and "<strong>default</strong> pool" in html
    assert f'href="{on_notebook_origin(held.url_for("/tree"))}"' in html
    assert python.containers.ready().count() == 1  # nothing claimed for them
    as_json = client.get("/p/python/spawn/", headers={"Accept": "application/json"})
    assert as_json.status_code == 409
    assert as_json.json() == {"status": "held-elsewhere", "pool": "default", "url": on_notebook_origin(held.url_for("/tree"))}


def test_the_ended_page_of_a_named_pool_starts_a_new_notebook_in_that_pool(client, pool):
    python = PoolFactory(name="python")
    ended = ContainerFactory(pool=python, state=Container.State.GONE)
    html = client.get(f"/user/{ended.path_id}/tree").content.decode()
    assert 'href="/p/python/spawn/"' in html
