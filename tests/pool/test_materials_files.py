"""Materials taken from archives, folders and git repositories: what is
accepted, and every way bad input is refused (pool/materials_files.py)."""

import contextlib
import io
import os
import socket
import stat
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from pool import materials_files
from pool.materials_files import MaterialsError

FILES = {"intro.ipynb": b'{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}\n', "data/numbers.csv": b"a,b\n1,2\n"}
MB = 1_000_000


def write_tree(root, files=FILES):
    for name, content in files.items():
        path = Path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return Path(root)


def read_tree(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_tar(path, entries, mode="w:gz"):
    """entries: TarInfo (with its bytes, or None)."""
    with tarfile.open(path, mode) as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def file_entry(name, content):
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def special_entry(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def test_a_tar_gz_and_a_zip_unpack_to_the_same_files(tmp_path):
    archive = make_tar(tmp_path / "m.tar.gz", [file_entry(n, c) for n, c in FILES.items()])
    prepared = materials_files.extract_archive(archive, tmp_path / "from-tar", 200 * MB)
    assert read_tree(tmp_path / "from-tar") == FILES
    assert (prepared.files, prepared.size) == (2, sum(map(len, FILES.values())))
    with zipfile.ZipFile(tmp_path / "m.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in FILES.items():
            bundle.writestr(name, content)
    materials_files.extract_archive(tmp_path / "m.zip", tmp_path / "from-zip", 200 * MB)
    assert read_tree(tmp_path / "from-zip") == FILES


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (file_entry("../escape.txt", b"x"), "'../escape.txt' points outside the materials folder"),
        (file_entry("/etc/cron.d/evil", b"x"), "'/etc/cron.d/evil' points outside the materials folder"),
        (file_entry("data/../../up.txt", b"x"), "points outside the materials folder"),
        (special_entry("passwd", tarfile.SYMTYPE, "/etc/passwd"), "'passwd' is a link; links are not allowed"),
        (special_entry("hard", tarfile.LNKTYPE, "intro.ipynb"), "'hard' is a link; links are not allowed"),
        (special_entry("null", tarfile.CHRTYPE), "'null' is a device or another special file"),
        (special_entry("pipe", tarfile.FIFOTYPE), "'pipe' is a device or another special file"),
    ],
)
def test_a_tar_with_a_climbing_path_a_link_or_a_device_is_refused_before_anything_is_written(tmp_path, entry, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [file_entry("intro.ipynb", b"{}"), entry])
    with pytest.raises(MaterialsError, match=message.replace("(", r"\(")):
        materials_files.extract_archive(archive, tmp_path / "out", 200 * MB)
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_zip_with_a_climbing_path_or_a_link_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "climb.zip", "w") as bundle:
        bundle.writestr("../../escape.txt", b"x")
    with pytest.raises(MaterialsError, match="points outside the materials folder"):
        materials_files.extract_archive(tmp_path / "climb.zip", tmp_path / "out1", 200 * MB)
    link = zipfile.ZipInfo("passwd")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as bundle:
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(MaterialsError, match="'passwd' is a link"):
        materials_files.extract_archive(tmp_path / "link.zip", tmp_path / "out2", 200 * MB)


