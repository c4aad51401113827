"""Saving a participant's work at the end of their session, with Docker and
the proxy faked at their boundary (tests/integration/test_snapshots.py does
it on the real stack)."""

import dataclasses
import io
import json
import os
import re
import tarfile
import threading
import time
import types
import zipfile
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from pool import tasks
from pool.backends.base import BackendError
from pool.models import Container, Event, Session, Snapshot
from pool.services import assignment, ending, pools, snapshots, spawning, upkeep, worker
from pool.services.snapshots import notebook_root
from pool.tasks import restore_work_task
from tests.factories import PoolFactory, SessionFactory, new_visitor, on_notebook_origin
from tests.fakes import HardLink, instead_of_sending

pytestmark = pytest.mark.django_db(transaction=True)

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.fixture(autouse=True)
def snapshot_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.TMPNB_SNAPSHOT_HOURS = 48
    settings.TMPNB_SNAPSHOT_MAX_MB = 1
    settings.TMPNB_SNAPSHOT_TIMEOUT = 60


@pytest.fixture
def held(fake_backend, fake_proxy):
    """A session of visitor "ada" whose notebook holds a file and a notebook."""
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    session = assignment.assign_container(pool=pool, visitor="ada")
    fake_backend.files[row.name] = {"notes.txt": b"my work\n", "analysis.ipynb": NOTEBOOK}
    return session


def zip_contents(snapshot):
    with zipfile.ZipFile(snapshots.snapshot_path(snapshot)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def test_an_idle_cull_saves_the_files_as_a_zip_before_the_container_is_removed(held, fake_backend):
    Session.objects.filter(pk=held.pk).update(last_activity=timezone.now() - timedelta(hours=2))
    upkeep.cull_sessions()
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"notes.txt": b"my work\n", "analysis.ipynb": NOTEBOOK}
    assert (snapshot.file_count, snapshot.left_out, snapshot.error) == (2, [], "")
    assert (snapshot.owner_uid, snapshot.owner_gid) == (1000, 100)
    assert snapshot.expires_at - snapshot.taken_at == timedelta(hours=48)
    assert held.container.name in fake_backend.removed
    event = Event.objects.get(kind=Event.Kind.SNAPSHOT)
    assert event.session_id == held.pk and event.details == {"size": snapshot.size, "files": 2, "left_out": 0}


def test_a_kill_and_a_stop_of_the_service_save_the_files_too(held, fake_backend):
    ending.kill_sessions([held], by="organiser")
    assert zip_contents(Snapshot.objects.get(session=held))["notes.txt"] == b"my work\n"
    [row] = pools.fill_pool(held.container.pool_id)
    spawning.spawn_container(row.pk)
    second = assignment.assign_container(pool=held.container.pool, visitor="bea")
    fake_backend.files[row.name] = {"b.txt": b"bea"}
    ending.stop_all_containers()
    assert zip_contents(Snapshot.objects.get(session=second)) == {"b.txt": b"bea"}


def test_a_stop_of_the_service_waits_for_a_copy_another_worker_is_making(held, fake_backend, settings):
    name = held.container.name
    Container.objects.filter(pk=held.container.pk).move_to(Container.State.STOPPING)
    Session.objects.filter(pk=held.pk).end(Session.EndReason.KILLED)
    # Another worker took the copy and is making it: its lease is live.
    snapshot = Snapshot.objects.create(session=held, lease_until=timezone.now() + timedelta(seconds=30))
    stopping = threading.Thread(target=ending.stop_all_containers)
    stopping.start()
    stopping.join(1.5)
    assert stopping.is_alive() and name not in fake_backend.removed  # not removed under the copy
    assert snapshot.close()  # the copy is done
    stopping.join(30)
    assert not stopping.is_alive() and name in fake_backend.removed


