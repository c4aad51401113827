"""A real three-node Docker Swarm on this machine, in network namespaces.

Each node is a dockerd of its own in its own network, UTS and mount
namespace, at 10.99.<net>.1-3 on a bridge that lives in a namespace of its own;
the host reaches them through one veth at 10.99.<net>.254. The recipe and its
traps are in ../shared/notes/swarm.md: `ip netns exec` would hide the cgroup
mounts (so nsenter + unshare, a fresh sysfs and the host's cgroups bound back
in), and a bridge in the root namespace would meet the host engine's DROP
policy. Everything is named with this lab's prefix and removed by ``down()``,
which tolerates a half-built lab.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

NODES = 3
# Swarm marks a node down after about 3 heartbeats without news, and one left
# unknown by a restarted manager after about 6: a 1 s heartbeat notices a
# lost node in 4 to 5 s, but on a busy machine marks nodes down (and stops
# their tasks) while their agents are still reconnecting to a restarted
# manager. README "Scaling out" gives the figures.
HEARTBEAT = "3s"
# The workers' engines also listen here, over mutual TLS, as README "Scaling
# out" has a real Swarm's nodes do; the manager's is reached at its socket.
ENGINE_PORT = 2376


def run(*args, timeout=60, check=True):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=check)


def _free_subnet():
    """A 10.99.<n>.0/24 no interface of this machine uses (another lab may run)."""
    used = run("ip", "-4", "-o", "addr").stdout
    for _ in range(50):
        net = secrets.randbelow(150) + 100
        if f" 10.99.{net}." not in used:
            return net
    raise RuntimeError("no free 10.99.x.0/24 subnet")


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


# A DNS server for stand_in: answers each query for an A record with its own
# address, and appends the name asked to a file.
STAND_IN_RESOLVER = """
import socket, struct, sys
address, noted = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((address, 53))
while True:
    query, sender = server.recvfrom(512)
    labels, at = [], 12
    while query[at]:
        labels.append(query[at + 1 : at + 1 + query[at]].decode()); at += 1 + query[at]
    question = query[12 : at + 5]
    with open(noted, "a") as log:
        log.write(".".join(labels) + "\\n")
    answer = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
    server.sendto(query[:2] + b"\\x81\\x80" + struct.pack(">HHHH", 1, 1, 0, 0) + question + answer, sender)
