"""The Swarm backend's service spec, without a Swarm (the lab's tests run it
for real: tests/integration/test_swarm.py)."""

import pytest
from django.core.exceptions import ValidationError

from pool import backends, netguard
from pool.backends import get_backend, swarm as swarm_backend
from pool.backends.base import ContainerSpec
from pool.services import spawning
from tests.factories import ContainerFactory, PoolFactory


def spec(**values):
    defaults = dict(
        name="tmpnb-x-default-abc", image="tmpnb/tiny:latest", command="sh -c 'exec httpd -f -p 8888'", pool="default", container_port=8888, host_ip="127.0.0.1"
    )
    return ContainerSpec(**{**defaults, **values})


def test_the_command_is_passed_as_args_so_the_images_entrypoint_stays():
    container = swarm_backend._task_template(spec())["ContainerSpec"]
    assert container["Args"] == ["sh", "-c", "exec httpd -f -p 8888"]
    assert "Command" not in container


def test_the_pools_limits_become_the_services_resources():
    template = swarm_backend._task_template(spec(mem_limit="512m", cpu_quota=50000, pids_limit=100))
    assert template["Resources"]["Limits"] == {"MemoryBytes": 512 * 1024**2, "NanoCPUs": 500_000_000, "Pids": 100}
    assert template["RestartPolicy"] == {"Condition": "none"}  # the pool replaces a notebook, Swarm does not


def test_host_directories_are_bind_mounts_read_only_unless_rw():
    mounts = swarm_backend._task_template(spec(volumes=["/srv/data:/data:ro", "/srv/out:/out:rw"]))["ContainerSpec"]["Mounts"]
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in mounts] == [("/srv/data", "/data", True), ("/srv/out", "/out", False)]


def test_the_host_network_is_refused_and_an_internal_network_is_joined_as_any(settings):
    with pytest.raises(swarm_backend.SwarmError, match="the host network is not available on the swarm backend"):
        swarm_backend._task_template(spec(host_network=True))
    assert swarm_backend._task_template(spec(internal=True, network="tmpnb-x-internal"))["Networks"] == [{"Target": "tmpnb-x-internal"}]


def test_an_internal_network_is_not_made_without_the_guard(settings):
    settings.TMPNB_NETWORK_GUARD = False
    with pytest.raises(swarm_backend.SwarmError, match="needs the network guard"):
        swarm_backend.ensure_network("tmpnb-x-internal", pool="default", internal=True, bridge="tnbxi")


def test_the_setting_picks_the_backend(settings):
    assert get_backend().__name__ == "pool.backends.docker"
    settings.TMPNB_BACKEND = "swarm"
    assert get_backend() is swarm_backend


def test_with_the_guard_on_notebooks_are_placed_only_on_guarded_nodes(settings):
    settings.TMPNB_INSTALLATION = "x"
    settings.TMPNB_NETWORK_GUARD = True
    assert swarm_backend._task_template(spec())["Placement"] == {"Constraints": ["node.labels.tmpnb.guarded.x==true"]}
    settings.TMPNB_NETWORK_GUARD = False
    assert "Placement" not in swarm_backend._task_template(spec())


@pytest.mark.parametrize(("guard", "network"), [(True, "tmpnb-x"), (False, "")])
def test_on_a_guarded_swarm_notebooks_join_the_installations_network(db, settings, monkeypatch, fake_backend, guard, network):
    # The network's bridge is what the guard's rules match on each node.
    settings.TMPNB_BACKEND, settings.TMPNB_ROUTE_TO, settings.TMPNB_INSTALLATION, settings.TMPNB_NETWORK_GUARD = "swarm", "published", "x", guard
    monkeypatch.setitem(backends.BACKENDS, "swarm", fake_backend)
    made = []
    monkeypatch.setattr(fake_backend, "ensure_network", lambda name, *, pool, internal=False, bridge="": made.append((name, bridge)))
    made_spec = spawning.container_spec(ContainerFactory())
    assert made_spec.network == network and made_spec.publish
    assert made == ([(network, netguard.bridge_name())] if guard else [])


def test_on_a_swarm_an_internal_pools_notebooks_join_the_internal_bridge_with_their_port_published(db, settings, monkeypatch, fake_backend):
    # Its bridge is the one the guard cuts off on each node.
    settings.TMPNB_BACKEND, settings.TMPNB_ROUTE_TO, settings.TMPNB_INSTALLATION, settings.TMPNB_NETWORK_GUARD = "swarm", "published", "x", True
    monkeypatch.setitem(backends.BACKENDS, "swarm", fake_backend)
    made = []
    monkeypatch.setattr(fake_backend, "ensure_network", lambda name, *, pool, internal=False, bridge="": made.append((name, internal, bridge)))
    made_spec = spawning.container_spec(ContainerFactory(pool=PoolFactory(internal_network=True)))
    assert made_spec.network == "tmpnb-x-internal" and made_spec.internal and made_spec.publish
    assert made == [("tmpnb-x-internal", True, netguard.bridge_name(internal=True))]


def test_a_pool_on_a_swarm_refuses_the_host_network_and_an_internal_one_without_the_guard(settings):
    settings.TMPNB_BACKEND, settings.TMPNB_NETWORK_GUARD = "swarm", True
    with pytest.raises(ValidationError, match="the proxy could not reach them on another node"):
        PoolFactory.build(host_network=True).clean()
    PoolFactory.build(internal_network=True).clean()
    settings.TMPNB_NETWORK_GUARD = False
    with pytest.raises(ValidationError, match="an internal network needs the network guard"):
        PoolFactory.build(internal_network=True).clean()
    settings.TMPNB_BACKEND = "docker"
    PoolFactory.build(host_network=True).clean()
    PoolFactory.build(internal_network=True).clean()
