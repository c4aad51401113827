"""The organiser's admin: kill actions against real containers and routes."""

import pytest
import requests

from pool import dockerapi, services
from pool.models import Container, Session
from tests.factories import PoolFactory


@pytest.fixture
def live_session(clean_pools):
    pool = PoolFactory(capacity=2)
    for container in services.fill_pool(pool.pk):
        services.spawn_container(container.pk)
    return services.assign_container(pool=pool, visitor="participant")


def test_killing_a_session_stops_its_container_deletes_its_route_and_says_who(admin_client, admin_user, live_session, proxy):
    url = f"{proxy.public_url}{live_session.container.base_path}"
    assert requests.get(url, timeout=5).status_code == 200
    response = admin_client.post(
        "/admin/pool/session/", {"action": "kill", "_selected_action": [live_session.pk]}, follow=True
    )
    assert "Killed 1 session(s)." in response.content.decode()
    live_session.refresh_from_db()
    assert live_session.end_reason == Session.EndReason.KILLED
    assert live_session.describe_end() == f"killed by {admin_user.username}"
    assert Container.objects.get(pk=live_session.container_id).state == Container.State.GONE
    assert live_session.container.docker_id not in [c.docker_id for c in dockerapi.list_containers()]
    assert live_session.container.route_path not in proxy.routes()
    # The participant's URL no longer reaches a notebook: the proxy falls back to the app.
    assert "container" not in requests.get(url, timeout=5).text


def test_killing_a_ready_container_removes_it(admin_client, live_session, proxy):
    ready = Container.objects.ready().get()
    response = admin_client.post("/admin/pool/container/", {"action": "kill", "_selected_action": [ready.pk]}, follow=True)
    assert "Killed 1 container(s)." in response.content.decode()
    assert Container.objects.get(pk=ready.pk).state == Container.State.GONE
    assert [c.docker_id for c in dockerapi.list_containers()] == [live_session.container.docker_id]


@pytest.mark.django_db
def test_the_admin_pages_list_pools_containers_and_sessions(admin_client):
    pool = PoolFactory()
    assert admin_client.get("/admin/pool/pool/").status_code == 200
    assert admin_client.get(f"/admin/pool/pool/{pool.pk}/change/").status_code == 200
    assert admin_client.get("/admin/pool/container/").status_code == 200
    assert admin_client.get("/admin/pool/session/").status_code == 200


@pytest.mark.django_db
def test_a_pool_with_a_bad_command_is_refused_with_the_reason(admin_client):
    pool = PoolFactory()
    form = {
        "name": pool.name, "image": pool.image, "command": "serve {base_path} {who}", "capacity": 3,
        "redirect_uri": "/tree", "mem_limit": "64m", "container_ip": "127.0.0.1", "container_port": 8888,
    }
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", form)
    assert response.status_code == 200
    assert "unknown placeholder {who}" in response.content.decode()
    pool.refresh_from_db()
    assert "{who}" not in pool.command


def test_the_admin_needs_a_login(client):
    response = client.get("/admin/pool/session/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
