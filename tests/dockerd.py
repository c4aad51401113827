"""A private dockerd for what must restart Docker itself: its own data root,
exec root, socket and pidfile, live-restore on, its own default bridge and
address pool, and no iptables rules of its own (the machine's engine keeps
its own; the network guard's rules still apply to this engine's bridges). So
the machine's engine and everything else on it are never disturbed. (Not
--bridge none: a dockerd started so deletes the host's docker0, which the
machine's engine owns.)"""

import contextlib
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import docker

from tests.stack import Process, wait_for


def free_subnet():
    """10.<n> for a private engine: no interface or route of this machine
    uses 10.<n>.0.0/16 (another private engine may run)."""
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    for _ in range(50):
        n = 200 + secrets.randbelow(50)
        if f"10.{n}." not in used:
            return f"10.{n}"
    raise RuntimeError("no free 10.x.0.0/16 for a private dockerd")


class PrivateDockerd(Process):
    def __init__(self, root, bridge, address_pool):
        self.root = Path(root)
        self.socket = f"unix://{self.root}/docker.sock"
        args = ["dockerd", "--data-root", self.root / "data", "--exec-root", self.root / "exec", "-H", self.socket]
        args += ["--pidfile", self.root / "dockerd.pid", "--bridge", bridge, "--default-address-pool", f"base={address_pool},size=24"]
        args += ["--iptables=false", "--ip-masq=false", "--live-restore"]
        super().__init__("dockerd", args, log_dir=self.root)

    def wait_ready(self):
        wait_for(lambda: self.client().ping(), 30, "the private dockerd")

    def client(self):
        return docker.DockerClient(base_url=self.socket, timeout=30)

    def unmount_all(self):
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.root))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)


@contextlib.contextmanager
def private_dockerd(root, images):
    """A PrivateDockerd in ``root`` with ``images`` loaded from the machine's
    engine; at the end its containers, itself, its bridge and ``root`` go."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    bridge, subnet = f"tmpnbbr{secrets.token_hex(3)}", free_subnet()
    engine = PrivateDockerd(root, bridge, f"{subnet}.128.0/17")
    main = docker.from_env(timeout=120)
    try:
        for command in (["ip", "link", "add", bridge, "type", "bridge"], ["ip", "addr", "add", f"{subnet}.0.1/24", "dev", bridge]):
            subprocess.run(command, check=True, capture_output=True)
        engine.start()
        for image in images:
            engine.client().images.load(b"".join(main.images.get(image).save(named=True)))
        yield engine
        if engine.popen.poll() is not None:  # stopped by its user and not started again
            engine.start()
        for container in engine.client().containers.list(all=True):
            container.remove(force=True)
    finally:
        main.close()
        engine.stop(signal.SIGTERM, timeout=30)
        engine.unmount_all()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
