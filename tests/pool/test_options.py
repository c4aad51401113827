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


@pytest.mark.parametrize("host", ["/etc/.", "//etc", "/run/.", "/etc/ssl", "/srv/../etc", "/var", "/var/lib", "/proc/1/root", "/", "/var/lib/docker/volumes"])
def test_host_folders_are_compared_by_their_real_path_in_above_or_below(host):
    with pytest.raises(ValueError, match="must never see"):
        parse_host_directories(f"{host}:/data")


def test_a_link_to_a_host_folder_is_refused_and_a_good_one_is_mounted_by_its_real_path(tmp_path):
    (tmp_path / "to-etc").symlink_to("/etc")
    with pytest.raises(ValueError, match=r"must never see .*/to-etc \(that is /etc\)"):
        parse_host_directories(f"{tmp_path}/to-etc:/data")
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    assert parse_host_directories(f"{tmp_path}//link/.:/data") == [f"{tmp_path}/data:/data:ro"]


def test_the_services_own_files_are_protected_too(tmp_path):
    saved_work = tmp_path / "var" / "snapshots"
    with pytest.raises(ValueError, match="must never see"):
        parse_host_directories(f"{tmp_path}/var:/data", protected=[str(saved_work)])
    with pytest.raises(ValueError, match="must never see"):
        parse_host_directories(f"{saved_work}/pool-1:/data", protected=[str(saved_work)])
    assert parse_host_directories(f"{tmp_path}/other:/data", protected=[str(saved_work)]) == [f"{tmp_path}/other:/data:ro"]