def test_a_stop_does_not_wait_for_a_copy_whose_worker_died(held, fake_backend):
    Container.objects.filter(pk=held.container.pk).move_to(Container.State.STOPPING)
    Session.objects.filter(pk=held.pk).end(Session.EndReason.KILLED)
    Snapshot.objects.create(session=held, lease_until=timezone.now() - timedelta(seconds=1))
    ending.stop_all_containers()
    assert held.container.name in fake_backend.removed


def test_files_over_the_size_cap_are_left_out_and_listed(held, fake_backend):
    big = b"x" * (700 * 1024)
    fake_backend.files[held.container.name] = {"a.bin": big, "b.bin": big, "c.txt": b"small"}
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"a.bin": big, "c.txt": b"small"}
    assert snapshot.left_out == [{"path": "b.bin", "size": len(big)}] and snapshot.left_out_count == 1
    assert "1 left out" in Event.objects.get(kind=Event.Kind.SNAPSHOT).message


def test_files_past_the_count_cap_are_left_out_and_only_the_first_of_them_named(client, ended_by_kill, fake_backend, settings, monkeypatch):
    settings.TMPNB_SNAPSHOT_MAX_FILES = 5
    monkeypatch.setattr(snapshots, "LEFT_OUT_LISTED", 3)
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    fake_backend.files[row.name] = {f"empty-{n:02}.txt": b"" for n in range(20)}
    ending.kill_sessions(Session.objects.active(), by="organiser")
    snapshot = Snapshot.objects.get(session__container=row)
    assert sorted(zip_contents(snapshot)) == [f"empty-{n:02}.txt" for n in range(5)]
    assert snapshot.left_out == [{"path": f"empty-{n:02}.txt", "size": 0} for n in range(5, 8)]
    assert snapshot.left_out_count == 15
    assert "15 left out" in Event.objects.filter(kind=Event.Kind.SNAPSHOT).latest("pk").message
    page = client.get(f"/user/{row.path_id}/lab").content.decode()
    assert re.search(r'<ul id="left-out"><li>empty-05.txt</li><li>empty-06.txt</li><li>empty-07.txt</li></ul>', page)
    assert "and 12 more files" in page


def test_a_hard_link_is_kept_as_a_file_of_its_own(held, fake_backend):
    fake_backend.files[held.container.name] = {"data.csv": b"1,2\n", "copy.csv": HardLink("data.csv"), "z.txt": b"after"}
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"data.csv": b"1,2\n", "copy.csv": b"1,2\n", "z.txt": b"after"}
    assert (snapshot.file_count, snapshot.left_out) == (3, [])


def test_a_hard_link_to_a_file_left_out_is_left_out_too(held, fake_backend):
    big = b"x" * (1100 * 1024)  # over the 1 MB cap
    fake_backend.files[held.container.name] = {"big.bin": big, "again.bin": HardLink("big.bin")}
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert [item["path"] for item in snapshot.left_out] == ["big.bin", "again.bin"]


def test_a_name_that_is_not_utf8_is_kept_under_a_safe_name_and_the_rest_still_saved(held, fake_backend):
    # b"caf\xe9" (Latin-1), as tarfile reads it
    fake_backend.files[held.container.name] = {"caf\udce9.txt": b"latin", "d\udcff/inner.txt": b"in", "z.txt": b"after"}
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"caf\ufffd.txt": b"latin", "d\ufffd/inner.txt": b"in", "z.txt": b"after"}
    assert (snapshot.error, snapshot.left_out) == ("", [])


def test_a_copy_that_runs_out_of_time_keeps_what_it_read_and_the_container_is_still_removed(held, fake_backend, settings):
    settings.TMPNB_SNAPSHOT_TIMEOUT = 1
    fake_backend.files[held.container.name] = {"first.txt": b"1", "second.bin": b"y" * 40000}
    fake_backend.on_chunk = lambda: time.sleep(0.3)  # ten chunks: three seconds
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert "TMPNB_SNAPSHOT_TIMEOUT" in snapshot.error
    assert zip_contents(snapshot)["first.txt"] == b"1"
    assert snapshot.left_out == [{"path": "second.bin", "size": 40000, "cut_short": True}]
    assert held.container.name in fake_backend.removed
    assert "stopped early" in Event.objects.get(kind=Event.Kind.SNAPSHOT).message


