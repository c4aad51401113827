"""A pool's materials as the worker prepares them and as spawns copy them in,
against real containers of the tiny image (pool/services/materials.py)."""

import io
import os
import tarfile
import zipfile
from datetime import timedelta

import docker
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from pool.backends import docker as docker_backend
from pool.models import Container, Event, Pool
from pool.services import assignment, materials, pools, spawning
from pool.services.materials import version_folder
from tests.factories import PoolFactory
from tests.pool.test_materials_files import FILES, file_entry, make_tar, read_tree, write_tree
from tests.pool.test_spawning import TMP_COMMAND

DAY_TWO = {"intro.ipynb": b'{"day": 2}\n', "day2/slides.md": b"# two\n"}


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


@pytest.fixture
def in_container():
    client = docker.from_env()

    def run(container, command):
        code, output = client.containers.get(container.backend_id).exec_run(["sh", "-c", command])
        assert code == 0, output
        return output.decode()

    yield run
    client.close()


def files_in(container, names, in_container):
    return {name: in_container(container, f"cat /{name}").encode() for name in names}


def spawn_ready(pool):
    spawned = [spawning.spawn_container(row.pk) for row in pools.fill_pool(pool.pk)]
    assert all(c.state == Container.State.READY for c in spawned), [c.error for c in spawned]
    return spawned


def use_materials(pool, source, branch=""):
    Pool.objects.filter(pk=pool.pk).update(materials_source=source, materials_branch=branch)
    assert pool.pk in materials.pools_with_materials_to_prepare()
    return materials.prepare_materials(pool.pk)


def test_every_new_container_holds_the_materials_owned_by_its_user_when_it_is_ready(clean_pools, var_dir, tmp_path, in_container):
    pool = PoolFactory(capacity=2, command=TMP_COMMAND, redirect_uri="/", container_user="1000:100")
    assert use_materials(pool, str(write_tree(tmp_path / "workshop"))) == 1
    first, second = spawn_ready(pool)
    for container in (first, second):
        assert Container.objects.get(pk=container.pk).materials_version == 1
        assert files_in(container, FILES, in_container) == FILES
        owners = in_container(container, "stat -c %u:%g /intro.ipynb /data /data/numbers.csv").split()
        assert owners == ["1000:100"] * 3
    # Each has its own copy: the notebook user changes one, the other keeps the original.
    in_container(first, "echo changed > /data/numbers.csv && touch /data/new.txt")
    assert files_in(second, FILES, in_container) == FILES
    assert "new.txt" not in in_container(second, "ls /data")
    assert materials.pools_with_materials_to_prepare() == []


def test_new_materials_replace_the_ready_containers_and_leave_those_in_use(clean_pools, var_dir, tmp_path, in_container):
    pool = PoolFactory(capacity=3, ready_target=1)
    use_materials(pool, str(write_tree(tmp_path / "day1")))
    [taken] = spawn_ready(pool)
    assignment.assign_container(pool=pool, visitor="participant")
    [waiting] = spawn_ready(pool)

    archive = make_tar(tmp_path / "day2.tar.gz", [file_entry(n, c) for n, c in DAY_TWO.items()])
    assert use_materials(pool, str(archive)) == 2
    taken.refresh_from_db(), waiting.refresh_from_db()
    assert (taken.state, taken.materials_version) == (Container.State.ASSIGNED, 1)
    assert files_in(taken, FILES, in_container) == FILES
    assert waiting.state == Container.State.GONE
    [fresh] = spawn_ready(pool)
    assert Container.objects.get(pk=fresh.pk).materials_version == 2
    assert files_in(fresh, DAY_TWO, in_container) == DAY_TWO
    assert Event.objects.filter(kind=Event.Kind.MATERIALS, pool=pool).first().message.startswith(f"pool {pool.name}: materials version 2: 2 file(s)")
    assert Event.objects.filter(kind=Event.Kind.DRAIN, pool=pool, actor="materials").exists()
    assert not version_folder(pool.pk, 1).exists()  # only the current version is kept