"""


class SwarmLab:
    def __init__(self, image_archive):
        self.prefix = f"t8{secrets.token_hex(2)}"  # short: it names interfaces (15 characters at most)
        self.net = _free_subnet()
        self.state = Path(f"/var/tmp/tmpnb-swarm-{self.prefix}")
        self.image_archive = image_archive
        self.daemons = {}
        self.stand_ins = []
        self.noted = {}  # where each stand-in resolver notes its queries, by its address

    # --- names -------------------------------------------------------------

    def netns(self, node):
        return f"{self.prefix}-n{node}"

    @property
    def bridge_ns(self):
        return f"{self.prefix}-br"

    def address(self, node):
        return f"10.99.{self.net}.{node}"

    @property
    def host_address(self):
        return f"10.99.{self.net}.254"

    def socket(self, node):
        return self.state / f"n{node}" / "docker.sock"

    def docker_host(self, node=1):
        return f"unix://{self.socket(node)}"

    def hostname(self, node):
        return f"{self.prefix}-n{node}"

    def client(self, node=1):
        return docker.DockerClient(base_url=self.docker_host(node), timeout=30)

    def node_engines(self):
        """{hostname: engine} of every node, as TMPNB_SWARM_NODE_ENGINES takes them:
        the workers' over TLS (with the client certificate in ``certs``)."""
        workers = {self.hostname(n): f"tcp://{self.address(n)}:{ENGINE_PORT}" for n in range(2, NODES + 1)}
        return {self.hostname(1): self.docker_host(1), **workers}

    @property
    def certs(self):
        return self.state / "client"

    def container_of(self, node, service_id):
        """The container of a service's task on ``node``, through that node's own engine."""
        [container] = self.client(node).containers.list(all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"})
        return container

    # --- building ----------------------------------------------------------

    def up(self):
        started = time.monotonic()
        self.state.mkdir(parents=True)
        self._certificates()
        self._network()
        for node in range(1, NODES + 1):
            self._start_daemon(node)
        for node in range(1, NODES + 1):
            self._wait_for_daemon(node)
        self._join()
        self.load(self.image_archive)
        self.wait_until_ready()
        self.setup_seconds = time.monotonic() - started
        return self

    def _network(self):
        br = self.bridge_ns
        run("ip", "netns", "add", br)
        self._in(br, "ip", "link", "add", "br0", "type", "bridge")
        self._in(br, "ip", "link", "set", "br0", "up")
        host_end = f"{self.prefix}h"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "host", "netns", br)
        self._in(br, "ip", "link", "set", "host", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.host_address}/24", "dev", host_end)
        run("ip", "link", "set", host_end, "up")
        for node in range(1, NODES + 1):
            ns = self.netns(node)
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", f"n{node}", "netns", br, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._in(br, "ip", "link", "set", f"n{node}", "master", "br0", "up")
            self._in(ns, "ip", "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            self._in(ns, "ip", "link", "set", "eth0", "up")
            self._in(ns, "ip", "link", "set", "lo", "up")

    def _certificates(self):
        """A CA of the lab's own, a server certificate for each worker's
        address, and the client's, as Docker's TLS set-up has them."""
        ca = self.state / "ca"
        ca.mkdir()
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run("openssl", "req", "-x509", *key, "-keyout", ca / "ca-key.pem", "-out", ca / "ca.pem", "-days", "2", "-subj", "/CN=tmpnb-lab-ca")

        def signed(folder, name, subject, extension):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ext.cnf").write_text(extension)
            run("openssl", "req", *key, "-keyout", folder / f"{name}key.pem", "-out", folder / f"{name}.csr", "-subj", f"/CN={subject}")
            run(
                "openssl",
                "x509",
                "-req",
                "-in",
                folder / f"{name}.csr",
                "-CA",
                ca / "ca.pem",
                "-CAkey",
                ca / "ca-key.pem",
                "-CAcreateserial",
                "-out",
                folder / f"{name}cert.pem",
                "-days",
                "2",
                "-extfile",
                folder / "ext.cnf",
            )

        for node in range(2, NODES + 1):
            signed(self.state / f"n{node}", "server-", self.hostname(node), f"subjectAltName=IP:{self.address(node)}\nextendedKeyUsage=serverAuth\n")
        signed(self.certs, "", "tmpnb", "extendedKeyUsage=clientAuth\n")
        shutil.copy(ca / "ca.pem", self.certs / "ca.pem")

    def _in(self, ns, *args):
        return run("nsenter", f"--net=/run/netns/{ns}", *args)

    def _start_daemon(self, node):
        folder = self.state / f"n{node}"
        folder.mkdir(exist_ok=True)
        (folder / "cgroup").mkdir()
        (folder / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(folder / "key.json")}))
        self._launch(node)

    def _launch(self, node):
        folder = self.state / f"n{node}"
        dockerd = (
            f"dockerd --config-file {folder}/daemon.json --data-root {folder}/data --exec-root {folder}/exec"
            f" --pidfile {folder}/dockerd.pid -H unix://{self.socket(node)} --cgroup-parent {self.hostname(node)}"
        )
        if node > 1:
            dockerd += (
                f" --tlsverify --tlscacert {self.state}/ca/ca.pem --tlscert {folder}/server-cert.pem --tlskey {folder}/server-key.pem"
                f" -H tcp://{self.address(node)}:{ENGINE_PORT}"
            )
        # A fresh sysfs shows this namespace's network devices; the host's
        # cgroup mounts, bound aside first, are bound back over it.
        script = (
            f"hostname {self.hostname(node)} && mount --rbind /sys/fs/cgroup {folder}/cgroup"
            f" && mount -t sysfs sysfs /sys && mount --rbind {folder}/cgroup /sys/fs/cgroup && exec {dockerd}"
        )
        log = open(folder / "dockerd.log", "ab")
        self.daemons[node] = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns(node)}", "unshare", "--uts", "--mount", "--propagation", "slave", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Every task start would try a registry first without it.
            env={**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"},
        )
        log.close()

    def _wait_for_daemon(self, node):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daemons[node].poll() is not None:
                raise RuntimeError(f"dockerd of node {node} exited: {self._log_tail(node)}")
            if run("docker", "-H", self.docker_host(node), "version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd of node {node} did not answer: {self._log_tail(node)}")

    def _log_tail(self, node):
        return (self.state / f"n{node}" / "dockerd.log").read_text(errors="replace")[-2000:]

    def _join(self):
        run(
            "docker",
            "-H",
            self.docker_host(1),
            "swarm",
            "init",
            "--advertise-addr",
            self.address(1),
            "--listen-addr",
            f"{self.address(1)}:2377",
            "--dispatcher-heartbeat",
            HEARTBEAT,
        )
        token = run("docker", "-H", self.docker_host(1), "swarm", "join-token", "-q", "worker").stdout.strip()
        for node in range(2, NODES + 1):
            run("docker", "-H", self.docker_host(node), "swarm", "join", "--token", token, "--advertise-addr", self.address(node), f"{self.address(1)}:2377")

    def load(self, image_archive):
        """``docker load`` an archive into every node at once: nothing is pulled."""
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(lambda node: run("docker", "-H", self.docker_host(node), "load", "-i", image_archive, timeout=300), range(1, NODES + 1)))

    def wait_until_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            if len(states) == NODES and set(states.values()) == {"ready"}:
                return
            time.sleep(0.2)
        raise RuntimeError("the Swarm's nodes did not all become ready")

    def in_node(self, node, *args):
        """Run a command in a node's network namespace; returns its output."""
        return self._in(self.netns(node), *args).stdout

    def resolv_conf(self, node, text=None):
        """Give a node a /etc/resolv.conf of its own (``text``) in its dockerd's
        mount namespace, or back the host's (None)."""
        mount_ns = ["nsenter", "-t", self.daemons[node].pid, "-m"]
        if text is None:
            run(*mount_ns, "umount", "/etc/resolv.conf", check=False)  # none given: nothing to take back
            return
        own = self.state / f"n{node}" / "resolv.conf"
        own.write_text(text)
        run(*mount_ns, "mount", "--bind", own, "/etc/resolv.conf")

    def stand_in(self, node, address, *, resolver=False):
        """A web server at ``address`` (a cloud's metadata address, say), or with
        ``resolver`` a DNS server there that answers every name with
        ``address`` and notes each query (``queries``), that only ``node``
        reaches: in a namespace of the lab's own behind a veth from the node,
        as a cloud's machine reaches its metadata service. Returns ``address``;
        ``down()`` removes it."""
        number = len(self.stand_ins)
        ns = f"{self.prefix}-s{node}{number}"
        run("ip", "netns", "add", ns)
        self.stand_ins.append(ns)
        run("ip", "link", "add", f"sin{number}", "netns", self.netns(node), "type", "veth", "peer", "name", "eth0", "netns", ns)
        subnet = address.rsplit(".", 1)[0]
        self._in(self.netns(node), "ip", "addr", "add", f"{subnet}.1/24", "dev", f"sin{number}")
        self._in(self.netns(node), "ip", "link", "set", f"sin{number}", "up")
        self._in(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        self._in(ns, "ip", "link", "set", "eth0", "up")
        folder = self.state / ns
        folder.mkdir()
        self.noted[address] = folder / "queries"
        (folder / "index.html").write_text("metadata\n")
        if resolver:
            server = [sys.executable, "-c", STAND_IN_RESOLVER, address, folder / "queries"]
        else:
            server = [sys.executable, "-m", "http.server", "--bind", address, "--directory", folder, "80"]
        subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", *map(str, server)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        listening = ["ss", "-lun"] if resolver else ["ss", "-ltn"]
        while f"{address}:" not in self._in(ns, *listening).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        return address

    def queries(self, address):
        """The names the stand-in resolver at ``address`` was asked, oldest first."""
        noted = self.noted[address]
        return noted.read_text().splitlines() if noted.exists() else []

    # --- faults ------------------------------------------------------------

    def set_availability(self, node, availability):
        """active, pause (no new tasks; running ones stay) or drain (running ones are stopped)."""
        run("docker", "-H", self.docker_host(1), "node", "update", "--availability", availability, self.hostname(node))

    def cut(self, node):
        """Unplug a node: its link on the bridge goes down, its dockerd lives on."""
        self._in(self.bridge_ns, "ip", "link", "set", f"n{node}", "down")

    def stop(self, node):
        """Stop a node's dockerd (SIGTERM, as systemd would): its containers
        stop with it, as Swarm refuses live-restore."""
        daemon = self.daemons[node]
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)

    def start(self, node):
        """Start a stopped node's dockerd again: it rejoins the Swarm by itself."""
        self._launch(node)
        self._wait_for_daemon(node)

    def restart(self, node):
        """Stop a node's dockerd and start it again, as an upgrade would; returns
        the seconds until it answers again."""
        started = time.monotonic()
        self.stop(node)
        self.start(node)
        return time.monotonic() - started

    def node_states(self):
        """{hostname: state} of every node, as the manager reports them."""
        return {n["Description"]["Hostname"]: n["Status"]["State"] for n in self.client().api.nodes()}

    def node_messages(self):
        """{hostname: why Swarm put it in its state}, for a test's report."""
        return {n["Description"]["Hostname"]: n["Status"].get("Message", "") for n in self.client().api.nodes()}

    # --- clean-up ----------------------------------------------------------

    def down(self):
        """Remove everything of this lab, even half-built; returns the seconds it took."""
        started = time.monotonic()
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(self._stop_node, range(1, NODES + 1)))
        for ns in [self.netns(n) for n in range(1, NODES + 1)] + [self.bridge_ns] + self.stand_ins:
            self._kill_namespace(ns)
        run("ip", "link", "del", f"{self.prefix}h", check=False)  # gone with its peer, normally
        for node in range(1, NODES + 1):
            self._remove_cgroups(self.hostname(node))
        # The nodes' data roots hold every image and container they ran: removing
        # them took 11 s for one test and 166 s after the whole file under load,
        # and nothing waits on it, so it goes on in a process of its own. It
        # stays within that file system: a mount a killed dockerd left is not crossed.
        subprocess.Popen(["rm", "-rf", "--one-file-system", str(self.state)], start_new_session=True)
        return time.monotonic() - started

    def _stop_node(self, node):
        if self.socket(node).exists():
            try:
                run("docker", "-H", self.docker_host(node), "swarm", "leave", "--force", check=False, timeout=10)
            except subprocess.TimeoutExpired:
                pass  # a node busy removing many tasks: stopping its dockerd ends them anyway
        daemon = self.daemons.get(node)
        if daemon is None or daemon.poll() is not None:
            return
        daemon.send_signal(signal.SIGTERM)  # dockerd (nsenter and unshare exec'd it) stops its containerd itself
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)

    def _kill_namespace(self, ns):
        # Containers, shims and containerd may outlive dockerd: kill what is left.
        pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            _signal(int(pid), signal.SIGKILL)
        run("ip", "netns", "del", ns, check=False)

    def _remove_cgroups(self, parent):
        # Deepest first: a cgroup folder is removed only once it is empty.
        for controller in Path("/sys/fs/cgroup").iterdir():
            top = controller / parent
            if top.is_dir():
                for folder in sorted(top.rglob("*"), key=lambda p: -len(p.parts)) + [top]:
                    if folder.is_dir():
                        try:
                            folder.rmdir()
                        except OSError:
                            pass