def test_a_failing_copy_is_recorded_and_the_container_is_still_removed(held, fake_backend):
    del fake_backend.files[held.container.name]
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert snapshot.file_name == "" and "no such container" in snapshot.error
    assert snapshots.ended_work(held.container, "ada") == ("none", snapshot)
    assert held.container.name in fake_backend.removed
    assert "no work saved" in Event.objects.get(kind=Event.Kind.SNAPSHOT).message


def test_a_copy_that_meets_the_engine_restarting_waits_for_it_and_saves_everything(held, fake_backend, monkeypatch):
    fake_backend.files[held.container.name] = {"notes.txt": b"mine"}
    archive_out, tries = fake_backend.archive_out, []

    def restarting(backend_id, path, *, timeout):  # a stream, as Docker's: it raises once read
        tries.append(timeout)
        if len(tries) < 3:
            raise BackendError("copying /work out of it: Connection aborted", unreachable=True)
        yield from archive_out(backend_id, path, timeout=timeout)

    monkeypatch.setattr(fake_backend, "archive_out", restarting)
    monkeypatch.setattr(snapshots, "ENGINE_AWAY_PAUSE", 0.01)
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert len(tries) == 3 and tries[2] < tries[0]  # the later tries have what is left of the copy's time
    assert zip_contents(snapshot) == {"notes.txt": b"mine"} and snapshot.error == ""
    assert held.container.name in fake_backend.removed


def test_a_copy_gives_up_on_an_engine_that_stays_away_within_its_own_time(held, fake_backend, monkeypatch, settings):
    settings.TMPNB_SNAPSHOT_TIMEOUT = 1
    tries = []

    def away(backend_id, path, *, timeout):
        tries.append(timeout)
        raise BackendError("copying /work out of it: Connection refused", unreachable=True)
        yield  # a stream, as Docker's: it raises once read

    monkeypatch.setattr(fake_backend, "archive_out", away)
    monkeypatch.setattr(snapshots, "ENGINE_AWAY_PAUSE", 0.2)
    ending.kill_sessions([held], by="organiser")
    assert 2 <= len(tries) <= 5  # tried again, and stopped once the copy's second was over
    assert "Connection refused" in Snapshot.objects.get(session=held).error


@pytest.fixture
def queued_ends(monkeypatch):
    """The ends queued for the worker (finish_retirement_task), not run."""
    queued = []
    instead_of_sending(monkeypatch, worker.FINISH_RETIREMENT, lambda *args, **kwargs: queued.append((args, kwargs)))
    return queued


def test_a_container_that_stopped_on_its_own_has_its_files_saved_by_the_worker_before_it_is_removed(held, fake_backend, queued_ends):
    name = held.container.name
    fake_backend.running[name] = dataclasses.replace(fake_backend.running[name], status="exited")
    assert upkeep.reconcile().dead_replaced == 1
    # Not in the heartbeat: the copy is queued for the worker, and the container kept for it.
    assert name not in fake_backend.removed and not Snapshot.objects.exists()
    assert snapshots.ended_work(held.container, "ada") == ("saving", None)
    [(args, kwargs)] = queued_ends
    tasks.finish_retirement_task(*args, **kwargs)
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"notes.txt": b"my work\n", "analysis.ipynb": NOTEBOOK}
    assert snapshots.ended_work(held.container, "ada") == ("kept", snapshot)
    assert name in fake_backend.removed
    assert Container.objects.get(pk=held.container_id).state == Container.State.GONE