def test_a_zip_bomb_is_stopped_by_what_it_unpacks_to_not_by_its_size(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", b"\0" * (3 * MB))
    assert (tmp_path / "bomb.zip").stat().st_size < 20_000
    with pytest.raises(MaterialsError, match=r"more than 2 MB once unpacked \(TMPNB_MATERIALS_MAX_MB\)"):
        materials_files.extract_archive(tmp_path / "bomb.zip", tmp_path / "out", 2 * MB)


def test_a_zip_whose_headers_understate_its_sizes_is_still_stopped(tmp_path):
    with zipfile.ZipFile(tmp_path / "liar.zip", "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("big.bin", b"x" * (3 * MB))
    data = bytearray((tmp_path / "liar.zip").read_bytes())
    # Rewrite the central directory's uncompressed size (offset 24 in its record) to 10 bytes.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    with pytest.raises(MaterialsError):
        materials_files.extract_archive(tmp_path / "liar.zip", tmp_path / "out", 2 * MB)
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) <= 2 * MB


def test_a_tar_over_the_limit_is_refused_from_its_headers(tmp_path):
    archive = make_tar(tmp_path / "big.tar.gz", [file_entry("a.bin", b"\0" * MB), file_entry("b.bin", b"\0" * (MB + 1))])
    with pytest.raises(MaterialsError, match="more than 2 MB once unpacked"):
        materials_files.extract_archive(archive, tmp_path / "out", 2 * MB)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name", ["broken.zip", "broken.tar.gz"])
def test_a_corrupt_archive_is_refused_by_name(tmp_path, name):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("intro.ipynb", os.urandom(5000))
    damaged = bytearray(good.read_bytes()) if name.endswith(".zip") else bytearray(b"\x1f\x8b" + os.urandom(3000))
    if name.endswith(".zip"):
        damaged[100:400] = os.urandom(300)  # inside the compressed data: the CRC check fails
    (tmp_path / name).write_bytes(bytes(damaged))
    with pytest.raises(MaterialsError, match=f"{name} is not a readable zip or tar.gz archive"):
        materials_files.extract_archive(tmp_path / name, tmp_path / "out", 200 * MB)


def zip_of(path, names):
    """A zip of ``names`` in that order: a name ending in / is a folder entry."""
    with zipfile.ZipFile(path, "w") as bundle:
        for name in names:
            bundle.writestr(name, b"" if name.endswith("/") else b"x")
    return path


def tar_of(path, names):
    """A tar.gz of ``names`` in that order: a name ending in / is a folder entry."""
    entries = [special_entry(name.rstrip("/"), tarfile.DIRTYPE) if name.endswith("/") else file_entry(name, b"x") for name in names]
    return make_tar(path, entries)


@pytest.mark.parametrize("make", [zip_of, tar_of])
@pytest.mark.parametrize(
    ("names", "clash"),
    [
        (["data/", "data"], "data"),
        (["data", "data/"], "data"),
        (["data", "data/x.csv"], "data"),
        (["data/x.csv", "data"], "data"),
        (["./notes", "notes/day1/slides.md"], "notes"),
        (["a/b", "a/b/c/d.txt"], "a/b"),
    ],
)
def test_an_archive_holding_a_file_and_a_folder_of_one_name_is_refused_before_anything_is_written(tmp_path, make, names, clash):
    archive = make(tmp_path / ("clash.zip" if make is zip_of else "clash.tar.gz"), ["intro.ipynb", *names])
    with pytest.raises(MaterialsError, match=f"holds both a file and a folder named '{clash}'"):
        materials_files.extract_archive(archive, tmp_path / "out", 200 * MB)
    assert list((tmp_path / "out").iterdir()) == []


def test_an_archive_naming_a_folder_twice_or_a_file_twice_is_still_accepted(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = zip_of(tmp_path / "twice.zip", ["data/", "data/", "data/x.csv", "notes.md", "notes.md"])
    materials_files.extract_archive(archive, tmp_path / "out", 200 * MB)
    assert read_tree(tmp_path / "out") == {"data/x.csv": b"x", "notes.md": b"x"}


def test_a_host_folder_is_copied_and_one_holding_a_link_is_refused(tmp_path):
    source = write_tree(tmp_path / "workshop")
    prepared = materials_files.prepare(str(source), "", tmp_path / "copy", max_bytes=200 * MB, git_timeout=5, scratch=tmp_path)
    assert read_tree(tmp_path / "copy") == FILES and prepared.files == 2
    (source / "data" / "secrets").symlink_to("/etc")
    with pytest.raises(MaterialsError, match="data/secrets is a link; links are not allowed"):
        materials_files.prepare(str(source), "", tmp_path / "copy2", max_bytes=200 * MB, git_timeout=5, scratch=tmp_path)


def test_a_folder_over_the_limit_is_refused(tmp_path):
    source = write_tree(tmp_path / "workshop", {"a.bin": b"\0" * (2 * MB), "b.bin": b"\0" * 10})
    with pytest.raises(MaterialsError, match="more than 2 MB once unpacked"):
        materials_files.prepare(str(source), "", tmp_path / "copy", max_bytes=2 * MB, git_timeout=5, scratch=tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("workshop.zip", "a git URL or an absolute path"),
        ("/srv/notes.pdf", "/srv/notes.pdf is not a folder on this host, nor an archive ending in .zip, .tar.gz, .tgz, .tar"),
    ],
)
def test_sources_that_are_neither_a_git_url_nor_an_absolute_path_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        materials_files.check_source(source)


@pytest.mark.parametrize("source", ["/etc", "//etc/.", "/root/.ssh", "/var/lib/docker/volumes/x.tar", "/"])
def test_host_folders_and_archives_notebooks_must_not_see_are_refused_by_their_real_path(source):
    with pytest.raises(ValueError, match="must never see"):
        materials_files.check_source(source)


def test_a_link_to_a_protected_folder_is_refused_when_the_worker_copies_it(tmp_path):
    saved_work = write_tree(tmp_path / "var" / "snapshots", {"someone.zip": b"their work"})
    (tmp_path / "workshop").symlink_to(saved_work)
    with pytest.raises(MaterialsError, match=r"must never see .*workshop \(that is .*/snapshots\)"):
        materials_files.prepare(str(tmp_path / "workshop"), "", tmp_path / "out", max_bytes=MB, git_timeout=5, scratch=tmp_path, protected=[str(saved_work)])
    assert not (tmp_path / "out").exists()


def test_a_missing_archive_or_a_branch_without_git_is_refused(tmp_path):
    with pytest.raises(MaterialsError, match="is neither a folder nor an archive on this host"):
        materials_files.prepare(str(tmp_path / "gone.zip"), "", tmp_path / "out", max_bytes=MB, git_timeout=5, scratch=tmp_path)
    with pytest.raises(MaterialsError, match="a branch goes with a git URL only"):
        materials_files.prepare(str(write_tree(tmp_path / "w")), "main", tmp_path / "out", max_bytes=MB, git_timeout=5, scratch=tmp_path)


def test_packing_for_a_user_gives_every_entry_their_uid_and_gid(tmp_path):
    tree = write_tree(tmp_path / "tree")
    tar_path = materials_files.pack_for_user(tree, tmp_path / "v1-1000-100.tar", 1000, 100)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    assert sorted(m.name for m in members) == ["data", "data/numbers.csv", "intro.ipynb"]
    assert {(m.uid, m.gid, m.uname) for m in members} == {(1000, 100, "")}
    assert not list(tmp_path.glob("*.partial"))


# --- git, against repositories of our own on loopback --------------------------


def git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving_git(root, files=FILES):
    """A bare repository of ``files`` on main, plus a workshop branch adding
    extra.md, served by git daemon on 127.0.0.1; yields its git:// URL."""
    work = Path(root) / "work"
    write_tree(work, files)
    commit = ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m"]
    git("init", "-q", "-b", "main", str(work))
    git("add", ".", cwd=work)
    git(*commit, "materials", cwd=work)
    git("checkout", "-q", "-b", "workshop", cwd=work)
    (work / "extra.md").write_text("# day two\n")
    git("add", ".", cwd=work)
    git(*commit, "day two", cwd=work)
    git("checkout", "-q", "main", cwd=work)  # the bare copy's default branch
    served = Path(root) / "served"
    git("clone", "-q", "--bare", str(work), str(served / "workshop.git"))
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={port}", f"--base-path={served}", str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"git://127.0.0.1:{port}/workshop.git"
        for _ in range(100):  # until it listens
            if subprocess.run(["git", "ls-remote", url], capture_output=True, timeout=10).returncode == 0:
                break
            time.sleep(0.1)
        yield url
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.fixture
def git_server(tmp_path):
    with serving_git(tmp_path) as url:
        yield url


def test_a_git_repository_on_loopback_is_cloned_with_its_branch_and_without_its_history(tmp_path, git_server):
    prepared = materials_files.prepare(git_server, "", tmp_path / "main", max_bytes=MB, git_timeout=30, scratch=tmp_path / "s1")
    assert read_tree(tmp_path / "main") == FILES and prepared.files == 2
    materials_files.prepare(git_server, "workshop", tmp_path / "day2", max_bytes=MB, git_timeout=30, scratch=tmp_path / "s2")
    assert read_tree(tmp_path / "day2") == FILES | {"extra.md": b"# day two\n"}
    assert not (tmp_path / "day2" / ".git").exists()


def test_a_git_url_that_fails_names_the_url_and_what_git_said(tmp_path, git_server):
    with pytest.raises(MaterialsError, match=r"cloning .* \(branch nope\) failed: .*nope"):
        materials_files.prepare(git_server, "nope", tmp_path / "out", max_bytes=MB, git_timeout=30, scratch=tmp_path / "s")


def test_a_git_server_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, and says nothing
    try:
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/workshop.git"
        with pytest.raises(MaterialsError, match=r"took longer than 2 s \(TMPNB_MATERIALS_GIT_TIMEOUT\)"):
            materials_files.prepare(url, "", tmp_path / "out", max_bytes=MB, git_timeout=2, scratch=tmp_path)
    finally:
        silent.close()
