"""How the Swarm backend finds the engine that copies a notebook's files: the
one of the node its task runs on (TMPNB_SWARM_NODE_ENGINES), with the
manager's API faked (tests/fakes.py FakeSwarm); the lab copies for real
(tests/integration/test_swarm.py)."""

import types

import pytest

from pool import backends
from pool.backends import swarm as swarm_backend
from pool.backends.base import NotebookUser
from pool.backends.client import engine_client


@pytest.fixture
def on_worker_1(fake_swarm):
    fake_swarm.set_node("worker-1")
    fake_swarm.run_service("tmpnb-x-default-1", pool="default", node="worker-1")
    return "id-tmpnb-x-default-1"


@pytest.fixture
def node_engine(monkeypatch):
    """The calls on files made on a node's engine: they answer from here, and say who was asked."""
    asked = []
    monkeypatch.setattr(swarm_backend, "engine_client", lambda url: f"engine at {url}")

    def notebook_user_on(engine, container_id):
        asked.append((engine(), container_id))
        return NotebookUser(uid=1000, gid=100, folder="/home/jovyan")

    def archive_out_on(engine, container_id, path, *, timeout):
        asked.append((engine(), container_id))
        yield b"tar bytes"

    monkeypatch.setattr(swarm_backend.one_engine, "notebook_user_on", notebook_user_on)
    monkeypatch.setattr(swarm_backend.one_engine, "archive_out_on", archive_out_on)
    return asked


def test_a_notebooks_files_are_asked_of_its_nodes_engine_for_its_tasks_container(settings, on_worker_1, node_engine):
    settings.TMPNB_SWARM_NODE_ENGINES = {"manager": "unix:///run/manager.sock", "worker-1": "tcp://10.99.0.2:2376"}
    assert swarm_backend.notebook_user(on_worker_1).uid == 1000
    assert list(swarm_backend.archive_out(on_worker_1, ".", timeout=5)) == [b"tar bytes"]
    assert node_engine == [("engine at tcp://10.99.0.2:2376", "container-tmpnb-x-default-1")] * 2


def test_the_tar_stream_asks_nothing_before_it_is_read(settings, on_worker_1, node_engine):
    # As on one engine: a caller opens the stream and handles its errors where it reads.
    settings.TMPNB_SWARM_NODE_ENGINES = {}
    stream = swarm_backend.archive_out(on_worker_1, ".", timeout=5)
    with pytest.raises(swarm_backend.SwarmError):
        next(stream)


def test_a_node_whose_engine_is_not_known_is_named_in_the_error(settings, on_worker_1, node_engine):
    settings.TMPNB_SWARM_NODE_ENGINES = {"worker-2": "unix:///run/worker-2.sock"}
    with pytest.raises(swarm_backend.SwarmError, match="no engine is known for node worker-1 \\(TMPNB_SWARM_NODE_ENGINES\\)"):
        swarm_backend.notebook_user(on_worker_1)
    assert not node_engine


def test_a_node_whose_engine_does_not_answer_is_an_error_worth_another_try(settings, on_worker_1, tmp_path):
    # A node stopped or lost: its socket is gone. The copy of saved work
    # tries again within its own time, then records the failure.
    settings.TMPNB_SWARM_NODE_ENGINES = {"worker-1": f"unix://{tmp_path}/gone.sock"}
    settings.TMPNB_DOCKER_VERSION = "1.41"  # the manager's client, faked here, asks nothing
    with pytest.raises(swarm_backend.SwarmError, match="on node worker-1: looking for /home/jovyan/notes.ipynb") as refused:
        swarm_backend.path_exists(on_worker_1, "/home/jovyan/notes.ipynb")
    assert refused.value.unreachable


def test_a_swarm_copies_files_only_where_its_nodes_engines_are_known(settings):
    settings.TMPNB_BACKEND = "swarm"
    settings.TMPNB_SWARM_NODE_ENGINES = {}
    assert not backends.copies_files()
    settings.TMPNB_SWARM_NODE_ENGINES = {"worker-1": "unix:///run/worker-1.sock"}
    assert backends.copies_files()


def test_an_engine_on_the_network_is_asked_over_tls_with_the_client_certificate(settings, tmp_path):
    for pem in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / pem).write_text("")
    settings.TMPNB_SWARM_ENGINE_CERTS, settings.TMPNB_DOCKER_VERSION = str(tmp_path), "1.41"  # a fixed version: nothing asked
    api = engine_client("tcp://10.99.0.2:2376").api
    assert api.base_url == "https://10.99.0.2:2376"
    assert api.cert == (f"{tmp_path}/cert.pem", f"{tmp_path}/key.pem") and api.verify == f"{tmp_path}/ca.pem"
    assert not api.trust_env  # REQUESTS_CA_BUNDLE would replace the CA, HTTPS_PROXY reach the engine


def engine_holding(*containers):
    """A node's engine whose list of our containers (with sizes) is ``containers``: (name on the node, notebook, bytes)."""
    listed = [{"Names": [f"/{name}"], "Labels": {"tmpnb.container": notebook}, "SizeRw": size} for name, notebook, size in containers]
    return types.SimpleNamespace(api=types.SimpleNamespace(containers=lambda **options: listed if options.get("size") else []))


def test_the_disk_is_measured_on_every_nodes_engine_by_notebook_name(settings, monkeypatch):
    engines = {
        "unix:///run/manager.sock": engine_holding(("tmpnb-x-default-1.1.abc", "tmpnb-x-default-1", 5_000)),
        "tcp://10.99.0.2:2376": engine_holding(("tmpnb-x-default-2.1.def", "tmpnb-x-default-2", 3_000_000)),
    }
    monkeypatch.setattr(swarm_backend, "engine_client", engines.__getitem__)
    settings.TMPNB_BACKEND = "swarm"
    settings.TMPNB_SWARM_NODE_ENGINES = {"manager": "unix:///run/manager.sock", "worker-1": "tcp://10.99.0.2:2376"}
    assert backends.get_backend().disk_usage() == {"tmpnb-x-default-1": 5_000, "tmpnb-x-default-2": 3_000_000}


def test_a_node_that_does_not_answer_leaves_its_notebooks_unmeasured_and_none_answering_is_an_error(settings, monkeypatch, tmp_path):
    gone = f"unix://{tmp_path}/gone.sock"
    monkeypatch.setattr(swarm_backend, "engine_client", lambda url: engine_client(url) if url == gone else engine_holding(("t.1.a", "tmpnb-x-default-1", 7)))
    settings.TMPNB_DOCKER_VERSION = "1.41"  # the manager's client, faked here, asks nothing
    settings.TMPNB_SWARM_NODE_ENGINES = {"manager": "unix:///run/manager.sock", "worker-1": gone}
    assert swarm_backend.disk_usage() == {"tmpnb-x-default-1": 7}
    settings.TMPNB_SWARM_NODE_ENGINES = {"worker-1": gone}
    with pytest.raises(swarm_backend.SwarmError, match="no node answered \\(on node worker-1: measuring"):
        swarm_backend.disk_usage()