def test_a_container_that_vanished_is_recorded_as_unsaved_and_its_visitor_is_told(held, fake_backend, queued_ends):
    fake_backend.running.clear()
    upkeep.reconcile()
    assert queued_ends == []  # nothing to copy: ended in the heartbeat
    snapshot = Snapshot.objects.get(session=held)
    assert snapshot.file_name == "" and snapshot.error == ending.VANISHED
    assert snapshots.ended_work(held.container, "ada") == ("none", snapshot)
    assert "no work saved" in Event.objects.get(kind=Event.Kind.SNAPSHOT).message


def test_a_container_lost_with_its_node_gets_no_snapshot_and_its_visitor_is_told(held, fake_backend, queued_ends):
    name = held.container.name
    fake_backend.running[name] = dataclasses.replace(fake_backend.running[name], status="unknown", node_down=True)
    upkeep.reconcile()
    assert queued_ends == [] and not Snapshot.objects.exists()
    assert snapshots.ended_work(held.container, "ada") == ("lost", None)


def test_only_the_visitor_who_held_it_learns_about_its_files(held):
    ending.kill_sessions([held], by="organiser")
    assert snapshots.ended_work(held.container, "ada")[0] == "kept"
    assert snapshots.ended_work(held.container, "bea") is None
    assert snapshots.ended_work(held.container, None) is None
    assert snapshots.visitors_snapshot(path_id=held.container.path_id, visitor="bea") is None
    assert snapshots.visitors_snapshot(path_id=held.container.path_id, visitor="ada") == held.snapshot


def test_the_heartbeat_prunes_snapshots_past_their_hours(held):
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    path = snapshots.snapshot_path(snapshot)
    assert snapshots.prune_snapshots() == 0 and path.exists()
    assert snapshots.snapshot_disk() == {held.container.pool_id: (1, snapshot.size)}
    later = timezone.now() + timedelta(hours=48, seconds=1)
    assert snapshots.prune_snapshots(later - timedelta(seconds=2)) == 0
    Snapshot.objects.update(expires_at=timezone.now())  # its hours are over
    upkeep.heartbeat()
    assert not path.exists()
    assert Snapshot.objects.get().file_name == ""  # the row stays, as history
    assert snapshots.ended_work(held.container, "ada", now=later)[0] == "expired"
    assert snapshots.visitors_snapshot(path_id=held.container.path_id, visitor="ada", now=later) is None
    assert snapshots.snapshot_disk(later) == {}


def test_the_heartbeat_prunes_what_a_killed_copy_left_behind_once_that_copy_is_surely_over(held):
    ending.kill_sessions([held], by="organiser")
    kept = snapshots.snapshot_path(Snapshot.objects.get(session=held))
    folder = snapshots.snapshot_dir()
    # A copy out and copies in (a restore's tar, by its old name and its new) whose worker was killed.
    left = [folder / ".7-0123456789abcdef.zip.part", folder / "tmpk2j3h4g5.tar", folder / ".restore-k2j3h4g5.tar"]
    running = folder / ".8-fedcba9876543210.zip.part"  # a copy that is still being written
    an_hour_ago = time.time() - 3600
    for path in [*left, running]:
        path.write_bytes(b"PK partial")
    for path in [*left, kept]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    upkeep.heartbeat()
    assert [path.exists() for path in left] == [False, False, False]
    assert running.exists() and kept.exists()


def test_no_snapshot_is_taken_when_their_hours_are_zero(held, settings):
    settings.TMPNB_SNAPSHOT_HOURS = 0
    ending.kill_sessions([held], by="organiser")
    assert not Snapshot.objects.exists()


def test_restoring_puts_the_files_back_owned_by_the_notebooks_user(held, fake_backend):
    ending.kill_sessions([held], by="organiser")
    [row] = pools.fill_pool(held.container.pool_id)
    spawning.spawn_container(row.pk)
    again = assignment.assign_container(pool=held.container.pool, visitor="ada")
    snapshots.restore_work(snapshot=held.snapshot, container=again.container)
    [(name, destination, data)] = fake_backend.copied_in
    assert (name, destination) == (again.container.name, notebook_root(again.container.pool))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["notes.txt"]).read() == b"my work\n"
        assert tar.extractfile(members["analysis.ipynb"]).read() == NOTEBOOK
    assert {(m.uid, m.gid) for m in members.values()} == {(1000, 100)}