def bad_archives(tmp_path):
    (tmp_path / "corrupt.zip").write_bytes(b"PK\x03\x04 this is no zip")
    climbing = make_tar(tmp_path / "climbing.tar.gz", [file_entry("../../etc/cron.d/x", b"* * * * * root true\n")])
    linked = tmp_path / "linked.tar.gz"
    with tarfile.open(linked, "w:gz") as tar:
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", b"\0" * 2_000_001)
    return [
        (str(tmp_path / "corrupt.zip"), "corrupt.zip is not a readable zip or tar.gz archive"),
        (str(climbing), "'../../etc/cron.d/x' points outside the materials folder"),
        (str(linked), "'passwd' is a link; links are not allowed in materials"),
        (str(big), "more than 1 MB once unpacked (TMPNB_MATERIALS_MAX_MB)"),
        ("git://127.0.0.1:9/workshop.git", "cloning git://127.0.0.1:9/workshop.git failed"),
    ]


@pytest.mark.django_db
def test_each_bad_input_is_refused_with_its_message_and_the_previous_materials_stay(settings, var_dir, tmp_path):
    settings.TMPNB_MATERIALS_MAX_MB = 1
    pool = PoolFactory()
    use_materials(pool, str(write_tree(tmp_path / "good")))
    for source, message in bad_archives(tmp_path):
        assert use_materials(pool, source) is None
        pool.refresh_from_db()
        assert message in pool.materials_error
        assert pool.materials_version == 1 and read_tree(version_folder(pool.pk, 1)) == FILES
        event = Event.objects.filter(kind=Event.Kind.MATERIALS, pool=pool).first()
        assert message in event.message and event.message.endswith("keeping version 1")
        assert event.details == {"refused": True}
        assert materials.pools_with_materials_to_prepare() == []  # refused once, not retried each heartbeat
    assert not list(tmp_path.glob("etc")) and not (var_dir / "etc").exists()


@pytest.mark.django_db
def test_a_second_worker_handed_the_same_change_leaves_it_to_the_first(var_dir, tmp_path):
    pool = PoolFactory(materials_source=str(write_tree(tmp_path / "w")))
    assert materials.prepare_materials(pool.pk) == 1
    assert materials.prepare_materials(pool.pk) is None
    materials.refresh_materials(pool)
    assert materials.prepare_materials(pool.pk) == 2


@pytest.mark.django_db
def test_an_empty_source_is_a_version_without_files(var_dir, tmp_path):
    pool = PoolFactory(materials_source=str(write_tree(tmp_path / "w")))
    materials.prepare_materials(pool.pk)
    assert use_materials(pool, "") == 2
    pool.refresh_from_db()
    assert pool.materials_summary == "none" and not version_folder(pool.pk, 2).exists()


def test_copy_in_honours_the_tar_s_owners(clean_pools, tmp_path, in_container):
    """The backend call the materials and the restored snapshots share."""
    [container] = spawn_ready(PoolFactory(capacity=1))
    tar_path = tmp_path / "in.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("work/saved.txt")
        info.size, info.uid, info.gid = 3, 1234, 4321
        tar.addfile(info, io.BytesIO(b"yes"))
    docker_backend.copy_in(container.backend_id, tar_path=str(tar_path), destination="/tmp")
    assert in_container(container, "stat -c %u:%g /tmp/work/saved.txt; cat /tmp/work/saved.txt").split() == ["1234:4321", "yes"]
    assert docker_backend.notebook_user(container.backend_id).folder == "/"


@pytest.mark.django_db
def test_a_pool_waits_for_its_first_materials_before_it_starts_containers(var_dir, tmp_path):
    pool = PoolFactory(capacity=2, materials_source=str(write_tree(tmp_path / "w")))
    assert pools.fill_pool(pool.pk) == []  # they would start without the files
    materials.prepare_materials(pool.pk)
    assert len(pools.fill_pool(pool.pk)) == 2


