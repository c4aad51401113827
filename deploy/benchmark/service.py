"""The service under test, on free loopback ports, read through its own
record, Docker and its proxy: one ``deploy/up`` (``Service``, the cases'),
or its processes run one by one as deploy/systemd's units run them
(``Units``, the soak's)."""

import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

import docker
import requests

from deploy.benchmark import log
from deploy.benchmark.images import COMMANDS, LABEL_INSTALLATION, LANDINGS, docker_client, remove_labelled, remove_network
from pool import netguard  # reads no setting when given an installation
from tests.stack import ROOT, CeleryBeat, CeleryWorker, Proxy, RedisServer, WebApp, free_port

# Environment the service must not inherit from whoever runs the benchmark:
# the benchmark sets what it needs, the rest takes the service's defaults.
PASS_THROUGH = {
    "TMPNB_MEM_LIMIT",
    "TMPNB_CPU_SHARES",
    "TMPNB_CPU_QUOTA",
    "TMPNB_DISK_LIMIT",
    "TMPNB_SPAWN_TIMEOUT",
    "TMPNB_DOCKER_TIMEOUT",
    "TMPNB_LOG_LEVEL",
    "TMPNB_MAX_PER_IP",
    "TMPNB_SPAWN_RATE",
    "TMPNB_PIDS_LIMIT",
    "TMPNB_WEB_PROCESSES",
    "TMPNB_LONG_POLLS",
    "TMPNB_WEB_CONCURRENCY",
    "TMPNB_ROUTE_TO",
}
# deploy/up's service processes by role: the words each one's command line holds.
ROLES = {"proxy": ("tmpnb-proxy.mjs",), "web": ("gunicorn",), "worker": ("celery", " worker"), "beat": ("celery", " beat"), "redis": ("redis-server",)}


def utc(value):
    """A timestamp as Django stores it (SQLite: naive UTC text; PostgreSQL: an
    aware datetime) to epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _postgres(url, sql, params=()):
    """The rows of one statement on a PostgreSQL database (none for a statement
    without rows), outside any transaction."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as db:
        db.autocommit = True
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