@pytest.mark.parametrize(
    ("command", "root"),
    [
        ("jupyter lab --ServerApp.base_url={base_path} --ServerApp.root_dir=/home/jovyan/work", "/home/jovyan/work"),
        ("jupyter notebook --NotebookApp.base_url={base_path} --NotebookApp.notebook_dir='/srv/nb'", "/srv/nb"),
        ("jupyter notebook --NotebookApp.base_url={base_path}", "."),
    ],
)
def test_the_folder_saved_is_the_servers_root(command, root):
    assert notebook_root(PoolFactory.build(command=command)) == root


@pytest.fixture
def ended_by_kill(client, fake_backend, fake_proxy):
    """``client`` took a notebook (a file in it) that an organiser killed; it returns that container."""
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    fake_backend.files[row.name] = {"notes.txt": b"my work\n"}
    ending.kill_sessions(Session.objects.all(), by="organiser")
    return Session.objects.get().container


def test_the_ended_page_offers_the_holder_their_zip_and_nobody_else(client, ended_by_kill):
    page = client.get(f"/user/{ended_by_kill.path_id}/lab")
    assert page.status_code == 410
    download = f"/ended/{ended_by_kill.path_id}/work.zip"
    assert f'href="{download}"' in page.content.decode() and "Start again with my files" in page.content.decode()
    response = client.get(download)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="notebook-default-')
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.read("notes.txt") == b"my work\n"
    new_visitor(client)  # another browser
    assert download not in client.get(f"/user/{ended_by_kill.path_id}/lab").content.decode()
    assert client.get(download).status_code == 404
    assert client.post(f"/ended/{ended_by_kill.path_id}/restore").status_code == 404
    client.cookies.clear()  # no visitor cookie at all
    assert client.get(download).status_code == 404


def test_the_ended_page_tells_as_json_where_the_work_is(client, ended_by_kill):
    answer = client.get(f"/user/{ended_by_kill.path_id}/lab", headers={"Accept": "application/json"}).json()
    assert answer["work"] == "kept" and answer["download"] == f"/ended/{ended_by_kill.path_id}/work.zip"
    assert answer["left_out"] == []


@pytest.fixture
def restores_queued(monkeypatch):
    """The restores the web requests queue for the worker, and a way to run them."""
    queued = []
    instead_of_sending(monkeypatch, worker.RESTORE_WORK, lambda *args: queued.append(args))

    def run():
        while queued:
            restore_work_task.apply(queued.pop(0))

    return types.SimpleNamespace(queued=queued, run=run)


def test_start_again_with_my_files_lands_at_once_and_the_worker_puts_them_back(client, ended_by_kill, fake_backend, restores_queued):
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    response = client.post(f"/ended/{ended_by_kill.path_id}/restore")
    assert response.status_code == 302 and response.url.startswith(on_notebook_origin(f"/user/{row.path_id}/"))
    assert fake_backend.copied_in == [] and len(restores_queued.queued) == 1  # nothing copied within the request
    restores_queued.run()
    [(name, _, data)] = fake_backend.copied_in
    assert name == row.name
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("notes.txt").read() == b"my work\n"
    assert Event.objects.filter(kind=Event.Kind.SNAPSHOT, container=row, message__contains="put into").exists()


def test_the_files_of_an_ended_notebook_are_put_back_once(client, ended_by_kill, fake_backend, restores_queued):
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    for _ in range(3):
        response = client.post(f"/ended/{ended_by_kill.path_id}/restore")
        assert response.status_code == 302 and response.url.startswith(on_notebook_origin(f"/user/{row.path_id}/"))
    restores_queued.run()
    assert len(fake_backend.copied_in) == 1


