"""Broadcasting a file or folder to every live notebook of a pool, with Docker
faked at its boundary (tests/integration/test_broadcast.py does it with real
containers)."""

import io
import tarfile
import zipfile
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pool.backends.base import BackendError
from pool.materials_files import MaterialsError
from pool.models import Broadcast, Container, Event, Pool, Session, Workshop, WorkshopPool
from pool.services import assignment, broadcasts, materials, pools, spawning, worker
from pool.services.broadcasts import free_name
from tests.factories import PoolFactory, from_the_banner
from tests.fakes import NOTEBOOK_FOLDER, instead_of_sending

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.TMPNB_MATERIALS_MAX_MB = 1
    settings.TMPNB_COPIES_AT_ONCE = 2


@pytest.fixture
def handed_at_once(monkeypatch):
    """The worker's hand-out runs as the broadcast is sent."""
    instead_of_sending(monkeypatch, worker.HAND_OUT_BROADCAST, broadcasts.hand_out)


@pytest.fixture
def room(fake_backend, fake_proxy, handed_at_once):
    """A pool of three notebooks: two held (ada's holds a notes.txt of her own), one ready."""
    pool = PoolFactory(capacity=3)
    for row in pools.fill_pool(pool.pk):
        spawning.spawn_container(row.pk)
    ada = assignment.assign_container(pool=pool, visitor="ada").container
    bea = assignment.assign_container(pool=pool, visitor="bea").container
    ready = Container.objects.ready().get()
    fake_backend.files[ada.name] = {"notes.txt": b"ada's own notes\n"}
    return pool, ada, bea, ready


def sent_file(tmp_path, name="notes.txt", data=b"the organiser's notes\n"):
    path = tmp_path / "outbox" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def received(fake_backend, container):
    """{path: (bytes or None for a folder, uid, gid)} of what copy_in put into ``container``, under its destination."""
    got = {}
    for name, destination, data in fake_backend.copied_in:
        if name == container.name:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar:
                    content = tar.extractfile(member).read() if member.isfile() else None
                    got[f"{destination}/{member.name}"] = (content, member.uid, member.gid)
    return got


@pytest.mark.parametrize(
    ("name", "is_folder", "taken", "expected"),
    [
        ("notes.txt", False, set(), "notes.txt"),
        ("notes.txt", False, {"notes.txt"}, "notes (from organiser).txt"),
        ("notes.txt", False, {"notes.txt", "notes (from organiser).txt"}, "notes (from organiser 2).txt"),
        ("data.tar.gz", False, {"data.tar.gz"}, "data (from organiser).tar.gz"),
        ("README", False, {"README"}, "README (from organiser)"),
        (".env", False, {".env"}, ".env (from organiser)"),
        ("week2", True, {"week2"}, "week2 (from organiser)"),
        ("data.v2", True, {"data.v2", "data.v2 (from organiser)"}, "data.v2 (from organiser 2)"),
    ],
)
def test_a_name_that_is_taken_becomes_from_organiser_then_numbered(name, is_folder, taken, expected):
    assert free_name(name, is_folder=is_folder, taken=taken.__contains__) == expected


def test_a_name_taken_a_hundred_times_over_is_given_up_with_its_reason():
    with pytest.raises(MaterialsError, match="notes.txt and 100 names made from it are all taken"):
        free_name("notes.txt", is_folder=False, taken=lambda name: True)


def test_a_file_reaches_every_live_notebook_owned_by_its_user_and_never_over_theirs(room, fake_backend, tmp_path):
    pool, ada, bea, ready = room
    sent = broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path)), by="organiser")
    sent.refresh_from_db()
    ours = (b"the organiser's notes\n", 1000, 100)
    assert received(fake_backend, ada) == {f"{NOTEBOOK_FOLDER}/notes (from organiser).txt": ours}
    assert received(fake_backend, bea) == received(fake_backend, ready) == {f"{NOTEBOOK_FOLDER}/notes.txt": ours}
    assert (sent.reached, sent.failed, sent.renamed, sent.files, sent.is_folder) == (3, 0, 1, 1, False)
    event = Event.objects.get(kind=Event.Kind.BROADCAST)
    assert event.message == (
        "organiser sent the file notes.txt to 3 notebook(s) of pool default: 3 reached, none failed; 1 held that name and got it as '(from organiser)'"
    )
    assert event.actor == "organiser" and event.details["reached"] == 3 and event.details["failed"] == 0

    broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path, data=b"corrected\n")), by="organiser")
    assert received(fake_backend, ada)[f"{NOTEBOOK_FOLDER}/notes (from organiser 2).txt"][0] == b"corrected\n"
    assert received(fake_backend, bea)[f"{NOTEBOOK_FOLDER}/notes (from organiser).txt"][0] == b"corrected\n"
    assert received(fake_backend, bea)[f"{NOTEBOOK_FOLDER}/notes.txt"][0] == b"the organiser's notes\n"


