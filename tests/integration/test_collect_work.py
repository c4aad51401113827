"""Collecting everyone's work on the real stack, with the tiny image run as an
unprivileged notebook user: real containers, real files written in them,
`manage.py collect_work` (what `deploy/manage collect_work` runs) gives a zip
with each participant's files byte for byte, and every session goes on."""

import io
import secrets
import subprocess
import sys
import tarfile
import zipfile
from pathlib import PurePosixPath

import docker

from pool.models import Container, Session
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import visit, wait_until
from tests.stack import ROOT

# The tiny image's server, run as uid 1000 (no root), whose notebook root
# folder is /tmp/work: the command names it as Jupyter's would, so the
# service copies that folder (an argument sh ignores, as $0).
WORK_COMMAND = (
    "sh -c 'mkdir -p /tmp/work /tmp/www{base_path} && echo tree {base_path} > /tmp/www{base_path}tree"
    " && exec httpd -f -p {port} -h /tmp/www' --ServerApp.root_dir=/tmp/work"
)
ROOT_FOLDER = "/tmp/work"


def unprivileged_pool(**fields):
    return PoolFactory(command=WORK_COMMAND, container_user="1000:100", **fields)


def participants_land(stack, count):
    wait_until(lambda: Container.objects.ready().count() >= count, timeout=60, what=f"{count} ready containers")
    for _ in range(count):
        response, _ = visit(stack.url)
        assert response.status_code == 200 and "/user/" in response.url
    return list(Session.objects.active().select_related("container").order_by("started_at"))


def write_as_notebook_user(container, path, data):
    """A file put into the container's root folder, owned by its notebook user, as their notebook would write it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in [str(parent) for parent in reversed(PurePosixPath(path).parents) if str(parent) != "."]:
            tar.addfile(owned(tarfile.TarInfo(folder), tarfile.DIRTYPE, 0o755))
        tar.addfile(owned(tarfile.TarInfo(path), tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    client = docker.from_env()
    try:
        assert client.api.put_archive(container.backend_id, ROOT_FOLDER, buffer.getvalue())
    finally:
        client.close()


def owned(member, kind, mode, size=0):
    member.type, member.mode, member.size, member.uid, member.gid = kind, mode, size, 1000, 100
    return member


def manage(stack, *args):
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=stack.worker.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_collect_work_zips_each_participants_files_byte_for_byte_and_ends_nothing(live_stack, tmp_path):
    unprivileged_pool(capacity=3)
    live_stack.start()
    sessions = participants_land(live_stack, 3)
    written = {}
    for session in sessions:
        files = {"notes.txt": f"{session.visitor_tag} was here\n".encode(), "data/random.bin": secrets.token_bytes(300_000)}
        for path, data in files.items():
            write_as_notebook_user(session.container, path, data)
        written[session.visitor_tag] = files

    out = tmp_path / "everyone.zip"
    said = manage(live_stack, "collect_work", "default", "--out", str(out))
    assert said == f"Pool default: the work of 3 participant(s) written to {out}.\n"
    with zipfile.ZipFile(out) as archive:
        got = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    for tag, files in written.items():
        for path, data in files.items():
            assert got[f"{tag}/{path}"] == data, f"{tag}/{path}"
    assert "Every participant's folder was copied whole." in got["README.txt"].decode()
    assert set(got) == {f"{tag}/{path}" for tag, files in written.items() for path in files} | {"README.txt"}
    # Nothing ended: the same sessions, their containers still running and reached through the proxy.
    assert list(Session.objects.active().order_by("started_at")) == sessions
    client = docker.from_env()
    try:
        assert all(client.containers.get(s.container.backend_id).status == "running" for s in sessions)
    finally:
        client.close()
