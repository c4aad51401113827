"""The disk a notebook may fill (TMPNB_DISK_LIMIT): its participant is warned
as it nears the limit and, past it, their session ends with their work saved,
with Docker and the proxy faked at their boundary
(tests/integration/test_disk_limit.py does it with a real container)."""

import pytest

from pool.backends.base import BackendError
from pool.models import Container, Event, Session, Snapshot
from pool.services import assignment, disk, pools, spawning
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def disk_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.TMPNB_DISK_LIMIT = 100 * MB
    settings.TMPNB_SNAPSHOT_HOURS = 48
    settings.TMPNB_SNAPSHOT_MAX_MB = 1


@pytest.fixture
def holding(client, fake_backend, fake_proxy):
    """``client`` holds a notebook holding a file; a second notebook waits ready. Returns the session."""
    pool = PoolFactory(capacity=2)
    for row in pools.fill_pool(pool.pk):
        spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    session = Session.objects.select_related("container__pool").get()
    fake_backend.files[session.container.name] = {"notes.txt": b"my work\n"}
    return session


def written(fake_backend, **sizes):
    """What the backend reports each container (by its row) to have written."""
    fake_backend.disk = {Container.objects.get(pk=pk).name: size for pk, size in sizes.items()}


def test_a_notebook_past_the_limit_is_ended_with_its_work_saved_and_the_organiser_told(holding, fake_backend):
    written(fake_backend, **{str(holding.container_id): 150 * MB})
    assert disk.check_disk() == {"warned": 0, "ended": 1}
    holding.refresh_from_db()
    assert holding.end_reason == Session.EndReason.DISK_FULL
    assert holding.container.name in fake_backend.removed
    snapshot = Snapshot.objects.get(session=holding)
    assert snapshot.file_count == 1 and snapshot.file_name
    [event] = Event.objects.filter(kind=Event.Kind.DISK)
    assert event.session == holding and event.details["used"] == 150 * MB and event.details["limit"] == 100 * MB
    assert event.message == f"{holding.container.name} ended: 150 MB written, over TMPNB_DISK_LIMIT (100 MB)"


def test_the_ended_page_tells_its_holder_why_and_offers_the_files(client, holding, fake_backend):
    written(fake_backend, **{str(holding.container_id): 150 * MB})
    disk.check_disk()
    page = client.get(f"/user/{holding.container.path_id}/lab").content.decode()
    assert '<p id="ended-why">It was shut down because it wrote more than the 100 MB of disk a notebook may.</p>' in page
    assert 'id="download-work"' in page
    french = client.get(f"/user/{holding.container.path_id}/lab", headers={"Accept-Language": "fr"}).content.decode()
    assert "parce qu’il a écrit plus que les 100 MB de disque" in french


def test_a_notebook_nearing_the_limit_is_warned_once_and_left_running(holding, fake_backend):
    written(fake_backend, **{str(holding.container_id): 85 * MB})
    assert disk.check_disk() == {"warned": 1, "ended": 0}
    assert disk.check_disk() == {"warned": 0, "ended": 0}  # told once, not at every check
    holding.refresh_from_db()
    assert holding.is_active and holding.container.disk_used == 85 * MB
    [event] = Event.objects.filter(kind=Event.Kind.DISK)
    assert event.message == f"{holding.container.name} warned: 85 MB written of TMPNB_DISK_LIMIT (100 MB)"


def test_the_holders_banner_says_how_much_disk_is_left(client, holding, fake_backend):
    written(fake_backend, **{str(holding.container_id): 85 * MB})
    disk.check_disk()
    answer = client.get(f"/api/notebooks/{holding.container.path_id}/time-left").json()
    assert answer["warn"] is True and answer["reason"] == Session.EndReason.DISK_FULL
    assert (answer["disk_used"], answer["disk_limit"]) == (85 * MB, 100 * MB)
    assert answer["message"].startswith("This notebook has written 85 MB of the 100 MB it may write; past that it will be shut down.")
    french = client.get(f"/api/notebooks/{holding.container.path_id}/time-left", headers={"Accept-Language": "fr"}).json()
    assert french["message"].startswith("Ce notebook a écrit 85 MB sur les 100 MB permis")
    written(fake_backend, **{str(holding.container_id): 10 * MB})  # they deleted files
    disk.check_disk()
    assert client.get(f"/api/notebooks/{holding.container.path_id}/time-left").json()["warn"] is False


def test_notebooks_under_the_limit_and_ready_ones_are_left_alone(holding, fake_backend):
    ready = Container.objects.ready().get()
    written(fake_backend, **{str(holding.container_id): 10 * MB, str(ready.pk): 500 * MB})
    assert disk.check_disk() == {"warned": 0, "ended": 0}
    assert not fake_backend.removed and not Event.objects.filter(kind=Event.Kind.DISK).exists()


def test_without_a_limit_docker_is_not_even_asked(holding, fake_backend, settings):
    settings.TMPNB_DISK_LIMIT = None

    def refuse():
        raise AssertionError("asked for sizes")

    fake_backend.disk_usage = refuse
    assert disk.check_disk() == {"warned": 0, "ended": 0}


def test_a_backend_that_cannot_say_ends_nothing(holding, fake_backend):
    def refuse():
        raise BackendError("Docker is away")

    fake_backend.disk_usage = refuse
    assert disk.check_disk() == {"warned": 0, "ended": 0}
    holding.refresh_from_db()
    assert holding.is_active


def test_what_a_participant_saved_counts_from_what_their_notebook_held_ready(holding, fake_backend):
    ready = Container.objects.ready().get()
    written(fake_backend, **{str(holding.container_id): 4 * MB, str(ready.pk): 3 * MB})  # the materials, the server's start
    disk.check_disk()
    assert disk.saved_since_landing(Container.objects.get(pk=ready.pk)) is None  # nobody landed in it

    assert assignment.assign_container(pool=ready.pool, visitor="second").container_id == ready.pk
    written(fake_backend, **{str(holding.container_id): 6 * MB, str(ready.pk): 5 * MB})
    disk.check_disk()

    assert disk.saved_since_landing(Container.objects.get(pk=ready.pk)) == 2 * MB  # measured while ready: the rest is theirs
    assert disk.saved_since_landing(Container.objects.get(pk=holding.container_id)) == 2 * MB  # first seen held, at 4 MB


def test_saved_work_is_none_before_a_check_and_never_below_zero(holding, fake_backend):
    assert disk.saved_since_landing(holding.container) is None
    written(fake_backend, **{str(holding.container_id): 4 * MB})
    disk.check_disk()
    written(fake_backend, **{str(holding.container_id): 1 * MB})  # they deleted materials they were given
    disk.check_disk()
    assert disk.saved_since_landing(Container.objects.get(pk=holding.container_id)) == 0
