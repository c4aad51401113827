"""Copying files out of a container is bounded by its deadline even while a
read is stalled: docker-py's get_archive turns the socket's timeout off, so
the backend reads the stream itself. Here the engine is a stand-in on a
local port that sends the start of a tar and then nothing more."""

import io
import socket
import tarfile
import threading
import time

import pytest

from pool.backends import docker as docker_backend
from pool.backends.base import BackendError

FIRST_PART = b"x" * 1000


def tar_start():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("work/notes.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"work"))
    return buffer.getvalue()


class StallingEngine:
    """Answers one archive request with ``body``, sent as one chunk of a
    chunked answer, and then keeps the connection open without a byte more
    for ``stall`` seconds (or, with ``stall`` 0, ends the answer)."""

    def __init__(self, body, stall):
        self.body, self.stall = body, stall
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        connection, _ = self.listener.accept()
        with connection:
            self.requests.append(connection.recv(65536).split(b"\r\n"))
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
            connection.sendall(head + b"%x\r\n" % len(self.body) + self.body + b"\r\n")
            if self.stall:
                time.sleep(self.stall)
            else:
                connection.sendall(b"0\r\n\r\n")


@pytest.fixture
def engine(settings):
    made = []

    def make(body, stall):
        made.append(StallingEngine(body, stall))
        settings.TMPNB_DOCKER_VERSION = "1.41"  # no word to the engine before the call
        settings.DOCKER_HOST = made[-1].url
        return made[-1]

    yield make
    for each in made:
        each.listener.close()


def test_a_stalled_read_ends_at_the_deadline_with_what_came_before_it(engine, settings):
    settings.DOCKER_TIMEOUT = 30  # longer than the deadline: only the deadline can end it
    engine(tar_start(), stall=20)
    got = []
    started = time.monotonic()
    with pytest.raises(BackendError, match="not done in time"):
        for chunk in docker_backend.archive_out("abc123", "/home/jovyan", timeout=1):
            got.append(chunk)
    assert time.monotonic() - started < 3
    assert b"".join(got) == tar_start()


def test_a_read_stalled_longer_than_docker_timeout_ends_even_with_a_far_deadline(engine, settings):
    settings.DOCKER_TIMEOUT = 1
    engine(FIRST_PART, stall=20)
    started = time.monotonic()
    with pytest.raises(BackendError, match="stalled"):
        list(docker_backend.archive_out("abc123", "/home/jovyan", timeout=60))
    assert time.monotonic() - started < 3


def test_a_stream_that_ends_in_time_is_read_whole_from_the_path_asked(engine):
    served = engine(tar_start(), stall=0)
    assert b"".join(docker_backend.archive_out("abc123", "/home/jovyan", timeout=5)) == tar_start()
    [request] = served.requests
    assert request[0] == b"GET /v1.41/containers/abc123/archive?path=%2Fhome%2Fjovyan HTTP/1.1"
    assert b"Accept-Encoding: identity" in request  # the tar as it is: asked for gzip, Docker compresses it