def test_a_put_back_that_failed_can_be_asked_for_again(client, ended_by_kill, fake_backend, restores_queued):
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    copy_in, fake_backend.copy_in = fake_backend.copy_in, lambda *args, **kwargs: (_ for _ in ()).throw(BackendError("Docker is away"))
    client.post(f"/ended/{ended_by_kill.path_id}/restore")
    restores_queued.run()
    assert "could not be put into" in Event.objects.filter(kind=Event.Kind.SNAPSHOT).latest("pk").message
    # The banner inside the new notebook says so.
    answer = client.get(f"/api/notebooks/{row.path_id}/time-left").json()
    assert answer["warn"] is True and answer["reason"] == "restore_failed"
    assert answer["message"].startswith("Your saved files could not be copied into this notebook.")
    fake_backend.copy_in = copy_in
    client.post(f"/ended/{ended_by_kill.path_id}/restore")
    restores_queued.run()
    assert [name for name, _, _ in fake_backend.copied_in] == [row.name]
    assert client.get(f"/api/notebooks/{row.path_id}/time-left").json()["warn"] is False


def test_the_organiser_downloads_any_snapshot_from_the_sessions_admin_page(admin_client, ended_by_kill):
    session = Session.objects.get()
    page = admin_client.get(f"/admin/pool/session/{session.pk}/change/").content.decode()
    assert f"/admin/pool/session/{session.pk}/work.zip" in page and "1 file(s)" in page
    response = admin_client.get(f"/admin/pool/session/{session.pk}/work.zip")
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.read("notes.txt") == b"my work\n"
    assert admin_client.get(f"/admin/pool/session/{session.pk + 1}/work.zip").status_code == 404


def test_the_disk_the_saved_work_takes_is_on_the_dashboard_and_in_pool_status(held, admin_client):
    ending.kill_sessions([held], by="organiser")
    size = Snapshot.objects.get().size
    out = io.StringIO()
    call_command("pool_status", "--json", stdout=out)
    assert json.loads(out.getvalue())[0]["saved_work"] == {"snapshots": 1, "bytes": size}
    page = admin_client.get("/admin/").content.decode()
    assert re.search(rf'<td class="num saved-work">1 · {size}\xa0bytes</td>', page)


def test_a_copy_that_breaks_in_any_way_keeps_what_it_read_and_never_keeps_the_container(held, fake_backend):
    first = b"1" * 30000
    fake_backend.files[held.container.name] = {"first.txt": first, "second.bin": b"y" * 40000}
    chunks = iter(range(100))

    def breaks_at_40_kb():  # the chunks are 4 KB
        if next(chunks) == 10:
            raise ValueError("something nobody foresaw")

    fake_backend.on_chunk = breaks_at_40_kb
    ending.kill_sessions([held], by="organiser")
    snapshot = Snapshot.objects.get(session=held)
    assert snapshot.error == "something nobody foresaw"
    assert zip_contents(snapshot)["first.txt"] == first
    assert snapshot.left_out == [{"path": "second.bin", "size": 40000, "cut_short": True}]
    assert held.container.name in fake_backend.removed


def test_a_restore_the_broker_cannot_take_is_refused_and_may_be_asked_for_again(client, ended_by_kill, monkeypatch):
    def broker_away(*args):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    # Whichever broker the run has (a real Redis once an integration test started one).
    instead_of_sending(monkeypatch, worker.RESTORE_WORK, broker_away)
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    response = client.post(f"/ended/{ended_by_kill.path_id}/restore")
    assert response.status_code == 429 and "could not be put into the new notebook" in response.content.decode()
    assert Snapshot.objects.get(session__container=ended_by_kill).restore_asked_at is None