class Service:
    """One ``deploy/up`` on free loopback ports, with its own state and label."""

    def __init__(self, *, image, pool_size, ready_target=None, heartbeat=5.0, max_dock_workers=2, name="case", database_url=None, command=None, env=None):
        self.image = image
        self.command = command or COMMANDS[image]
        self.env = env or {}  # more of the service's settings, as TMPNB_* variables
        self.pool_size = pool_size
        self.ready_target = pool_size if ready_target is None else ready_target
        self.heartbeat = heartbeat
        self.max_dock_workers = max_dock_workers
        self.installation = f"bench{secrets.token_hex(3)}"
        self.state = Path(mkdtemp(prefix=f"tmpnb-bench-{name}-", dir="/var/tmp"))
        self.ports = {key: free_port() for key in ("TMPNB_PUBLIC_PORT", "TMPNB_NOTEBOOK_PORT", "TMPNB_PROXY_API_PORT", "TMPNB_PORT", "TMPNB_REDIS_PORT")}
        self.url = f"http://127.0.0.1:{self.ports['TMPNB_PUBLIC_PORT']}"
        self.log_path = self.state / "deploy-up.log"
        # SQLite in the state folder (deploy/up's default), or a database of its
        # own on the PostgreSQL server of --database-url, made and dropped here.
        self.server_url = database_url
        self.database_url = f"{database_url.rsplit('/', 1)[0]}/{self.installation}" if database_url else None
        self.popen = None
        self.leftovers = {}
        self.keep_state = False

    def environment(self):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CONFIGPROXY")) and not (key.startswith("TMPNB_") and key not in PASS_THROUGH)
        }
        env.update({key: str(value) for key, value in self.ports.items()})
        env.update(
            TMPNB_PUBLIC_IP="127.0.0.1",
            TMPNB_STATE=str(self.state),
            TMPNB_VENV=str(Path(sys.executable).parent.parent),
            TMPNB_INSTALLATION=self.installation,
            TMPNB_POOL_SIZE=str(self.pool_size),
            TMPNB_READY_TARGET=str(self.ready_target),
            TMPNB_IMAGE=self.image,
            TMPNB_COMMAND=self.command,
            TMPNB_REDIRECT_URI=LANDINGS[self.image],
            TMPNB_HEARTBEAT=str(self.heartbeat),
            TMPNB_MAX_DOCK_WORKERS=str(self.max_dock_workers),
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.update(self.env)
        return env

    def _admin_database(self, sql):
        _postgres(self.server_url.rsplit("/", 1)[0] + "/postgres", sql)

    def start(self):
        log(f"deploy/up {self.installation}: {self.image}, pool_size {self.pool_size}, ready target {self.ready_target} (state {self.state})")
        if self.database_url:
            self._admin_database(f'CREATE DATABASE "{self.installation}"')
        with open(self.log_path, "wb") as out:
            # Its own session: a Ctrl-C at the terminal reaches the benchmark,
            # which then stops deploy/up with SIGTERM as the README says.
            self.popen = subprocess.Popen(
                ["bash", str(ROOT / "deploy/up")],
                env=self.environment(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up():
            if self.popen.poll() is not None:
                raise RuntimeError(f"deploy/up exited with {self.popen.returncode}:\n{self.log_tail()}")
            return "tmpnb is up" in self.log_path.read_text(errors="replace")

        deadline = time.monotonic() + 600
        while not up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"deploy/up did not come up:\n{self.log_tail()}")
            time.sleep(0.2)
        secrets_env = dict(line.split("=", 1) for line in (self.state / "secrets.env").read_text().split())
        self.proxy_token = secrets_env["CONFIGPROXY_AUTH_TOKEN"]
        return self

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # The service's own record, read-only.
    def query(self, sql, params=()):
        if self.database_url:
            return _postgres(self.database_url, sql, params)
        db = sqlite3.connect(self.state / "var" / "tmpnb.sqlite3", timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def counts(self):
        return dict(self.query("SELECT state, COUNT(*) FROM pool_container GROUP BY state"))

    def running_containers(self):
        client = docker_client()
        try:
            return client.containers.list(filters={"label": f"{LABEL_INSTALLATION}={self.installation}", "status": "running"})
        finally:
            client.close()

    def proxy_api(self, method, path="", **kwargs):
        response = requests.request(
            method,
            f"http://127.0.0.1:{self.ports['TMPNB_PROXY_API_PORT']}/api/routes{path}",
            headers={"Authorization": f"token {self.proxy_token}"},
            timeout=5,
            **kwargs,
        )
        response.raise_for_status()
        return response

    def routes(self):
        return [path for path, entry in self.proxy_api("GET").json().items() if entry.get("tmpnb") == self.installation]

    def bridge_addresses(self):
        """path_id -> the address of each assigned container on Docker's default bridge."""
        client = docker_client()
        try:
            return {
                path_id: client.api.inspect_container(backend_id)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
                for path_id, backend_id in self.query("SELECT path_id, backend_id FROM pool_container WHERE state = 'assigned'")
            }
        finally:
            client.close()

    def wait_ready(self, ready, live=None, timeout=300):
        """Until ``ready`` rows are ready (and ``live`` containers run and are
        routed), stable over two heartbeats."""
        live = ready if live is None else live

        def full():
            if self.popen.poll() is not None:
                raise RuntimeError(f"deploy/up exited:\n{self.log_tail()}")
            counts = self.counts()
            if counts.get("failed", 0) >= 5:
                error = self.query("SELECT error FROM pool_container WHERE state = 'failed' ORDER BY id DESC LIMIT 1")[0][0]
                raise RuntimeError(f"{counts['failed']} spawns failed; the last: {error[:300]}")
            return counts.get("ready", 0) >= ready and len(self.running_containers()) >= live and len(self.routes()) >= live

        deadline = time.monotonic() + timeout
        while True:
            try:
                if full():
                    break
            except (sqlite3.Error, requests.RequestException, docker.errors.DockerException):
                pass
            except Exception as error:  # psycopg's errors while the tables are being made
                if not type(error).__module__.startswith("psycopg"):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"pool not full within {timeout} s: {self.counts()}\n{self.log_tail()}")
            time.sleep(0.25)
        filled_at = time.time()
        time.sleep(2 * self.heartbeat)
        if not full():
            raise RuntimeError(f"the pool did not stay full: {self.counts()}")
        log(f"pool full: {self.counts()}")
        return filled_at

    def rows(self, since=None):
        """Each container row's times as epoch seconds: of those created since ``since`` if given."""
        rows = [
            {"path_id": path_id, "state": state, "created": utc(created), "ready": ready and utc(ready), "assigned": assigned and utc(assigned)}
            for path_id, state, created, ready, assigned in self.query("SELECT path_id, state, created_at, ready_at, assigned_at FROM pool_container")
        ]
        return [row for row in rows if since is None or row["created"] >= since]

    def refill_rate(self, since=None, start=None):
        """Containers made ready per second: the rows created since ``since``,
        from ``start`` (default: the first row's creation) to the last ready."""
        rows = [row for row in self.rows(since) if row["ready"] is not None]
        if not rows:
            return None
        begin = start if start is not None else min(row["created"] for row in rows)
        span = max(row["ready"] for row in rows) - begin
        return {"containers": len(rows), "seconds": round(span, 3), "per_second": round(len(rows) / span, 2) if span > 0 else None}

    def processes(self):
        """deploy/up's service processes by role, each with its whole tree."""
        children = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))

        def tree(pid):
            pids = [pid]
            for child in children.get(pid, []):
                pids.extend(tree(child))
            return pids

        roles = {}
        for pid in children.get(self.popen.pid, []):
            try:
                cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = next((role for role, words in ROLES.items() if all(word in cmdline for word in words)), None)
            if role:
                roles.setdefault(role, []).extend(tree(pid))
        return roles

    def stop(self):
        """SIGTERM to deploy/up alone, which stops the processes it started;
        a process it leaves is reported and killed. Then every container and
        network with the installation's label is removed, and the state folder too unless
        something was left behind (its logs then stay for a look)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            log(f"stopping deploy/up {self.installation}")
            started = time.monotonic()
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(300)
            except subprocess.TimeoutExpired:
                log("deploy/up did not stop within 300 s: killing its process group")
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            self.stop_seconds = round(time.monotonic() - started, 1)
        # Any process still in deploy/up's session is one it left behind.
        # A zombie (state Z) has already exited: only its reaping by init is pending.
        listed = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(self.popen.pid)], capture_output=True, text=True).stdout
        left = "\n".join(line for line in listed.strip().splitlines() if not line.split()[1].startswith("Z"))
        if left:
            self.leftovers["processes"] = left.splitlines()
            log(f"deploy/up left processes behind, killing them:\n{left}")
            for line in left.splitlines():
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        self.popen = None
        self.clean_up()

    def clean_up(self):
        """Once the service's processes are stopped: its containers, network,
        guard, database and state folder."""
        try:
            self._remove_docker_objects()
        finally:
            # The guard's iptables rules (deploy/down removes them too) are not
            # Docker's: they go even when Docker cannot be reached.
            netguard.remove(self.installation)
        if self.database_url:
            try:
                self._admin_database(f'DROP DATABASE IF EXISTS "{self.installation}" WITH (FORCE)')
            except Exception as error:
                log(f"could not drop database {self.installation}: {error}")
        if not self.leftovers and not self.keep_state:
            try:
                shutil.rmtree(self.state)
            except OSError as error:
                log(f"could not remove {self.state}: {error}")
        else:
            log(f"state and logs kept in {self.state}")

    def _remove_docker_objects(self):
        """Every container and network with the installation's label."""
        client = docker_client()
        try:
            containers = client.containers.list(all=True, filters={"label": f"{LABEL_INSTALLATION}={self.installation}"})
            # deploy/up keeps notebook containers across restarts (deploy/down
            # removes them, one by one): the benchmark removes them itself, in parallel.
            self.removed_after_stop = len(containers)
            if containers:
                log(f"removing the {len(containers)} containers deploy/up kept")
                remove_labelled(client, {LABEL_INSTALLATION: self.installation})
            left = client.containers.list(all=True, filters={"label": f"{LABEL_INSTALLATION}={self.installation}"})
            if left:
                self.leftovers["containers"] = [c.name for c in left]
            # and the network the service made for them (deploy/down would remove it too)
            for network in client.networks.list(filters={"label": f"{LABEL_INSTALLATION}={self.installation}"}):
                remove_network(network)
        finally:
            client.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        self.keep_state = self.keep_state or exc_type is not None
        self.stop()