def test_a_folder_is_renamed_as_a_whole_never_merged(room, fake_backend, tmp_path):
    pool, ada, bea, _ = room
    fake_backend.files[ada.name]["week2/mine.txt"] = b"ada's"
    folder = tmp_path / "outbox" / "week2"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.csv").write_bytes(b"1,2\n")
    (folder / "intro.ipynb").write_bytes(b"{}")
    broadcasts.broadcast_path(pool=pool, path=str(folder), by="organiser")
    assert set(received(fake_backend, ada)) == {
        f"{NOTEBOOK_FOLDER}/week2 (from organiser)",
        f"{NOTEBOOK_FOLDER}/week2 (from organiser)/data",
        f"{NOTEBOOK_FOLDER}/week2 (from organiser)/data/x.csv",
        f"{NOTEBOOK_FOLDER}/week2 (from organiser)/intro.ipynb",
    }
    assert received(fake_backend, bea)[f"{NOTEBOOK_FOLDER}/week2/data/x.csv"] == (b"1,2\n", 1000, 100)
    assert Broadcast.objects.get().is_folder


def zip_of(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("entries", "folder"),
    [
        ({"a.txt": b"a", "sub/b.txt": b"b"}, "lesson"),  # the folder's contents zipped: named after the zip
        ({"day2/a.txt": b"a", "day2/sub/b.txt": b"b"}, "day2"),  # the folder itself zipped: that folder
    ],
)
def test_a_zip_unpacked_is_the_folder_it_holds(room, fake_backend, tmp_path, entries, folder):
    pool, _, bea, _ = room
    archive = zip_of(tmp_path / "lesson.zip", entries)
    broadcasts.broadcast_path(pool=pool, path=str(archive), by="organiser", unpack=True)
    got = {path: content for path, (content, *_) in received(fake_backend, bea).items() if content is not None}
    assert got == {f"{NOTEBOOK_FOLDER}/{folder}/a.txt": b"a", f"{NOTEBOOK_FOLDER}/{folder}/sub/b.txt": b"b"}


def test_notebooks_started_later_get_it_and_those_that_had_it_do_not_get_it_twice(room, fake_backend, tmp_path):
    pool, ada, bea, ready = room
    broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path)), by="organiser")
    pools.resize_pool(pool, 4, by="organiser")
    [row] = pools.fill_pool(pool.pk)
    later = spawning.spawn_container(row.pk)
    assert later.state == Container.State.READY
    assert received(fake_backend, later) == {f"{NOTEBOOK_FOLDER}/notes.txt": (b"the organiser's notes\n", 1000, 100)}
    for container in (ada, bea, ready, later):
        broadcasts.catch_up(Container.objects.get(pk=container.pk))
    assert [name for name, *_ in fake_backend.copied_in].count(bea.name) == 1
    assert [name for name, *_ in fake_backend.copied_in].count(later.name) == 1


def test_a_broadcast_sent_while_a_notebook_starts_reaches_it_once_it_is_ready(fake_backend, fake_proxy, tmp_path, monkeypatch):
    pool = PoolFactory(capacity=1)
    [row] = pools.fill_pool(pool.pk)
    queued = []
    monkeypatch.setattr(worker, "send", lambda name, *args, **kwargs: queued.append(args))

    answering = spawning.wait_until_answering

    def sent_while_it_starts(container, *, timeout):
        answering(container, timeout=timeout)  # after its materials and broadcasts were put in
        broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path)), by="organiser")
        [(broadcast_id,)] = queued
        broadcasts.hand_out(broadcast_id)  # the hand-out finds no ready notebook

    monkeypatch.setattr(spawning, "wait_until_answering", sent_while_it_starts)
    container = spawning.spawn_container(row.pk)
    assert Broadcast.objects.get().reached == 0
    assert received(fake_backend, container) == {f"{NOTEBOOK_FOLDER}/notes.txt": (b"the organiser's notes\n", 1000, 100)}


