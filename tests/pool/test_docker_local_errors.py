"""A Docker call that fails on this machine's side (the tar to copy in gone,
the folder to copy out into not writable) raises BackendError, as a refusal
by the engine does, so its callers (the spawn's materials, the snapshots, the
static files) handle it like any other failure of the backend."""

import io
import tarfile

import pytest

from pool.backends import docker as docker_backend
from pool.backends.base import BackendError


def test_copy_in_of_a_tar_that_is_gone_raises_backend_error(tmp_path):
    with pytest.raises(BackendError, match="No such file or directory"):
        docker_backend.copy_in("abc123", tar_path=str(tmp_path / "v1-1000-100.tar"), destination="/home/jovyan")


def test_copy_out_into_a_folder_that_cannot_be_written_raises_backend_error(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("static/app.css")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"body"))
    # What the engine streams for the path; the folder given is a file here.
    monkeypatch.setattr(docker_backend, "archive_out_on", lambda engine, backend_id, path, timeout: iter([buffer.getvalue()]))
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(BackendError, match="copying /srv/static out of abc123"):
        docker_backend.copy_out("abc123", path="/srv/static", destination=str(tmp_path / "not-a-folder"))