def test_files_put_back_into_a_notebook_already_in_use_go_into_a_folder_of_their_own(client, ended_by_kill, fake_backend, restores_queued):
    [row] = pools.fill_pool(ended_by_kill.pool_id)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302  # they started again without their files first
    assert client.post(f"/ended/{ended_by_kill.path_id}/restore").status_code == 302
    restores_queued.run()
    [(_, _, data)] = fake_backend.copied_in
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        folder, notes = tar.getmembers()
    assert folder.isdir() and folder.name.startswith("saved-work-") and notes.name == f"{folder.name}/notes.txt"


def test_the_ended_page_of_a_container_that_crashed_says_so_and_offers_its_saved_files(client, fake_backend, fake_proxy, queued_ends):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    assert client.get("/").status_code == 302
    fake_backend.files[row.name] = {"notes.txt": b"my work\n"}
    fake_backend.running[row.name] = dataclasses.replace(fake_backend.running[row.name], status="exited")
    upkeep.reconcile()
    assert "Your files are being saved" in client.get(f"/user/{row.path_id}/lab").content.decode()
    [(args, kwargs)] = queued_ends
    tasks.finish_retirement_task(*args, **kwargs)
    page = client.get(f"/user/{row.path_id}/lab").content.decode()
    assert "Its container stopped on its own (it crashed). Your files were saved before it was removed." in page
    assert f'href="/ended/{row.path_id}/work.zip"' in page and "when the organiser stops them" not in page
    page = client.get(f"/user/{row.path_id}/lab", headers={"Accept-Language": "fr"}).content.decode()
    assert "Son conteneur s’est arrêté de lui-même (il a planté)." in page


def test_the_offer_comes_in_the_participants_language(client, ended_by_kill):
    page = client.get(f"/user/{ended_by_kill.path_id}/lab", headers={"Accept-Language": "fr"}).content.decode()
    assert "Télécharger votre travail" in page and "Recommencer avec mes fichiers" in page


def test_the_reconciler_finishes_an_interrupted_end_without_copying_in_the_heartbeat(held, fake_backend, fake_proxy):
    # An organiser's kill whose queued copy never ran (the worker stopped): the row stays STOPPING.
    Session.objects.filter(pk=held.pk).end(Session.EndReason.KILLED, by="organiser")
    long_ago = timezone.now() - timedelta(minutes=10)
    # (its spawn, whose lease has long run out, was long ago too)
    Container.objects.filter(pk=held.container_id).update(state=Container.State.STOPPING, ended_at=long_ago, lease_until=None)
    assert upkeep.reconcile().teardowns_retried == 1
    snapshot = Snapshot.objects.get(session=held)
    assert snapshot.file_name == "" and "interrupted before the copy" in snapshot.error
    assert snapshots.ended_work(held.container, "ada") == ("none", snapshot)
    assert held.container.name in fake_backend.removed


def killed_and_queued(session, *, minutes_ago):
    """``session`` ended by a kill ``minutes_ago``, its copy queued for the
    worker and not yet run (its spawn's lease long run out)."""
    Session.objects.filter(pk=session.pk).end(Session.EndReason.KILLED, by="organiser")
    long_ago = timezone.now() - timedelta(minutes=minutes_ago)
    Container.objects.filter(pk=session.container_id).update(state=Container.State.STOPPING, ended_at=long_ago, lease_until=None)
    return Container.objects.select_related("pool").get(pk=session.container_id)


def test_a_copy_running_past_the_grace_of_its_end_is_not_cut_short_by_the_heartbeat(held, fake_backend, monkeypatch):
    # A kill of many sessions queues their copies together: the last ones
    # start long after their ends were queued, and the heartbeat must not
    # remove their containers mid-copy. The lease is short here: the copy
    # outlives it twice over, so only its renewals keep it.
    monkeypatch.setattr(snapshots, "COPY_LEASE", timedelta(seconds=2))
    fake_backend.files[held.container.name] = {"big.bin": b"z" * 40000}  # ten chunks
    started, reconciled = threading.Event(), threading.Event()

    def slow_chunk():
        started.set()
        reconciled.wait(10)

    fake_backend.on_chunk = slow_chunk
    container = killed_and_queued(held, minutes_ago=60)

    def worker():
        try:
            ending.finish_retirement(container)
        finally:
            connection.close()  # this thread's own

    copy = threading.Thread(target=worker)
    copy.start()
    try:
        assert started.wait(10)
        time.sleep(4.5)
        assert upkeep.reconcile().teardowns_retried == 0
        assert held.container.name not in fake_backend.removed
    finally:
        reconciled.set()
        copy.join(10)
    snapshot = Snapshot.objects.get(session=held)
    assert zip_contents(snapshot) == {"big.bin": b"z" * 40000} and snapshot.error == ""
    assert fake_backend.removed == [held.container.name]


