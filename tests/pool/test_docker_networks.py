"""Making and removing the installation's networks, against fake Docker
answers: the answers we meet (403 "active endpoints" for a moment, then gone;
403 "same bridge name" while an older network of that bridge is going) cannot
be made on demand by a real engine."""

import logging

import pytest
import requests
from docker.errors import APIError, NotFound

from pool.backends import docker as docker_backend
from pool.backends.base import BackendError


def api_error(status):
    response = requests.Response()
    response.status_code = status
    return APIError(f"{status} from Docker", response=response)


class FakeNetwork:
    def __init__(self, name, answers):
        self.name = name
        self.answers = list(answers)  # what each remove() raises; None removes it
        self.removed = False
        self.tries = 0

    def remove(self):
        self.tries += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.removed = True


@pytest.fixture
def networks(monkeypatch):
    listed = []

    class FakeClient:
        class networks:
            @staticmethod
            def list(**kwargs):
                return listed

    monkeypatch.setattr(docker_backend, "client", FakeClient)
    monkeypatch.setattr(docker_backend, "NETWORK_REMOVE_PAUSE", 0)
    return listed


def test_a_network_with_endpoints_for_a_moment_is_removed_once_they_are_gone(networks):
    busy = FakeNetwork("tmpnb-a", [api_error(403), api_error(403)])
    networks.append(busy)
    docker_backend.remove_networks()
    assert busy.removed and busy.tries == 3


def test_a_network_that_stays_in_use_is_logged_and_left(networks, caplog):
    stuck = FakeNetwork("tmpnb-b", [api_error(403)] * 100)
    gone = FakeNetwork("tmpnb-c", [NotFound("gone")])
    other = FakeNetwork("tmpnb-d", [api_error(500)])
    networks.extend([stuck, gone, other])
    with caplog.at_level(logging.WARNING):
        docker_backend.remove_networks()
    assert not stuck.removed and stuck.tries == docker_backend.NETWORK_REMOVE_TRIES
    assert gone.tries == 1 and other.tries == 1  # a refusal other than 403 is not retried
    assert "network tmpnb-b not removed" in caplog.text and "network tmpnb-d not removed" in caplog.text
    assert "tmpnb-c" not in caplog.text


def test_a_network_whose_bridge_an_older_one_still_holds_is_made_once_that_one_is_gone(monkeypatch):
    made, refusals = [], [api_error(403)]  # networks have same bridge name: the last test's, being removed

    class FakeClient:
        class networks:
            @staticmethod
            def list(**kwargs):
                return made

            @staticmethod
            def create(name, **kwargs):
                if refusals:
                    raise refusals.pop()
                made.append(FakeNetwork(name, []))

    monkeypatch.setattr(docker_backend, "client", FakeClient)
    monkeypatch.setattr(docker_backend, "NETWORK_CREATE_PAUSE", 0)
    docker_backend.ensure_network("tmpnb-e", pool="default", bridge="tnb0000000e")
    assert [network.name for network in made] == ["tmpnb-e"]


def test_a_network_docker_keeps_refusing_is_an_error(monkeypatch):
    class FakeClient:
        class networks:
            @staticmethod
            def list(**kwargs):
                return []

            @staticmethod
            def create(name, **kwargs):
                raise api_error(403)

    monkeypatch.setattr(docker_backend, "client", FakeClient)
    monkeypatch.setattr(docker_backend, "NETWORK_CREATE_PAUSE", 0)
    with pytest.raises(BackendError):
        docker_backend.ensure_network("tmpnb-f", pool="default", bridge="tnb0000000f")
