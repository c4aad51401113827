"""The guard's rules for the heartbeat and the dashboard, with iptables
replaced (tests/integration/test_network_guard.py runs the real one)."""

import ipaddress

import pytest
from django.core.management import call_command

from pool import netguard
from pool.backends import swarm
from pool.models import Event, GuardCheck
from pool.services import network


@pytest.fixture
def firewall(settings, monkeypatch):
    """A host firewall that holds what install() put there until a reload."""
    settings.TMPNB_NETWORK_GUARD = True
    settings.DOCKER_HOST = "unix:///var/run/docker.sock"
    state = {"installed": 0, "in_place": False, "broken": None}

    def install(policy, installation=None, on=None):
        if state["broken"]:
            raise netguard.GuardError(state["broken"])
        state["installed"] += 1
        state["in_place"] = True

    def missing(policy, installation=None, on=None):
        if state["broken"]:
            raise netguard.GuardError(state["broken"])
        return [] if state["in_place"] else ["the jump from DOCKER-USER"]

    monkeypatch.setattr(netguard, "install", install)
    monkeypatch.setattr(netguard, "missing", missing)
    return state


def test_a_heartbeat_leaves_a_guard_in_place_alone(db, firewall):
    assert network.guard_network()
    network.check_guard()
    network.check_guard()
    assert firewall["installed"] == 1
    assert not Event.objects.exists()
    assert network.guard_warnings() == []


def test_a_guard_gone_is_put_back_once_with_an_event_and_a_warning_for_a_day(db, firewall):
    network.guard_network()
    firewall["in_place"] = False  # a firewall reload
    network.check_guard()
    network.check_guard()
    assert firewall["installed"] == 2
    [event] = Event.objects.filter(kind=Event.Kind.FAILURE)
    assert "was not in place (the jump from DOCKER-USER): put back" in event.message
    put_back_at = GuardCheck.objects.get().put_back_at
    [warning] = network.guard_warnings()
    assert "was put back" in warning
    assert network.guard_warnings(now=put_back_at + network.PUT_BACK_SHOWN) == []


def test_a_guard_that_cannot_be_installed_is_said_once_and_clears_when_it_can(db, firewall):
    firewall["broken"] = "iptables -S: Permission denied (you must be root)"
    assert not network.guard_network()
    network.check_guard()
    assert Event.objects.filter(kind=Event.Kind.FAILURE).count() == 1
    [warning] = network.guard_warnings()
    assert "not guarded: iptables -S: Permission denied" in warning
    firewall["broken"] = None
    network.check_guard()
    assert network.guard_warnings() and "put back" in network.guard_warnings()[0]
    assert GuardCheck.objects.get().problem == ""


def test_the_dashboard_and_pool_status_show_the_guards_problem(db, firewall, admin_client, capsys):
    firewall["broken"] = "iptables is not installed"
    network.guard_network()
    page = admin_client.get("/admin/").content.decode()
    assert 'id="warnings"' in page and "iptables is not installed" in page
    call_command("pool_status")
    assert "WARNING: " in capsys.readouterr().err


def test_nothing_is_checked_where_the_guard_does_not_apply(db, firewall, settings):
    settings.DOCKER_HOST = "tcp://engine.example.org:2376"  # the notebooks' bridges are on another machine
    assert not network.guard_network()
    network.check_guard()
    assert firewall["installed"] == 0 and not GuardCheck.objects.exists()


@pytest.mark.parametrize(
    ("resolv_conf", "upstream", "resolvers"),
    [
        ("nameserver 10.255.255.53\n", "", ("10.255.255.53",)),
        ("# a comment\nnameserver 169.254.169.253\nnameserver fd00::1\nsearch example.org\n", "", ("169.254.169.253",)),
        # systemd-resolved's stub: Docker forwards to the upstream list.
        ("nameserver 127.0.0.53\noptions edns0\n", "nameserver 192.168.1.1\nnameserver 192.168.1.2\n", ("192.168.1.1", "192.168.1.2")),
        ("nameserver not-an-address\n", "", ()),
    ],
)
def test_the_resolvers_docker_forwards_to_stay_reachable(tmp_path, monkeypatch, resolv_conf, upstream, resolvers):
    (tmp_path / "resolv.conf").write_text(resolv_conf)
    (tmp_path / "upstream.conf").write_text(upstream)
    monkeypatch.setattr(network, "RESOLV_CONF", tmp_path / "resolv.conf")
    monkeypatch.setattr(network, "UPSTREAM_RESOLV_CONF", tmp_path / "upstream.conf")
    assert network.resolvers_on(netguard.run_here) == resolvers


def test_the_policy_comes_from_the_settings(settings, monkeypatch, tmp_path):
    monkeypatch.setattr(network, "RESOLV_CONF", tmp_path / "none")
    settings.TMPNB_GUARD_ALLOW = ["10.9.0.0/16"]
    settings.TMPNB_GUARD_PEERS = True
    policy = network.guard_policy()
    assert policy.allow == ("10.9.0.0/16",) and policy.peers and policy.resolvers == ()
    assert "169.254.0.0/16" in policy.deny and "168.63.129.16/32" in policy.deny


