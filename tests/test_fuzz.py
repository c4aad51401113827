"""Random and hostile requests never produce a 5xx or a traceback.

Django's test client re-raises any exception a view lets through, so an
example fails on a traceback as well as on a 5xx answer."""

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from pool.models import Container, Session
from tests.factories import ContainerFactory, PoolFactory, new_visitor

pytestmark = pytest.mark.django_db

EXAMPLES = 250
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

printable = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=80)
segment = st.one_of(
    st.sampled_from(["", ".", "..", "%2e%2e", "user", "spawn", "api", "static", "admin", "p", "tree", "%00", "%ff", "~", "a" * 300]),
    st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="/?#"), max_size=20),
)
# A path starting with // reads as a host name to the test client itself, not
# to the app: it is left out, and // further along is kept.
paths = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts).lstrip("/"))
headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(["application/json", "text/html", "*/*", "", "application/json;q=0.1, text/html;q=", "garbage/"]) | printable,
        "X-Forwarded-For": st.sampled_from(["203.0.113.1", "1.2.3.4, 5.6.7.8", "not-an-ip", "::1", "", "300.1.1.1"]) | printable,
        "Authorization": st.sampled_from(["token api-secret", "token admin-secret", "Bearer", "token", ""]) | printable,
        "Cookie": st.builds(lambda v: f"tmpnb_visitor={v}", printable),
        "Origin": printable,
    },
)


@pytest.fixture
def pool(settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    settings.TMPNB_ADMIN_TOKEN = "admin-secret"
    pool = PoolFactory(capacity=50)
    ContainerFactory.create_batch(3, pool=pool)
    return pool


def assert_no_server_error(response):
    assert response.status_code < 500, response.content[:500]


@FUZZ
@given(path=paths, query=printable, headers=headers, method=st.sampled_from(["get", "post", "delete", "head", "options", "put"]))
def test_any_path_query_header_or_method(client, pool, path, query, headers, method):
    response = getattr(client, method)(path, QUERY_STRING=query.encode("latin-1").decode("latin-1"), headers=headers)
    assert_no_server_error(response)


@FUZZ
@given(
    endpoint=st.sampled_from(["/api/spawn", "/api/spawn/", "/api/pool", "/api/stats", "/spawn/", "/"]),
    body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]),
    headers=headers,
)
def test_any_api_body(client, pool, endpoint, body, content_type, headers):
    for method in (client.post, client.delete):
        assert_no_server_error(method(endpoint, data=body, content_type=content_type, headers=headers))


@FUZZ
@given(path_id=printable, rest=paths)
def test_any_user_path(client, pool, path_id, rest):
    assert_no_server_error(client.get(f"/user/{path_id}{rest}"))
    assert_no_server_error(client.get(f"/spawn{rest}"))


def assert_every_container_held_once():
    active = Session.objects.active()
    assert active.values("container").distinct().count() == active.count()
    assert set(active.values_list("container", flat=True)) == set(Container.objects.assigned().values_list("pk", flat=True))


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(visits=st.lists(st.tuples(st.sampled_from(["", "/", "/spawn/", "/p/default/", "/api/spawn"]), headers), min_size=1, max_size=8))
def test_fuzzed_visitors_are_each_given_a_container_of_their_own(client, pool, visits):
    """Hostile visits that do get notebooks: the ready containers run out and
    are refilled (as a spawn would), and no container is held twice."""
    ContainerFactory.create_batch(max(0, 3 - Container.objects.ready().count()), pool=pool)
    for path, visit_headers in visits:
        new_visitor(client)  # a new browser past the cookie step, unless the headers carry a cookie
        assert_no_server_error(client.get(path or "/", headers=visit_headers))
        assert_every_container_held_once()
    # Whatever the fuzzed headers did, a plain visitor after them still gets a
    # notebook, so the property above was checked against real assignments.
    assert_no_server_error(new_visitor(client).get("/"))
    assert_every_container_held_once()
    assert Session.objects.exists()  # the property was checked against real assignments
