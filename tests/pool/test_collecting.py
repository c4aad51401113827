"""Collecting everyone's work without ending anything, with Docker faked at
its boundary (tests/integration/test_collect_work.py does it with real
containers)."""

import io
import os
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pool.models import Collection, Container, Event, Session, Workshop, WorkshopPool
from pool.services import assignment, collecting, pools, room as room_service, spawning, upkeep
from tests.factories import PoolFactory
from tests.fakes import instead_of_sending

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def caps(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.TMPNB_SNAPSHOT_HOURS = 48
    settings.TMPNB_SNAPSHOT_MAX_MB = 1
    settings.TMPNB_SNAPSHOT_TIMEOUT = 60
    settings.TMPNB_COPIES_AT_ONCE = 2


@pytest.fixture
def room(fake_backend, fake_proxy):
    """Three participants holding notebooks of one pool, each with files, and one ready notebook nobody holds."""
    pool = PoolFactory(capacity=4)
    for row in pools.fill_pool(pool.pk):
        spawning.spawn_container(row.pk)
    sessions = [assignment.assign_container(pool=pool, visitor=name) for name in ("ada", "bea", "cy")]
    for session in sessions:
        fake_backend.files[session.container.name] = {"notes.txt": f"{session.visitor}'s notes\n".encode(), "data/x.csv": b"1,2\n"}
    return sessions


def contents(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def test_a_participant_who_typed_a_name_gets_it_in_their_folders_name_in_safe_characters(room):
    room_service.set_display_name(room[0], "Ada Lovelace")
    room_service.set_display_name(room[1], "../../etc/<passwd>:*? José")
    collection = collecting.collect_now(pool=room[0].container.pool, by="organiser")
    files = contents(collecting.collection_path(collection))
    assert files[f"{room[0].visitor_tag}-Ada-Lovelace/notes.txt"] == b"ada's notes\n"
    assert files[f"{room[1].visitor_tag}-etc-passwd-José/notes.txt"] == b"bea's notes\n"
    assert files[f"{room[2].visitor_tag}/notes.txt"] == b"cy's notes\n"  # no name typed


def test_a_collection_holds_a_folder_per_participant_named_by_their_label_and_ends_nothing(room, fake_backend):
    collection = collecting.collect_now(pool=room[0].container.pool, by="organiser")
    files = contents(collecting.collection_path(collection))
    for session in room:
        assert files[f"{session.visitor_tag}/notes.txt"] == f"{session.visitor}'s notes\n".encode()
        assert files[f"{session.visitor_tag}/data/x.csv"] == b"1,2\n"
    assert "Every participant's folder was copied whole." in files["README.txt"].decode()
    assert {name.split("/")[0] for name in files} == {s.visitor_tag for s in room} | {"README.txt"}  # not the ready notebook's
    assert Session.objects.active().count() == 3 and fake_backend.removed == []
    assert Container.objects.assigned().count() == 3
    assert (collection.participants, collection.incomplete, collection.expires_at - collection.taken_at) == (3, 0, timedelta(hours=48))
    event = Event.objects.get(kind=Event.Kind.COLLECTION)
    assert event.actor == "organiser" and event.details == {"participants": 3, "incomplete": 0, "size": collection.size}
    assert "work of 3 participant(s) of pool default collected for organiser" in event.message


def test_a_notebook_that_fails_or_runs_out_of_time_is_listed_and_the_others_are_collected(room, fake_backend, settings):
    failing, slow, whole = room
    del fake_backend.files[failing.container.name]  # archive_out raises "no such container"
    settings.TMPNB_SNAPSHOT_TIMEOUT = 1
    fake_backend.chunk_size = 512
    fake_backend.files[slow.container.name]["big.bin"] = bytes(20_000)  # 40 chunks: 12 seconds
    streamed = fake_backend.archive_out

    def archive_out(backend_id, path, *, timeout):
        for chunk in streamed(backend_id, path, timeout=timeout):
            if backend_id == slow.container.backend_id:
                time.sleep(0.3)
            yield chunk

    fake_backend.archive_out = archive_out

    collection = collecting.collect_now(pool=whole.container.pool, by="organiser")
    files = contents(collecting.collection_path(collection))
    assert files[f"{whole.visitor_tag}/notes.txt"] == b"cy's notes\n"
    readme = files["README.txt"].decode()
    assert "Not copied whole: 2 participant(s)." in readme
    assert f"{failing.visitor_tag}/ (0 file(s) copied):\n  the copy stopped: no such container" in readme
    assert f"{slow.visitor_tag}/" in readme and "TMPNB_SNAPSHOT_TIMEOUT (1 s)" in readme
    assert (collection.participants, collection.incomplete) == (3, 2)
    assert "2 not copied whole" in Event.objects.get(kind=Event.Kind.COLLECTION).message
    assert Session.objects.active().count() == 3


def test_files_over_the_caps_are_left_out_and_named_in_the_readme(room, fake_backend, settings):
    settings.TMPNB_SNAPSHOT_MAX_FILES = 2  # each participant holds notes.txt and data/x.csv
    fake_backend.files[room[0].container.name]["big.bin"] = bytes(2 * 1024 * 1024)
    fake_backend.files[room[1].container.name]["extra.txt"] = b"one too many"
    collection = collecting.collect_now(pool=room[0].container.pool, by="organiser")
    files = contents(collecting.collection_path(collection))
    readme = files["README.txt"].decode()
    assert f"{room[0].visitor_tag}/big.bin" not in files and f"    big.bin ({2 * 1024 * 1024} bytes)" in readme
    assert f"{room[1].visitor_tag}/extra.txt" not in files and "    extra.txt (12 bytes)" in readme
    assert "1 file(s) left out, over TMPNB_SNAPSHOT_MAX_MB (1 MB) or TMPNB_SNAPSHOT_MAX_FILES (2)" in readme
    assert collection.incomplete == 2


def test_notebooks_are_copied_side_by_side_within_the_bound(room, fake_backend, settings):
    settings.TMPNB_COPIES_AT_ONCE = 2
    copying, most = set(), []
    lock = threading.Lock()
    original = fake_backend.archive_out

    def archive_out(backend_id, path, *, timeout):
        with lock:
            copying.add(backend_id)
            most.append(len(copying))
        try:
            time.sleep(0.2)
            yield from original(backend_id, path, timeout=timeout)
        finally:  # closed by the copy, which stops reading at the tar's end
            with lock:
                copying.discard(backend_id)

    fake_backend.archive_out = archive_out
    collecting.collect_now(pool=room[0].container.pool, by="organiser")
    assert max(most) == 2


def test_nobody_in_the_pool_gives_a_zip_that_says_so(fake_backend, fake_proxy):
    collection = collecting.collect_now(pool=PoolFactory(), by="organiser")
    files = contents(collecting.collection_path(collection))
    assert list(files) == ["README.txt"] and "Nobody held a notebook of this pool." in files["README.txt"].decode()
    assert collection.participants == 0


def test_a_full_disk_is_recorded_and_no_zip_is_kept(room, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(collecting, "_write_collection", full)
    collection = collecting.collect_now(pool=room[0].container.pool, by="organiser")
    assert (collection.file_name, collection.error) == ("", "[Errno 28] No space left on device")
    assert list(collecting.collections_dir().iterdir()) == []
    assert "could not be collected for organiser: [Errno 28]" in Event.objects.get(kind=Event.Kind.COLLECTION).message


def test_the_command_writes_the_zip_where_it_is_told(room, tmp_path):
    out = io.StringIO()
    call_command("collect_work", "default", "--out", str(tmp_path / "week1.zip"), stdout=out)
    assert out.getvalue() == f"Pool default: the work of 3 participant(s) written to {tmp_path / 'week1.zip'}.\n"
    assert contents(tmp_path / "week1.zip")[f"{room[0].visitor_tag}/notes.txt"] == b"ada's notes\n"
    assert Collection.objects.get().by == "manage.py"


def test_the_command_refuses_an_unknown_pool_and_an_unwritable_file(room, tmp_path):
    with pytest.raises(CommandError, match="no pool named 'nope'; pools: default"):
        call_command("collect_work", "nope", "--out", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="cannot write /nonexistent/x.zip: No such file or directory"):
        call_command("collect_work", "default", "--out", "/nonexistent/x.zip")


def test_the_admin_action_queues_a_collection_the_organiser_downloads(room, admin_client, monkeypatch):
    instead_of_sending(monkeypatch, "pool.tasks.collect_work", collecting.collect_work)
    pool = room[0].container.pool
    response = admin_client.post("/admin/pool/pool/", {"action": "collect_work", "_selected_action": [pool.pk]}, follow=True)
    assert "The work is being collected" in response.content.decode()
    collection = Collection.objects.get()
    assert collection.by == "admin" and collection.participants == 3
    listing = admin_client.get("/admin/pool/collection/").content.decode()
    assert f'href="/admin/pool/collection/{collection.pk}/work.zip"' in listing
    download = admin_client.get(f"/admin/pool/collection/{collection.pk}/work.zip")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    zipped = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert zipped.read(f"{room[1].visitor_tag}/notes.txt") == b"bea's notes\n"


def test_the_heartbeat_prunes_collections_past_their_hours_and_what_a_stopped_one_left(room, fake_backend):
    collection = collecting.collect_now(pool=room[0].container.pool, by="organiser")
    stopped = Collection.objects.create(pool=collection.pool, by="organiser", started_at=timezone.now() - timedelta(hours=49))
    leftover = collecting.collections_dir() / ".parts-abc"
    leftover.mkdir()
    old = time.time() - 49 * 3600
    os.utime(leftover, (old, old))
    upkeep.heartbeat()
    assert collecting.collection_path(collection).exists()
    Collection.objects.filter(pk=collection.pk).update(expires_at=timezone.now())
    upkeep.heartbeat()
    assert not Path(collecting.collections_dir() / collection.file_name).exists()
    assert Collection.objects.get(pk=collection.pk).file_name == ""
    assert Collection.objects.get(pk=stopped.pk).error == "its worker stopped before it finished"
    assert not leftover.exists()


def test_a_workshops_collection_holds_the_participants_of_every_pool_of_it(room, workshop):
    intro, dee = workshop
    collection = collecting.collect_work(Collection.objects.create(pool=dee.container.pool, workshop=intro, by="workshop Intro").pk)
    files = contents(collecting.collection_path(collection))
    assert files[f"{dee.visitor_tag}/analysis.R"] == b"x <- 1\n" and collection.participants == 4
    assert all(files[f"{session.visitor_tag}/notes.txt"] for session in room)
    assert "everyone holding a notebook of pool default, pool r at" in files["README.txt"].decode()
    assert "work of 4 participant(s) of pool default, pool r collected for workshop Intro" in Event.objects.get(kind=Event.Kind.COLLECTION).message


@pytest.fixture
def workshop(room, fake_backend):
    """The room's pool and a pool r where dee holds a notebook, as one workshop."""
    r = PoolFactory(name="r", capacity=1)
    for row in pools.fill_pool(r.pk):
        spawning.spawn_container(row.pk)
    dee = assignment.assign_container(pool=r, visitor="dee")
    fake_backend.files[dee.container.name] = {"analysis.R": b"x <- 1\n"}
    start = timezone.now()
    intro = Workshop.objects.create(name="Intro", starts_at=start, ends_at=start + timedelta(hours=1))
    for pool, headcount in ((room[0].container.pool, 3), (r, 1)):
        WorkshopPool.objects.create(workshop=intro, pool=pool, headcount=headcount)
    return intro, dee


def test_the_workshop_admin_collects_its_pools_into_one_zip_and_ends_nothing(room, workshop, admin_client, monkeypatch):
    instead_of_sending(monkeypatch, "pool.tasks.collect_work", collecting.collect_work)
    intro, dee = workshop
    response = admin_client.post("/admin/pool/workshop/", {"action": "collect_work", "_selected_action": [intro.pk]}, follow=True)
    assert "The work is being collected" in response.content.decode()
    collection = Collection.objects.get()
    assert (collection.workshop, collection.by, collection.participants) == (intro, "admin", 4)
    files = contents(collecting.collection_path(collection))
    assert files[f"{dee.visitor_tag}/analysis.R"] == b"x <- 1\n" and files[f"{room[2].visitor_tag}/notes.txt"] == b"cy's notes\n"
    assert Session.objects.active().count() == 4 and Workshop.objects.get().finished_at is None
    assert "Download" in admin_client.get(f"/admin/pool/workshop/{intro.pk}/change/").content.decode()  # at a glance
    assert "workshop Intro (all its pools)" in admin_client.get("/admin/pool/collection/").content.decode()
    download = admin_client.get(f"/admin/pool/collection/{collection.pk}/work.zip")
    assert download["Content-Disposition"].startswith('attachment; filename="work-Intro-')


def test_a_workshop_without_a_pool_is_refused_and_nothing_is_asked(fake_backend, fake_proxy, admin_client):
    start = timezone.now()
    empty = Workshop.objects.create(name="Empty", starts_at=start, ends_at=start + timedelta(hours=1))
    with pytest.raises(collecting.CollectionError, match="workshop Empty has no pool to collect"):
        collecting.ask_for_collection(workshop=empty, by="organiser")
    response = admin_client.post("/admin/pool/workshop/", {"action": "collect_work", "_selected_action": [empty.pk]}, follow=True)
    said = response.content.decode()
    assert "Workshop Empty has no pool to collect" in said and "The work is being collected" not in said
    assert not Collection.objects.exists()


def test_of_several_workshops_ticked_each_that_can_be_collected_is(room, workshop, admin_client, monkeypatch):
    instead_of_sending(monkeypatch, "pool.tasks.collect_work", collecting.collect_work)
    start = timezone.now()
    empty = Workshop.objects.create(name="Empty", starts_at=start, ends_at=start + timedelta(hours=1))
    response = admin_client.post("/admin/pool/workshop/", {"action": "collect_work", "_selected_action": [empty.pk, workshop[0].pk]}, follow=True)
    said = response.content.decode()
    assert "Workshop Empty has no pool to collect" in said and "The work is being collected" in said
    assert Collection.objects.get().workshop == workshop[0]


def test_the_command_collects_a_workshop_and_refuses_a_bad_name_changing_nothing(room, workshop, tmp_path):
    intro, dee = workshop
    out = io.StringIO()
    call_command("collect_work", "--workshop", "Intro", "--out", str(tmp_path / "intro.zip"), stdout=out)
    assert out.getvalue() == f"Workshop Intro (pools default, r): the work of 4 participant(s) written to {tmp_path / 'intro.zip'}.\n"
    assert contents(tmp_path / "intro.zip")[f"{dee.visitor_tag}/analysis.R"] == b"x <- 1\n"
    assert Collection.objects.get().workshop == intro
    with pytest.raises(CommandError, match="no workshop named 'Nope'; workshops: Intro"):
        call_command("collect_work", "--workshop", "Nope", "--out", str(tmp_path / "x.zip"))
    start = timezone.now()
    Workshop.objects.create(name="Intro", starts_at=start, ends_at=start + timedelta(hours=1))
    with pytest.raises(CommandError, match="2 workshops are named 'Intro'"):
        call_command("collect_work", "--workshop", "Intro", "--out", str(tmp_path / "x.zip"))
    assert Collection.objects.count() == 1 and not (tmp_path / "x.zip").exists()
