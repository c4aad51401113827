"""The organiser's admin: kill actions against real containers and routes."""

import html
import re

import pytest
import requests

from pool.backends import docker as docker_backend
from pool.models import Container, Pool, Session
from pool.services import assignment, materials, pools, spawning
from tests.factories import ContainerFactory, PoolFactory, SessionFactory, pool_admin_form


@pytest.fixture
def live_session(clean_pools, endings_finish_here):
    pool = PoolFactory(capacity=2)
    for container in pools.fill_pool(pool.pk):
        spawning.spawn_container(container.pk)
    return assignment.assign_container(pool=pool, visitor="participant")


def test_killing_a_session_stops_its_container_deletes_its_route_and_says_who(admin_client, admin_user, live_session, proxy):
    url = f"{proxy.notebook_url}{live_session.container.base_path}"
    assert requests.get(url, timeout=5).status_code == 200
    response = admin_client.post("/admin/pool/session/", {"action": "kill", "_selected_action": [live_session.pk]}, follow=True)
    assert "Killed 1 session(s)." in response.content.decode()
    live_session.refresh_from_db()
    assert live_session.end_reason == Session.EndReason.KILLED
    assert live_session.describe_end() == f"killed by {admin_user.username}"
    assert Container.objects.get(pk=live_session.container_id).state == Container.State.GONE
    assert live_session.container.backend_id not in [c.backend_id for c in docker_backend.list_containers()]
    assert live_session.container.route_path not in proxy.routes()
    # The participant's URL no longer reaches a notebook: the proxy falls back to the app.
    assert "container" not in requests.get(url, timeout=5).text


def test_killing_a_ready_container_removes_it(admin_client, live_session, proxy):
    ready = Container.objects.ready().get()
    response = admin_client.post("/admin/pool/container/", {"action": "kill", "_selected_action": [ready.pk]}, follow=True)
    assert "Killed 1 container(s)." in response.content.decode()
    assert Container.objects.get(pk=ready.pk).state == Container.State.GONE
    assert [c.backend_id for c in docker_backend.list_containers()] == [live_session.container.backend_id]


@pytest.mark.django_db
def test_the_admin_pages_list_pools_containers_and_sessions(admin_client):
    pool = PoolFactory()
    assert admin_client.get("/admin/pool/pool/").status_code == 200
    assert admin_client.get(f"/admin/pool/pool/{pool.pk}/change/").status_code == 200
    assert admin_client.get("/admin/pool/container/").status_code == 200
    assert admin_client.get("/admin/pool/session/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"command": "serve {base_path} {who}"}, "unknown placeholder {who}"),
        ({"command": "serve {base_path} --root='/home/jovyan"}, "the command's quoting is unbalanced (No closing quotation)"),
        ({"capacity": -5}, "Ensure this value is greater than or equal to 0."),
        ({"capacity": 10**9}, "Ensure this value is less than or equal to 10000."),
        pytest.param({"image": "tmpnb/no-such-image:9"}, "The image tmpnb/no-such-image:9 is not on this host", marks=pytest.mark.integration),
        ({"host_directories": "/var/run/docker.sock:/s"}, "must never see /var/run/docker.sock"),
        ({"ready_target": 50, "capacity": 5}, "The ready target cannot exceed the capacity."),
        ({"mem_limit": "lots"}, "A size such as 512m or 2g."),
        ({"materials_source": "workshop.zip"}, "materials must be a git URL or an absolute path of a folder or an archive"),
    ],
)
def test_bad_pool_settings_are_refused_with_the_reason(admin_client, changes, message):
    pool = PoolFactory(capacity=3)
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", pool_admin_form(pool, **changes))
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    saved = Pool.objects.get(pk=pool.pk)
    assert (saved.capacity, saved.command, saved.image) == (3, pool.command, pool.image)


@pytest.mark.django_db
@pytest.mark.integration  # the form asks Docker whether the image is there
def test_a_good_change_is_saved(admin_client):
    pool = PoolFactory(capacity=3)
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", pool_admin_form(pool, capacity=7))
    assert response.status_code == 302
    assert Pool.objects.get(pk=pool.pk).capacity == 7


@pytest.mark.django_db
def test_a_new_pool_is_offered_one_core_per_notebook_which_the_organiser_may_empty(admin_client):
    page = admin_client.get("/admin/pool/pool/add/").content.decode()
    assert re.search(r'<input[^>]*name="cpu_quota"[^>]*value="100000"', page)
    assert Pool(name="made-elsewhere").cpu_quota == 100_000
    assert Pool._meta.get_field("cpu_quota").blank  # emptied: no cap


@pytest.mark.django_db
def test_a_paused_pool_says_why_and_can_be_resumed(admin_client):
    pool = PoolFactory(paused_reason="paused after 5 failed spawns in a row; the last: image gone", failure_streak=5)
    listing = admin_client.get("/admin/pool/pool/").content.decode()
    assert "PAUSED: paused after 5 failed spawns in a row; the last: image gone" in listing
    admin_client.post("/admin/pool/pool/", {"action": "resume", "_selected_action": [pool.pk]})
    pool.refresh_from_db()
    assert (pool.paused_reason, pool.failure_streak) == ("", 0)


