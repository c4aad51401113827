import pytest

from pool.options import parse_extra_hosts, parse_host_directories


def test_host_directories_are_read_only_unless_rw():
    assert parse_host_directories("/srv/data:/home/jovyan/data, /srv/tmp:/scratch:rw") == [
        "/srv/data:/home/jovyan/data:ro",
        "/srv/tmp:/scratch:rw",
    ]
    assert parse_host_directories("") == []


@pytest.mark.parametrize("text", ["data:/x", "/a", "/a:/b:rx", "/a:b"])
def test_bad_host_directories_are_refused(text):
    with pytest.raises(ValueError):
        parse_host_directories(text)


def test_extra_hosts_map_names_to_addresses():
    assert parse_extra_hosts("db:10.0.0.5, cache.local:::1") == {"db": "10.0.0.5", "cache.local": "::1"}


@pytest.mark.parametrize("text", ["db", "db:nowhere", ":10.0.0.1", "bad name:10.0.0.1"])
def test_bad_extra_hosts_are_refused(text):
    with pytest.raises(ValueError):
        parse_extra_hosts(text)


@pytest.mark.parametrize("text", ["/var/run/docker.sock:/var/run/docker.sock", "/run:/r", "/:/host", "/etc:/etc:ro", "/srv/x/docker.sock:/d"])
def test_the_docker_socket_and_host_folders_are_never_mounted(text):
    with pytest.raises(ValueError, match="must never see"):
        parse_host_directories(text)
