"""Which origin serves what (pool/origins.py): the participants' pages, the
admin and every notebook each on an origin of their own; Django's test client
names the origin with its Host header, as the proxy passes a browser's on."""

import pytest
from django.test import Client

from pool import origins
from pool.models import Container
from tests.factories import ContainerFactory, PoolFactory, new_visitor

pytestmark = pytest.mark.django_db


def on(host, path, **headers):
    return Client().get(path, HTTP_HOST=host, **headers)


def test_a_notebooks_routes_are_keyed_by_the_origin_it_is_served_on(settings):
    assert origins.route_path("0123abcd") == "/@notebooks/user/0123abcd"
    settings.TMPNB_NOTEBOOK_DOMAIN = "nb.example.org"
    assert origins.route_path("0123abcd") == "/0123abcd.nb.example.org/user/0123abcd"


@pytest.mark.parametrize("path", ["/", "/spawn/", "/p/default/", "/admin/", "/admin/login/", "/api/stats", "/metrics", "/ended/abc/work.zip", "/i18n/setlang/"])
def test_the_notebook_port_answers_none_of_the_services_pages(settings, path):
    response = on(f"203.0.113.5:{settings.TMPNB_NOTEBOOK_PORT}", path)
    assert response.status_code == 404 and response["Content-Type"].startswith("text/plain")


def test_a_notebook_domain_answers_none_of_the_services_pages(settings):
    settings.TMPNB_NOTEBOOK_DOMAIN = "nb.example.org"
    PoolFactory()
    assert on("0123abcd.nb.example.org", "/admin/login/").status_code == 404
    assert on("0123abcd.nb.example.org", "/spawn/").status_code == 404
    # The service itself, at the domain (TMPNB_PUBLIC_HOST's default), serves them.
    assert on("nb.example.org", "/admin/login/").status_code == 200


def test_with_an_admin_host_the_admin_is_there_alone(settings):
    settings.TMPNB_ADMIN_HOST = "admin.example.org"
    PoolFactory()
    assert on("admin.example.org", "/admin/login/").status_code == 200
    assert on("admin.example.org", "/").status_code == 404
    assert on("tmpnb.example.org", "/admin/login/").status_code == 404
    assert on("tmpnb.example.org", "/api/stats").status_code == 200


def test_no_page_of_the_service_may_be_framed(settings):
    PoolFactory()
    for response in (on("tmpnb.example.org", "/api/stats"), on("tmpnb.example.org", "/admin/login/"), on(f"x:{settings.TMPNB_NOTEBOOK_PORT}", "/")):
        assert response["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_a_participant_lands_on_their_notebooks_own_host_with_a_domain(settings, client):
    settings.TMPNB_NOTEBOOK_DOMAIN = "nb.example.org"
    container = ContainerFactory(pool=PoolFactory(redirect_uri="/lab"))
    new_visitor(client)
    response = client.get("/", HTTP_HOST="nb.example.org:8443", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 302
    assert response["Location"] == f"https://{container.path_id}.nb.example.org:8443/user/{container.path_id}/lab?token={container.token}"


def test_an_ended_notebook_on_its_own_host_sends_the_participant_to_the_services_host(settings):
    settings.TMPNB_NOTEBOOK_DOMAIN = "nb.example.org"
    container = ContainerFactory(pool=PoolFactory(), state=Container.State.GONE)
    response = on(f"{container.path_id}.nb.example.org", f"/user/{container.path_id}/lab", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 302 and response["Location"] == f"https://nb.example.org/user/{container.path_id}/lab"