def copying_elsewhere():
    """The session of another ended container, whose copy a worker runs."""
    return SessionFactory(container__state=Container.State.STOPPING, ended_at=timezone.now(), end_reason=Session.EndReason.KILLED)


def test_a_queued_copy_waits_its_turn_while_other_copies_run(held, fake_backend):
    container = killed_and_queued(held, minutes_ago=10)
    other = Snapshot.objects.create(session=copying_elsewhere(), lease_until=timezone.now() + timedelta(seconds=10))  # a copy under way
    assert upkeep.reconcile().teardowns_retried == 0
    assert not Snapshot.objects.filter(session=held).exists() and container.name not in fake_backend.removed
    # Its turn comes: the worker copies it whole.
    Snapshot.objects.filter(pk=other.pk).update(taken_at=timezone.now())
    ending.finish_retirement(container)
    assert zip_contents(Snapshot.objects.get(session=held))["notes.txt"] == b"my work\n"


def test_a_queued_copy_whose_task_was_lost_is_given_up_once_no_worker_is_busy(held, fake_backend):
    container = killed_and_queued(held, minutes_ago=10)
    assert upkeep.reconcile().teardowns_retried == 1
    assert "interrupted before the copy" in Snapshot.objects.get(session=held).error
    assert container.name in fake_backend.removed


def test_a_queued_copy_is_given_up_past_any_queue_even_while_workers_are_busy(held, fake_backend):
    container = killed_and_queued(held, minutes_ago=upkeep.COPY_QUEUE_BOUND.total_seconds() / 60 + 1)
    Snapshot.objects.create(session=copying_elsewhere(), lease_until=timezone.now() + timedelta(seconds=10))
    assert upkeep.reconcile().teardowns_retried == 1
    assert container.name in fake_backend.removed


def test_a_copy_whose_lease_ran_out_is_given_up_and_its_late_end_changes_nothing(held, fake_backend):
    container = killed_and_queued(held, minutes_ago=10)
    # A worker took the copy and died: its lease ran out a while ago.
    snapshot = Snapshot.objects.create(session=held, lease_until=timezone.now() - timedelta(seconds=30))
    assert upkeep.reconcile().teardowns_retried == 1
    snapshot.refresh_from_db()
    assert snapshot.error == upkeep.COPY_LOST and snapshot.taken_at is not None
    assert container.name in fake_backend.removed
    assert not snapshot.renew_lease(snapshots.COPY_LEASE)  # a copier still alive learns it is over
    assert not snapshot.close()


def test_a_copy_that_starts_as_the_heartbeat_judges_it_lost_keeps_its_container(held, fake_backend, monkeypatch):
    # Two workers: the heartbeat on one reads the copy as not started, and
    # the copy starts on the other before the heartbeat gives it up.
    container = killed_and_queued(held, minutes_ago=10)
    read_before_the_copy_started = snapshots.copies_due([container.pk])
    Snapshot.objects.create(session=held, lease_until=timezone.now() + snapshots.COPY_LEASE)
    monkeypatch.setattr(upkeep, "copies_due", lambda ids: read_before_the_copy_started)
    assert upkeep.reconcile().teardowns_retried == 0
    assert container.name not in fake_backend.removed
    assert Snapshot.objects.get(session=held).error == ""