def test_a_notebook_that_fails_is_counted_and_the_others_still_get_it(room, fake_backend, tmp_path, monkeypatch):
    pool, ada, bea, ready = room
    copy_in = fake_backend.copy_in

    def refused_by_one(backend_id, *, tar_path, destination):
        if backend_id == bea.backend_id:
            raise BackendError("copying into bea's notebook: no space left on device")
        copy_in(backend_id, tar_path=tar_path, destination=destination)

    monkeypatch.setattr(fake_backend, "copy_in", refused_by_one)
    sent = broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path, name="data.csv")), by="organiser")
    sent.refresh_from_db()
    assert (sent.reached, sent.failed) == (2, 1)
    assert received(fake_backend, ada) and received(fake_backend, ready) and not received(fake_backend, bea)
    event = Event.objects.get(kind=Event.Kind.BROADCAST)
    assert "to 3 notebook(s) of pool default: 2 reached, 1 failed (copying into bea's notebook: no space left on device)" in event.message
    assert event.details["errors"] == ["copying into bea's notebook: no space left on device"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: sent_file(tmp, "big.bin", bytes(1_000_001)), "more than 1 MB once unpacked (TMPNB_MATERIALS_MAX_MB)"),
        (lambda tmp: tmp / "nowhere.txt", "does not exist on this host"),
        (lambda tmp: "/var/run/docker.sock", "notebooks must never see /var/run/docker.sock"),
        (lambda tmp: "/etc", "notebooks must never see /etc"),
        (lambda tmp: zip_of(tmp / "bomb.zip", {"big.bin": bytes(1_000_001)}), "more than 1 MB once unpacked"),
        (lambda tmp: sent_file(tmp, "notes.txt"), "notes.txt is not an archive to unpack"),
    ],
)
def test_bad_input_is_refused_with_its_reason_and_changes_nothing(room, fake_backend, tmp_path, make, message):
    pool = room[0]
    source = make(tmp_path)
    unpack = str(source).endswith(".zip") or str(source).endswith("notes.txt")
    with pytest.raises(MaterialsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        broadcasts.broadcast_path(pool=pool, path=str(source), by="organiser", unpack=unpack)
    assert not Broadcast.objects.exists() and not Event.objects.filter(kind=Event.Kind.BROADCAST).exists()
    assert fake_backend.copied_in == []
    assert list((materials.materials_root() / f"pool-{pool.pk}").glob("*")) == []  # nothing kept


def test_a_link_in_a_folder_is_refused(room, tmp_path):
    folder = tmp_path / "outbox" / "week3"
    folder.mkdir(parents=True)
    (folder / "secret").symlink_to("/etc/shadow")
    with pytest.raises(MaterialsError, match="secret is a link; links are not allowed in materials"):
        broadcasts.broadcast_path(pool=room[0], path=str(folder), by="organiser")


def test_new_materials_start_without_the_broadcasts_of_the_old_ones(room, fake_backend, tmp_path):
    pool, *_ = room
    sent = broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path)), by="organiser")
    kept = materials.broadcast_folder(pool.pk, 0, sent.pk)
    assert (kept / "notes.txt").read_bytes() == b"the organiser's notes\n"
    Pool.objects.filter(pk=pool.pk).update(materials_source=str(tmp_path / "outbox"))
    materials.prepare_materials(pool.pk)  # version 1; drains the ready notebook
    assert not kept.exists()
    pool.refresh_from_db()
    [row] = pools.fill_pool(pool.pk)
    fresh = spawning.spawn_container(row.pk)
    assert fresh.materials_version == 1
    assert f"{NOTEBOOK_FOLDER}/notes (from organiser).txt" not in received(fake_backend, fresh)


def test_the_command_sends_a_path_and_says_how_far_it_reached(room, tmp_path):
    out = io.StringIO()
    call_command("broadcast", "default", str(sent_file(tmp_path)), stdout=out)
    assert out.getvalue() == "Pool default: notes.txt reached 3 notebook(s), 0 failed; 1 held that name and got it as '(from organiser)'.\n"
    assert Broadcast.objects.get().sent_by == "manage.py"


def test_the_command_refuses_bad_input_in_one_line(room, tmp_path):
    with pytest.raises(CommandError, match="does not exist on this host"):
        call_command("broadcast", "default", str(tmp_path / "nothing"))
    with pytest.raises(CommandError, match="no pool named 'nope'"):
        call_command("broadcast", "nope", str(sent_file(tmp_path)))