@pytest.mark.django_db
def test_a_pool_whose_first_materials_were_refused_starts_containers_without(var_dir, tmp_path):
    pool = PoolFactory(capacity=2, materials_source=str(tmp_path / "missing.zip"))
    assert pools.fill_pool(pool.pk) == []
    materials.prepare_materials(pool.pk)
    assert Pool.objects.get(pk=pool.pk).materials_error
    assert len(pools.fill_pool(pool.pk)) == 2


@pytest.mark.django_db
def test_an_upload_replaced_by_a_newer_one_is_removed_once_it_is_old(var_dir, tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [file_entry("intro.txt", b"one")]).read_bytes()
    first = materials.store_upload(SimpleUploadedFile("day1.tar.gz", archive))
    pool = PoolFactory(materials_source=first)
    materials.prepare_materials(pool.pk)
    second = materials.store_upload(SimpleUploadedFile("day2.tar.gz", archive))
    young = materials.store_upload(SimpleUploadedFile("other.tar.gz", archive))  # an admin form may still be saving it
    os.utime(os.path.dirname(first), (0, 0))
    use_materials(pool, second)
    assert not os.path.exists(first)
    assert os.path.exists(second) and os.path.exists(young)


@pytest.mark.django_db
def test_materials_taken_by_a_worker_that_died_are_prepared_again_once_it_is_overdue(var_dir, tmp_path):
    pool = PoolFactory(materials_source=str(write_tree(tmp_path / "w")))
    taken = Pool.objects.filter(pk=pool.pk)
    taken.update(materials_tried=pool.materials_wanted, materials_preparing_since=timezone.now())  # a worker at work
    assert materials.pools_with_materials_to_prepare() == [] and materials.prepare_materials(pool.pk) is None
    taken.update(materials_preparing_since=timezone.now() - timedelta(hours=1))  # ... that never came back
    assert materials.pools_with_materials_to_prepare() == [pool.pk]
    assert materials.prepare_materials(pool.pk) == 1
    assert Pool.objects.get(pk=pool.pk).materials_preparing_since is None


def encrypted_zip(path):
    """A zip whose one entry is marked encrypted: zipfile raises RuntimeError
    for it, not an error of the archive's own (an input nobody foresaw)."""
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("answers.ipynb", b"{}")
    data = bytearray(path.read_bytes())
    data[6] |= 1  # the "encrypted" bit of the local header's flags ...
    data[data.rfind(b"PK\x01\x02") + 8] |= 1  # ... and of the central directory's
    path.write_bytes(bytes(data))
    return path


@pytest.mark.django_db
def test_an_unforeseen_error_while_preparing_is_refused_like_bad_input_and_logged_with_its_traceback(var_dir, tmp_path, caplog):
    pool = PoolFactory(capacity=2)
    assert use_materials(pool, str(encrypted_zip(tmp_path / "locked.zip"))) is None
    pool.refresh_from_db()
    assert "RuntimeError" in pool.materials_error and "is encrypted" in pool.materials_error
    assert pool.materials_preparing_since is None
    event = Event.objects.filter(kind=Event.Kind.MATERIALS, pool=pool).first()
    assert "is encrypted" in event.message and event.message.endswith("keeping no materials")
    assert event.details == {"refused": True}
    assert materials.pools_with_materials_to_prepare() == []  # not retried each heartbeat
    assert len(pools.fill_pool(pool.pk)) == 2  # the pool starts its containers without
    [logged] = [record for record in caplog.records if record.exc_info]
    assert logged.exc_info[0] is RuntimeError


@pytest.mark.django_db
def test_an_archive_with_a_file_and_a_folder_of_one_name_is_refused_with_its_reason(var_dir, tmp_path):
    pool = PoolFactory(capacity=2)
    with zipfile.ZipFile(tmp_path / "clash.zip", "w") as bundle:
        bundle.writestr("data/", b"")
        bundle.writestr("data", b"x")
    assert use_materials(pool, str(tmp_path / "clash.zip")) is None
    pool.refresh_from_db()
    assert "the archive holds both a file and a folder named 'data'" in pool.materials_error
    assert len(pools.fill_pool(pool.pk)) == 2
