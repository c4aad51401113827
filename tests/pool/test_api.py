"""tmpnb's API and the pages for ended or unrouted notebooks (rows only)."""

import pytest

import tmpnb_site
from pool.models import Container, Session
from tests.factories import ContainerFactory, PoolFactory, on_notebook_origin

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    settings.TMPNB_ADMIN_TOKEN = "admin-secret"
    return PoolFactory(capacity=3, image="tmpnb/tiny:latest")


def test_spawn_gives_an_api_client_a_container_url(client, pool):
    container = ContainerFactory(pool=pool)
    response = client.post("/api/spawn", headers={"Authorization": "token api-secret"})
    assert response.status_code == 201
    assert response.json() == {"id": container.path_id, "url": on_notebook_origin(container.url_for("/tree")), "token": container.token}
    assert Session.objects.get().container == container


def test_spawn_refuses_a_missing_or_wrong_token(client, pool):
    ContainerFactory(pool=pool)
    assert client.post("/api/spawn").status_code == 403
    response = client.post("/api/spawn/", headers={"Authorization": "token nope"})
    assert response.status_code == 403 and "valid token" in response.json()["error"]
    assert Container.objects.ready().count() == 1


def test_spawn_is_disabled_without_a_configured_token(client, pool, settings):
    settings.TMPNB_API_TOKEN = None
    response = client.post("/api/spawn", headers={"Authorization": "token "})
    assert response.status_code == 403 and "TMPNB_API_TOKEN" in response.json()["error"]


def test_spawn_when_nothing_is_ready_is_429_with_retry_after(client, pool):
    response = client.post("/api/spawn", headers={"Authorization": "Bearer api-secret"})
    assert response.status_code == 429
    assert response["Retry-After"] == "5"


def test_stats_count_the_pool(client, pool):
    ContainerFactory.create_batch(2, pool=pool)
    ContainerFactory(pool=pool, state=Container.State.SPAWNING)
    ContainerFactory(pool=pool, state=Container.State.GONE)
    client.get("/")
    assert client.get("/api/stats").json() == {
        "available": 1,
        "capacity": 3,
        "in_use": 1,
        "starting": 1,
        "version": tmpnb_site.__version__,
        "container_image": "tmpnb/tiny:latest",
    }


def test_draining_through_the_api_replaces_ready_containers_only(client, pool):
    ready = ContainerFactory.create_batch(2, pool=pool)
    assigned = ContainerFactory(pool=pool, state=Container.State.ASSIGNED)
    response = client.delete("/api/pool", headers={"Authorization": "token admin-secret"})
    assert response.status_code == 202 and response.json() == {"drained": 2}
    assert {c.state for c in Container.objects.filter(pk__in=[c.pk for c in ready])} == {Container.State.GONE}
    assert Container.objects.get(pk=assigned.pk).state == Container.State.ASSIGNED


def test_draining_through_the_api_needs_the_admin_token(client, pool):
    assert client.delete("/api/pool", headers={"Authorization": "token api-secret"}).status_code == 403
    assert client.get("/api/pool").status_code == 405


def test_cors_headers_follow_the_allow_origin_setting(client, pool, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://workshop.example"]
    response = client.get("/api/stats", headers={"Origin": "https://workshop.example"})
    assert response["Access-Control-Allow-Origin"] == "https://workshop.example"
    preflight = client.options("/api/spawn", headers={"Origin": "https://workshop.example", "Access-Control-Request-Method": "POST"})
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in client.get("/api/stats", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in client.get("/", headers={"Origin": "https://workshop.example"})


def test_an_ended_notebook_url_offers_a_new_server(client, pool):
    container = ContainerFactory(pool=pool, state=Container.State.GONE)
    response = client.get(f"/user/{container.path_id}/notebooks/x.ipynb")
    assert response.status_code == 410
    html = response.content.decode()
    assert "This notebook server has ended" in html and 'href="/spawn/"' in html


def test_an_unknown_notebook_url_says_it_has_ended(client, pool):
    response = client.get("/user/0123456789ab/tree", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.json()["status"] == "ended"


def test_a_live_notebook_without_a_route_asks_to_retry(client, pool, settings):
    container = ContainerFactory(pool=pool, state=Container.State.ASSIGNED)
    response = client.get(f"/user/{container.path_id}/tree", HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}")
    assert response.status_code == 200 and response["Retry-After"] == "2"
    assert "Reconnecting" in response.content.decode()


def test_an_old_link_to_a_live_notebook_leads_to_its_origin_without_its_token(client, pool):
    container = ContainerFactory(pool=pool, state=Container.State.ASSIGNED)
    response = client.get(f"/user/{container.path_id}/tree")
    assert response.status_code == 302 and response["Location"] == on_notebook_origin(f"/user/{container.path_id}/tree")


def test_an_ended_notebook_on_its_origin_leads_to_the_participants_pages(client, pool, settings):
    container = ContainerFactory(pool=pool, state=Container.State.GONE)
    response = client.get(f"/user/{container.path_id}/lab?x=1", HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}")
    assert response.status_code == 302
    assert response["Location"] == f"http://testserver:{settings.TMPNB_PUBLIC_PORT}/user/{container.path_id}/lab?x=1"


def test_the_ended_id_is_never_handed_out_again(client, pool):
    ended = ContainerFactory(pool=pool, state=Container.State.GONE)
    fresh = ContainerFactory(pool=pool)
    assert client.get("/").status_code == 302
    assert Session.objects.get().container == fresh != ended