def test_the_admin_sends_an_upload_and_unpacks_a_zip_of_a_folder(room, admin_client, fake_backend, tmp_path):
    pool, _, bea, _ = room
    page = admin_client.post("/admin/pool/pool/", {"action": "broadcast", "_selected_action": [pool.pk]})
    assert page.status_code == 302 and page.url == f"/admin/pool/pool/{pool.pk}/broadcast/"
    assert "Send to every notebook" in admin_client.get(page.url).content.decode()
    archive = zip_of(tmp_path / "day3.zip", {"day3/task.md": b"# task\n"})
    with open(archive, "rb") as upload:
        response = admin_client.post(page.url, {"upload": upload, "unpack": "on"}, follow=True)
    assert "Pool default: day3 reached 3 notebook(s), 0 failed." in response.content.decode()
    assert received(fake_backend, bea)[f"{NOTEBOOK_FOLDER}/day3/task.md"] == (b"# task\n", 1000, 100)
    assert Broadcast.objects.get().sent_by == "admin"


def test_the_admin_refuses_an_upload_over_the_cap_with_its_reason(room, admin_client, tmp_path):
    big = sent_file(tmp_path, "big.bin", bytes(1_000_001))
    with open(big, "rb") as upload:
        response = admin_client.post(f"/admin/pool/pool/{room[0].pk}/broadcast/", {"upload": upload})
    assert "big.bin is 1.0 MB, over the 1 MB that TMPNB_MATERIALS_MAX_MB allows." in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_banner_of_each_holder_says_what_arrived_while_they_held_it_for_ten_minutes(room, tmp_path, settings):
    pool, ada, bea, ready = room
    ada_session = Session.objects.get(container=ada)
    assert "arrived" not in from_the_banner("GET", ada_session, "time-left", settings=settings).json()
    sent = broadcasts.broadcast_path(pool=pool, path=str(sent_file(tmp_path)), by="organiser")
    answer = from_the_banner("GET", ada_session, "time-left", settings=settings, HTTP_ACCEPT_LANGUAGE="fr").json()
    assert answer["arrived"] == {"id": sent.pk, "message": "L’organisateur vous a envoyé « notes.txt » : il est dans vos fichiers."}
    # The ready notebook's first holder got it before their session began: nothing to announce.
    late = assignment.assign_container(pool=pool, visitor="cy")
    assert late.container == ready and broadcasts.latest_arrival(late) is None
    later = timezone.now() + broadcasts.ARRIVAL_NOTICE + timedelta(seconds=1)
    assert broadcasts.latest_arrival(ada_session, now=later) is None


@pytest.fixture
def workshop(room, fake_backend):
    """The room's pool and a pool r with one held notebook, as one workshop."""
    r = PoolFactory(name="r", capacity=1)
    for row in pools.fill_pool(r.pk):
        spawning.spawn_container(row.pk)
    dee = assignment.assign_container(pool=r, visitor="dee").container
    fake_backend.files[dee.name] = {}
    start = timezone.now()
    intro = Workshop.objects.create(name="Intro", starts_at=start, ends_at=start + timedelta(hours=1))
    for pool, headcount in ((room[0], 3), (r, 1)):
        WorkshopPool.objects.create(workshop=intro, pool=pool, headcount=headcount)
    return intro, dee


def test_a_workshops_broadcast_reaches_every_pool_of_it_each_by_its_rules(room, workshop, fake_backend, tmp_path):
    pool, ada, bea, ready = room
    intro, dee = workshop
    sent = broadcasts.broadcast_path_to(list(intro.pools.order_by("name")), path=str(sent_file(tmp_path)), by="organiser")
    assert [(b.pool.name, b.materials_version) for b in sent] == [("default", pool.materials_version), ("r", dee.pool.materials_version)]
    ours = (b"the organiser's notes\n", 1000, 100)
    assert received(fake_backend, ada) == {f"{NOTEBOOK_FOLDER}/notes (from organiser).txt": ours}
    assert received(fake_backend, dee) == received(fake_backend, bea) == {f"{NOTEBOOK_FOLDER}/notes.txt": ours}
    handed = broadcasts.wait_until_handed(sent, timeout=0)
    assert [broadcasts.how_far(b) for b in handed] == [
        "Pool default: notes.txt reached 3 notebook(s), 0 failed; 1 held that name and got it as '(from organiser)'.",
        "Pool r: notes.txt reached 1 notebook(s), 0 failed.",
    ]
    assert sorted(e.pool.name for e in Event.objects.filter(kind=Event.Kind.BROADCAST)) == ["default", "r"]
    # A later arrival on either pool has it, from that pool's materials.
    r_pool = dee.pool
    pools.resize_pool(r_pool, 2, by="organiser")
    [row] = pools.fill_pool(r_pool.pk)
    assert f"{NOTEBOOK_FOLDER}/notes.txt" in received(fake_backend, spawning.spawn_container(row.pk))