@pytest.fixture
def swarm_nodes(settings, monkeypatch):
    """Three Swarm nodes whose iptables take every rule, but node-3's engine
    cannot be reached; returns the guarded label of each node."""
    settings.TMPNB_NETWORK_GUARD = True
    settings.TMPNB_BACKEND = "swarm"
    settings.TMPNB_SWARM_NODE_ENGINES = {f"node-{n}": f"unix:///run/node-{n}.sock" for n in (1, 2, 3)}
    labels = {}

    def run_on_node(hostname, command, stdin, *, timeout):
        if hostname == "node-3":
            raise swarm.SwarmError("on node node-3: the engine does not answer")
        return 0, "", ""  # iptables agrees to everything

    monkeypatch.setattr(swarm, "run_on_node", run_on_node)
    monkeypatch.setattr(swarm, "mark_guarded", lambda hostname, guarded: labels.__setitem__(hostname, guarded))
    return labels


def test_on_a_swarm_each_node_lets_its_own_resolvers_through(db, settings, monkeypatch):
    settings.TMPNB_NETWORK_GUARD = True
    settings.TMPNB_BACKEND = "swarm"
    settings.TMPNB_SWARM_NODE_ENGINES = {"node-1": "unix:///run/node-1.sock", "node-2": "tcp://10.99.0.2:2376"}
    resolv_conf = {"node-1": "nameserver 10.0.0.2\n", "node-2": "nameserver 169.254.169.253\n"}
    restored = {}

    def run_on_node(hostname, command, stdin, *, timeout):
        if command == ["cat", str(network.RESOLV_CONF)]:
            return 0, resolv_conf[hostname], ""
        if command[0] == "iptables-restore":
            restored[hostname] = stdin
        return 0, "", ""

    monkeypatch.setattr(swarm, "run_on_node", run_on_node)
    monkeypatch.setattr(swarm, "mark_guarded", lambda hostname, guarded: None)
    assert network.guard_network()
    assert "-d 10.0.0.2 -p udp" in restored["node-1"] and "169.254.169.253" not in restored["node-1"]
    assert "-d 169.254.169.253 -p udp" in restored["node-2"] and "10.0.0.2" not in restored["node-2"]


def test_on_a_swarm_each_node_is_guarded_checked_and_labelled_on_its_own(db, swarm_nodes):
    assert not network.guard_network()
    assert swarm_nodes == {"node-1": True, "node-2": True, "node-3": False}
    problems = dict(GuardCheck.objects.values_list("host", "problem"))
    assert problems["node-1"] == problems["node-2"] == ""
    assert "the engine does not answer; it gets no new notebooks" in problems["node-3"]
    [warning] = network.guard_warnings()
    assert warning.startswith("node-3: notebook network not guarded")


def verdict(rules, *, inbound, outbound, destination, protocol="tcp", port=80):
    """What the forward chain does with a new connection: the target of the
    first rule that matches it, as iptables walks the chain."""

    def interface(name, pattern):
        return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern

    for chain, *rule in rules:
        if not chain.endswith(netguard._tag()):
            continue
        options = dict(zip(rule[::2], rule[1::2], strict=False))
        if "--ctstate" in rule:
            continue  # answers only: a new connection is not one
        if "-i" in options and not interface(inbound, options["-i"]):
            continue
        if "-o" in options and not interface(outbound, options["-o"]):
            continue
        if "-d" in options and ipaddress.ip_address(destination) not in ipaddress.ip_network(options["-d"]):
            continue
        if "-p" in options and (options["-p"] != protocol or int(options["--dport"]) != port):
            continue
        return options["-j"]
    return "RETURN"  # the end of the chain: back to Docker's rules, which forward it


@pytest.mark.parametrize("peers", [False, True])
def test_the_internal_network_opens_no_connection_anywhere_its_resolvers_and_allowed_ranges_included(peers):
    policy = netguard.Policy(allow=("10.9.0.0/16",), resolvers=("10.254.53.53",), peers=peers)
    rules = netguard._chain_rules(policy)
    internal, routed = netguard.bridge_name(internal=True), netguard.bridge_name()
    outside = "eth0"
    for destination, protocol, port in [("198.51.100.80", "tcp", 80), ("10.254.53.53", "udp", 53), ("10.254.53.53", "tcp", 53), ("10.9.1.1", "tcp", 443)]:
        assert verdict(rules, inbound=internal, outbound=outside, destination=destination, protocol=protocol, port=port) == "REJECT"
        # The routed network reaches the outside, the resolvers and the allowed range.
        assert verdict(rules, inbound=routed, outbound=outside, destination=destination, protocol=protocol, port=port) == "RETURN"
    assert verdict(rules, inbound=internal, outbound=routed, destination="172.30.0.2") == "REJECT"
    # Notebooks on the internal network talk to each other only where peers may.
    assert verdict(rules, inbound=internal, outbound=internal, destination="172.30.1.3") == ("RETURN" if peers else "REJECT")
    assert verdict(rules, inbound=routed, outbound=routed, destination="172.30.0.3") == ("RETURN" if peers else "REJECT")
    # Denied ranges stay denied to the routed network.
    assert verdict(rules, inbound=routed, outbound=outside, destination="169.254.169.254") == "REJECT"