class Units(Service):
    """The service as deploy/systemd runs it, with ``Service``'s state folder,
    label, record and clean-up: Redis, the proxy, gunicorn, a Celery worker and
    beat, each a process of its own (tests/stack.py's), after the units'
    start-up commands. A process that ends on its own is started again, as
    systemd's Restart=always does (``exits`` records each such end), and
    ``restart`` stops and starts one, where deploy/up would stop them all."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.env = {key: str(value) for key, value in self.env.items()}
        self.logs = self.state / "logs"
        self.secret_key, self.admin_password = secrets.token_urlsafe(32), secrets.token_urlsafe(12)
        self.roles, self.exits = {}, []
        self.restarting, self.supervising = threading.Lock(), threading.Event()

    def environment(self):
        var = self.state / "var"
        env = super().environment()
        env.update(DATABASE_URL=f"sqlite:///{var / 'tmpnb.sqlite3'}", TMPNB_VAR_DIR=str(var), DJANGO_SECRET_KEY=self.secret_key)
        env.update(REDIS_URL=f"redis://127.0.0.1:{self.ports['TMPNB_REDIS_PORT']}/0", CONFIGPROXY_AUTH_TOKEN=self.proxy_token)
        env.update(CONFIGPROXY_ENDPOINT=f"http://127.0.0.1:{self.ports['TMPNB_PROXY_API_PORT']}", DJANGO_SUPERUSER_PASSWORD=self.admin_password)
        return env

    def start(self):
        where = self.env.get("DOCKER_HOST", "this machine's Docker")
        log(f"the service's units {self.installation} on {where} (state {self.state})")
        self.logs.mkdir()
        redis = RedisServer(self.logs)
        proxy = Proxy(
            f"http://127.0.0.1:{self.ports['TMPNB_PORT']}",
            self.logs,
            public_port=self.ports["TMPNB_PUBLIC_PORT"],
            api_port=self.ports["TMPNB_PROXY_API_PORT"],
            var_dir=self.state / "var",
        )
        self.ports.update(TMPNB_REDIS_PORT=redis.port, TMPNB_NOTEBOOK_PORT=proxy.notebook_port)
        self.proxy_token = proxy.token
        self.roles = {"redis": redis.start(), "proxy": proxy.start()}
        env = self.environment()
        # What deploy/systemd's units run before the service starts (and an organiser's login).
        for command in (
            ["migrate", "--noinput"],
            ["init_pool"],
            ["guard_network"],
            ["createsuperuser", "--noinput", "--username", "admin", "--email", "a@localhost"],
        ):
            done = subprocess.run([sys.executable, "manage.py", *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            if done.returncode:
                raise RuntimeError(f"manage.py {command[0]}: {done.stderr[-2000:]}")
        self.roles |= {
            "web": WebApp(self.ports["TMPNB_PORT"], env, self.logs, workers=1),
            "worker": CeleryWorker(env, self.logs),
            "beat": CeleryBeat(env, self.logs),
        }
        for role in ("web", "worker", "beat"):
            self.roles[role].start()
        threading.Thread(target=self.supervise, daemon=True).start()
        return self

    def restart(self, role, sig=signal.SIGTERM, hold=0):
        with self.restarting:
            self.roles[role].stop(sig)
            time.sleep(hold)
            self.roles[role].start()

    def supervise(self):
        """What systemd's Restart=always does for the units: a process that
        ended on its own is started again. Each such end is recorded."""
        while not self.supervising.wait(0.5):
            with self.restarting:
                for role, process in self.roles.items():
                    if process.popen.poll() is None:
                        continue
                    lines = process.log_tail(80).splitlines()
                    why = next((line for line in reversed(lines) if "CRITICAL" in line or "Error" in line), "")
                    self.exits.append({"role": role, "exit_status": process.popen.returncode, "last_error": why.strip()[:300]})
                    log(f"{role} ended on its own ({process.popen.returncode}): started again. {why.strip()[:200]}")
                    process.start()

    def stop(self):
        self.supervising.set()
        for process in reversed(list(self.roles.values())):
            process.stop()
        self.roles = {}
        self.clean_up()