def test_the_admin_needs_a_login(client):
    response = client.get("/admin/pool/session/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_the_pool_list_shows_the_queue_length(admin_client):
    pool = PoolFactory(capacity=3)
    ContainerFactory.create_batch(2, pool=pool, state=Container.State.ASSIGNED)
    for visitor in ("a", "b", "c"):
        assignment.admit(pool=pool, visitor=visitor)
    listing = admin_client.get("/admin/pool/pool/").content.decode()
    assert '<td class="field-waiting">3</td>' in listing
    assert '<td class="field-in_use">2</td>' in listing
    assert admin_client.get("/admin/pool/queueentry/").status_code == 200


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def zip_of(files):
    import io
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)
    return data.getvalue()


@pytest.mark.django_db
@pytest.mark.integration  # the form asks Docker whether the image is there
def test_an_uploaded_archive_becomes_the_pool_s_materials_and_the_page_shows_the_version(admin_client, var_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    pool = PoolFactory(capacity=3)
    upload = SimpleUploadedFile("Day 1.zip", zip_of({"intro.ipynb": b"{}"}), content_type="application/zip")
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", pool_admin_form(pool, materials_upload=upload))
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.materials_source.startswith(f"{var_dir}/materials/uploads/") and pool.materials_source.endswith("/Day_1.zip")
    assert "preparing... Current: none" in admin_client.get(f"/admin/pool/pool/{pool.pk}/change/").content.decode()
    assert materials.prepare_materials(pool.pk) == 1
    page = html.unescape(admin_client.get(f"/admin/pool/pool/{pool.pk}/change/").content.decode())
    assert "version 1, prepared " in page and f"1 file(s), 2 bytes from {pool.materials_source}" in page
    ContainerFactory(pool=pool, materials_version=1)
    assert '<td class="field-materials_version">1</td>' in admin_client.get("/admin/pool/container/").content.decode()


@pytest.mark.django_db
@pytest.mark.integration  # the form asks Docker whether the image is there
@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("notes.pdf", 10, "notes.pdf is not an archive: upload a file ending in .zip, .tar.gz, .tgz, .tar."),
        ("huge.zip", 1_500_000, "huge.zip is 1.5 MB, over the 1 MB that TMPNB_MATERIALS_MAX_MB allows."),
    ],
)
def test_an_upload_that_is_no_archive_or_too_big_is_refused_and_the_materials_stay(admin_client, settings, var_dir, name, size, message):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.TMPNB_MATERIALS_MAX_MB = 1
    pool = PoolFactory(materials_source="/srv/day1.zip")
    upload = SimpleUploadedFile(name, b"\0" * size)
    response = admin_client.post(f"/admin/pool/pool/{pool.pk}/change/", pool_admin_form(pool, materials_upload=upload))
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert Pool.objects.get(pk=pool.pk).materials_source == "/srv/day1.zip"


@pytest.mark.django_db
def test_refused_materials_show_why_on_the_pool_and_the_refresh_action_prepares_again(admin_client, var_dir, tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    pool = PoolFactory(materials_source=str(tmp_path / "broken.zip"))
    materials.prepare_materials(pool.pk)
    listing = html.unescape(admin_client.get("/admin/pool/pool/").content.decode())
    assert "REFUSED: broken.zip is not a readable zip or tar.gz archive" in listing and "Keeping: none" in listing
    admin_client.post("/admin/pool/pool/", {"action": "refresh_materials", "_selected_action": [pool.pk]})
    assert materials.pools_with_materials_to_prepare() == [pool.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["session", "container", "queueentry"])
def test_the_service_s_records_offer_no_delete_only_the_kill(admin_client, model):
    SessionFactory()
    form = admin_client.get(f"/admin/pool/{model}/").context["action_form"]  # None: no action at all
    actions = [value for value, _ in form.fields["action"].choices if value] if form else []
    assert "delete_selected" not in actions
    assert ("kill" in actions) == (model != "queueentry")


@pytest.mark.django_db
def test_a_live_session_cannot_be_deleted_behind_the_services_back(admin_client):
    """Deleting it would leave its container assigned to nobody, never culled."""
    session = SessionFactory()
    response = admin_client.post("/admin/pool/session/", {"action": "delete_selected", "_selected_action": [session.pk], "post": "yes"})
    assert response.status_code in (200, 302)
    assert admin_client.post(f"/admin/pool/session/{session.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Session.objects.active().filter(pk=session.pk).exists()
    assert Container.objects.get(pk=session.container_id).state == Container.State.ASSIGNED


@pytest.mark.django_db
def test_a_ready_container_cannot_be_deleted_behind_the_services_back(admin_client):
    """Its row gone, its Docker container would run on as an orphan."""
    container = ContainerFactory()
    admin_client.post("/admin/pool/container/", {"action": "delete_selected", "_selected_action": [container.pk], "post": "yes"})
    assert admin_client.post(f"/admin/pool/container/{container.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Container.objects.get(pk=container.pk).state == Container.State.READY