def test_bad_input_to_a_workshop_is_refused_before_any_pool_has_it(room, workshop, tmp_path):
    big = sent_file(tmp_path, "big.bin", bytes(1_000_001))
    with pytest.raises(MaterialsError, match="TMPNB_MATERIALS_MAX_MB"):
        broadcasts.broadcast_path_to(list(workshop[0].pools.all()), path=str(big), by="organiser")
    with pytest.raises(MaterialsError, match="there is no pool to send it to"):
        broadcasts.broadcast_path_to([], path=str(sent_file(tmp_path)), by="organiser")
    assert not Broadcast.objects.exists()


def test_what_the_worker_has_not_handed_out_yet_is_said_so(room, tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "send_on_commit", lambda *args: None)
    sent = broadcasts.broadcast_path(pool=room[0], path=str(sent_file(tmp_path)), by="organiser")
    [waited] = broadcasts.wait_until_handed([sent], timeout=0)
    assert broadcasts.how_far(waited) == ("Pool default: notes.txt sent to the worker, which has not handed it out yet; the event log will say how it went.")


def test_the_workshop_admin_broadcasts_one_upload_to_its_pools_and_says_how_far_in_each(room, workshop, admin_client, fake_backend, tmp_path):
    intro, dee = workshop
    glance = admin_client.get(f"/admin/pool/workshop/{intro.pk}/change/").content.decode()
    assert f'<a href="/admin/pool/workshop/{intro.pk}/broadcast/">Broadcast to this workshop</a>' in glance
    page = admin_client.post("/admin/pool/workshop/", {"action": "broadcast", "_selected_action": [intro.pk]})
    assert page.status_code == 302 and page.url == f"/admin/pool/workshop/{intro.pk}/broadcast/"
    form = admin_client.get(page.url).content.decode()
    assert "workshop <b>Intro</b>, in each of its pools (<b>default</b>, <b>r</b>)" in form and "Send to every notebook" in form
    with open(sent_file(tmp_path), "rb") as upload:
        response = admin_client.post(page.url, {"upload": upload}, follow=True)
    said = response.content.decode()
    assert response.redirect_chain[-1][0] == "/admin/pool/workshop/"
    assert "Pool default: notes.txt reached 3 notebook(s), 0 failed;" in said and "Pool r: notes.txt reached 1 notebook(s), 0 failed." in said
    assert received(fake_backend, dee)[f"{NOTEBOOK_FOLDER}/notes.txt"][1:] == (1000, 100)
    assert sorted(Broadcast.objects.values_list("pool__name", "sent_by")) == [("default", "admin"), ("r", "admin")]


def test_the_workshop_admin_refuses_an_upload_over_the_cap_and_sends_nothing(room, workshop, admin_client, tmp_path):
    with open(sent_file(tmp_path, "big.bin", bytes(1_000_001)), "rb") as upload:
        response = admin_client.post(f"/admin/pool/workshop/{workshop[0].pk}/broadcast/", {"upload": upload})
    assert "big.bin is 1.0 MB, over the 1 MB that TMPNB_MATERIALS_MAX_MB allows." in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_command_sends_to_a_workshop_and_refuses_bad_names_in_one_line(room, workshop, tmp_path):
    out = io.StringIO()
    call_command("broadcast", "--workshop", "Intro", str(sent_file(tmp_path)), stdout=out)
    assert out.getvalue().splitlines() == [
        "Pool default: notes.txt reached 3 notebook(s), 0 failed; 1 held that name and got it as '(from organiser)'.",
        "Pool r: notes.txt reached 1 notebook(s), 0 failed.",
    ]
    with pytest.raises(CommandError, match="no workshop named 'Nope'; workshops: Intro"):
        call_command("broadcast", "--workshop", "Nope", str(sent_file(tmp_path)))
    with pytest.raises(CommandError, match="name a POOL or a --workshop, one of the two"):
        call_command("broadcast", "--workshop", "Intro", "default", str(sent_file(tmp_path)))
    with pytest.raises(CommandError, match="name a POOL or a --workshop, one of the two"):
        call_command("broadcast", str(sent_file(tmp_path)))
    assert Broadcast.objects.count() == 2
