"""Every backend provides the contract of pool/backends/base.py."""

import inspect
import socket

import pytest
import requests

from pool.backends import BACKENDS, docker as docker_backend
from pool.backends.base import Backend
from pool.backends.client import DockerError, docker_errors

CONTRACT = [name for name, member in vars(Backend).items() if inspect.isfunction(member) and not name.startswith("_")]


def parameters(function):
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_has_every_call_of_the_contract_with_its_parameters(name):
    backend = BACKENDS[name]
    assert CONTRACT
    for call in CONTRACT:
        assert parameters(getattr(backend, call)) == parameters(getattr(Backend, call)), call


def test_an_engine_that_does_not_answer_is_told_apart_from_one_that_refuses(settings):
    with socket.socket() as listener:  # a port nothing listens on: the connection is refused
        listener.bind(("127.0.0.1", 0))
        closed_port = listener.getsockname()[1]
    with pytest.raises(DockerError) as away, docker_errors("asking"):
        requests.get(f"http://127.0.0.1:{closed_port}/version", timeout=5)
    assert away.value.unreachable
    settings.DOCKER_HOST = f"tcp://127.0.0.1:{closed_port}"
    with pytest.raises(DockerError) as listing:
        docker_backend.list_containers()
    assert listing.value.unreachable
