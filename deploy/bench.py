"""The benchmark of issues 6 and 11: how fast a burst of new visitors lands
in their own notebooks (next to the floor: the same burst straight through the
proxy), the web process's CPU per admission, how fast the pool refills next to
what Docker itself can do, and how much memory the service takes.

Run it with ``deploy/bench`` (which installs and starts what is missing first);
``deploy/bench --help`` lists the options. Each case runs ``deploy/up`` as a
subprocess on free loopback ports with its own state directory and
installation label, and stops it with SIGTERM to ``deploy/up`` alone, even on
failure or Ctrl-C; it then checks that no process of that ``deploy/up`` is
left and removes every container with its label (``deploy/up`` keeps them
across restarts). Results are printed as tables and written as JSON
(``--json``, default ``var/bench.json``). docs/performance.md describes the
method and the results.

How readiness is read: the service's own record. ``deploy/up`` keeps its
SQLite database in ``$TMPNB_STATE/var`` (or, with ``--database-url``, a
PostgreSQL database the benchmark makes for the case); the benchmark reads the
container rows there (read-only queries) and waits until the pool's ready count is
reached, until Docker lists that many running containers with the
installation's label, and until the proxy holds that many routes; then it
waits two more heartbeats and checks that the counts still hold. The rows'
``created_at`` and ``ready_at`` also give the service's refill rate.
"""

import argparse
import concurrent.futures
import html
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from tempfile import mkdtemp
from urllib.parse import urljoin, urlsplit

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pool.command import CLASSIC_COMMAND, CLASSIC_IMAGE, DEFAULT_COMMAND, DEFAULT_IMAGE  # noqa: E402 (free of Django)
from pool import netguard  # noqa: E402 (reads no setting when given an installation)

TINY_IMAGE = "tmpnb/tiny:latest"
JUPYTER_IMAGE = DEFAULT_IMAGE  # JupyterLab 4, the service's default
IMAGES = {"tiny": TINY_IMAGE, "jupyter": JUPYTER_IMAGE, "classic": CLASSIC_IMAGE}
BUILD_JUPYTER = ROOT / "deploy/images/build-jupyter"
BUILDERS = {TINY_IMAGE: [ROOT / "deploy/images/build-tiny"], JUPYTER_IMAGE: [BUILD_JUPYTER], CLASSIC_IMAGE: [BUILD_JUPYTER, "--classic"]}
# busybox httpd serving a page that names its base path (as in tests/factories.py),
# so a visitor can tell that it reached its own container.
TINY_COMMAND = (
    "sh -c 'mkdir -p /www{base_path} && echo container {base_path} > /www{base_path}index.html"
    " && echo tree {base_path} > /www{base_path}tree && exec httpd -f -p {port} -h /www'"
)
COMMANDS = {TINY_IMAGE: TINY_COMMAND, JUPYTER_IMAGE: DEFAULT_COMMAND, CLASSIC_IMAGE: CLASSIC_COMMAND}
# Where a visitor lands (TMPNB_REDIRECT_URI): a container is ready once that page answered.
LANDINGS = {TINY_IMAGE: "/tree", JUPYTER_IMAGE: "/lab", CLASSIC_IMAGE: "/tree"}
# What the landing page of each image holds once it is the visitor's own.
LANDING_MARKERS = {JUPYTER_IMAGE: "<title>JupyterLab</title>", CLASSIC_IMAGE: "<title>Home Page - Select or create a notebook</title>"}
CONTAINER_PORT = 8888
MEM_LIMIT = "512m"  # the service's default TMPNB_MEM_LIMIT, used for the raw runs too
LABEL_INSTALLATION = "tmpnb.installation"
LABEL_BENCH = "tmpnb.bench"  # marks the raw containers the benchmark starts itself

# Targets of issues 6 and 11 (2-core machine).
TARGETS = {
    "a_p50": 0.10,
    "a_max": 0.175,
    "a_floor_factor": 2.0,
    "b_p50": 1.0,
    "b_p99": 1.5,
    "cpu_ms": 3.0,
    "c_last_factor": 1.2,
    "refill_ratio": 0.8,
    "sweep_seconds": 1.0,
    "sweep_calls": 5,
    "footprint_mib": 250,
}

# Environment the service must not inherit from whoever runs the benchmark:
# the benchmark sets what it needs, the rest takes the service's defaults.
PASS_THROUGH = {"TMPNB_MEM_LIMIT", "TMPNB_CPU_SHARES", "TMPNB_SPAWN_TIMEOUT", "TMPNB_DOCKER_TIMEOUT", "TMPNB_LOG_LEVEL",
                "TMPNB_MAX_PER_IP", "TMPNB_SPAWN_RATE", "TMPNB_PIDS_LIMIT", "TMPNB_WEB_PROCESSES", "TMPNB_LONG_POLLS",
                "TMPNB_ROUTE_TO"}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def mib(kib):
    return round(kib / 1024, 1)


def utc(value):
    """A timestamp as Django stores it (SQLite: naive UTC text; PostgreSQL: an
    aware datetime) to epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def cpu_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def machine_busy(seconds=1.0):
    """Share of all cores busy over ``seconds`` (0..1)."""
    busy0, total0 = cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = cpu_ticks()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_quiet(limit, threshold=0.25):
    """Wait up to ``limit`` seconds until other work on the machine leaves the
    cores mostly idle; returns the share busy last seen."""
    deadline = time.monotonic() + limit
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    if busy > threshold:
        log(f"the machine is busy with other work ({busy:.0%} of the cores): figures will be slower than on a quiet machine")
    return round(busy, 2)


def process_cpu_seconds(pids):
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / hz


def docker_client():
    return docker.from_env(timeout=120)


def ensure_image(image):
    client = docker_client()
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()
    log(f"building {image} (once)")
    subprocess.run([str(arg) for arg in BUILDERS[image]], check=True)


# --- the service under test --------------------------------------------------


class Service:
    """One ``deploy/up`` on free loopback ports, with its own state and label."""

    def __init__(self, *, image, pool_size, ready_target=None, heartbeat=5.0, max_dock_workers=2, name="case", database_url=None,
                 command=None, route_to=None):
        self.image = image
        self.command = command or COMMANDS[image]
        self.route_to = route_to
        self.pool_size = pool_size
        self.ready_target = pool_size if ready_target is None else ready_target
        self.heartbeat = heartbeat
        self.max_dock_workers = max_dock_workers
        self.installation = f"bench{secrets.token_hex(3)}"
        self.state = Path(mkdtemp(prefix=f"tmpnb-bench-{name}-", dir="/var/tmp"))
        self.ports = {key: free_port() for key in ("TMPNB_PUBLIC_PORT", "TMPNB_PROXY_API_PORT", "TMPNB_PORT", "TMPNB_REDIS_PORT")}
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
            if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CONFIGPROXY"))
            and not (key.startswith("TMPNB_") and key not in PASS_THROUGH)
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
        if self.route_to:
            env["TMPNB_ROUTE_TO"] = self.route_to
        return env

    def _admin_database(self, sql):
        import psycopg

        with psycopg.connect(self.server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as db:
            db.execute(sql)

    def start(self):
        log(f"deploy/up {self.installation}: {self.image}, pool_size {self.pool_size}, ready target {self.ready_target} (state {self.state})")
        if self.database_url:
            self._admin_database(f'CREATE DATABASE "{self.installation}"')
        with open(self.log_path, "wb") as out:
            # Its own session: a Ctrl-C at the terminal reaches the benchmark,
            # which then stops deploy/up with SIGTERM as the README says.
            self.popen = subprocess.Popen(
                ["bash", str(ROOT / "deploy/up")], env=self.environment(), cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started_at = time.time()

        def up():
            if self.popen.poll() is not None:
                raise RuntimeError(f"deploy/up exited with {self.popen.returncode}:\n{self.log_tail()}")
            return "tmpnb is up" in self.log_path.read_text(errors="replace")

        deadline = time.monotonic() + 600
        while not up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"deploy/up did not come up:\n{self.log_tail()}")
            time.sleep(0.2)
        self.up_at = time.time()
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
            import psycopg

            with psycopg.connect(self.database_url, autocommit=True) as db:
                return db.execute(sql, params).fetchall()
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
            method, f"http://127.0.0.1:{self.ports['TMPNB_PROXY_API_PORT']}/api/routes{path}",
            headers={"Authorization": f"token {self.proxy_token}"}, timeout=5, **kwargs,
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
                if type(error).__module__.split(".")[0] != "psycopg":
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
        sql = "SELECT path_id, state, created_at, ready_at, assigned_at FROM pool_container"
        rows = self.query(sql)
        out = []
        for path_id, state, created, ready, assigned in rows:
            row = {
                "path_id": path_id, "state": state, "created": utc(created),
                "ready": utc(ready) if ready else None, "assigned": utc(assigned) if assigned else None,
            }
            if since is None or row["created"] >= since:
                out.append(row)
        return out

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
            if "configurable-http-proxy" in cmdline:
                role = "proxy"
            elif "gunicorn" in cmdline:
                role = "web"
            elif "celery" in cmdline and " worker" in cmdline:
                role = "worker"
            elif "celery" in cmdline and " beat" in cmdline:
                role = "beat"
            elif "redis-server" in cmdline:
                role = "redis"
            else:
                continue
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
            # and the network the service made for them (TMPNB_ROUTE_TO=container),
            # and its guard's iptables rules (deploy/down would remove both)
            for network in client.networks.list(filters={"label": f"{LABEL_INSTALLATION}={self.installation}"}):
                remove_network(network)
            netguard.remove(self.installation)
        finally:
            client.close()
        self.popen = None
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

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        self.keep_state = self.keep_state or exc_type is not None
        self.stop()


# --- the visitors ---------------------------------------------------------------


class FromAddress(requests.adapters.HTTPAdapter):
    """Connections from a given local address. Every visitor comes from its own
    loopback address (127.1.x.y; all of 127/8 is local on Linux), as workshop
    participants come from their own machines, so the service's per-address
    limits (TMPNB_MAX_PER_IP, TMPNB_SPAWN_RATE) apply to each as they would."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def visitor_address(i):
    return f"127.1.{i // 250}.{i % 250 + 1}"


# The cookie step's page (pool/visitors.py) goes on with JavaScript, or this meta refresh.
COOKIE_STEP = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')
WAITING_STATUS = re.compile(r"""fetch\(["']([^"']+)["']""")
POLL_SECONDS = re.compile(r"setTimeout\(poll,\s*([0-9.]+)\s*\*\s*1000\)")
LANDED = re.compile(r"^https?://[^/]+/user/([A-Za-z0-9_-]+)/(tree|lab)(\?|$)")


def visit(url, barrier, *, image, bound, retry_interval=None, address=None):
    """One new visitor with its own cookie jar, following redirects, doing what
    the service's pages do while it waits, timed from its first request until
    its own notebook page answers 200. Returns what happened.

    - The cookie step (a 200 page that goes on by itself): go on at once, as a browser does.
    - 302 to /user/<id>/tree (or /lab): served once that page is the visitor's own.
    - The waiting room (a 200 page that polls a status URL from JavaScript):
      poll that URL as the page does, every ``setTimeout`` seconds the page
      names, then follow the URL it gives once ready; "unknown" reloads /spawn/.
    - A "nothing ready" 503, or 429 "full" as JSON: reload after Retry-After.
    - The reconnecting page under /user/<id>/: reload it after Retry-After.
    - A 429 page (the service's abuse limits): refused.
    ``retry_interval`` (seconds) caps every such wait, to poll faster than the pages.
    """
    result = {"outcome": "failed", "seconds": None, "waits": 0, "polls": 0, "path_id": None, "error": None,
              "redirect_seconds": None, "landed_url": None}
    base = url

    def pause(seconds):
        seconds = min(seconds, retry_interval) if retry_interval else seconds
        if time.perf_counter() + seconds >= deadline:
            result["outcome"] = "turned away"
            result["error"] = f"not served within {bound:.0f} s"
            return False
        time.sleep(seconds)
        return True

    def retry_after(response, default=5.0):
        try:
            return float(response.headers.get("Retry-After", default))
        except ValueError:
            return default

    with requests.Session() as browser:
        if address:
            browser.mount("http://", FromAddress(address))
        barrier.wait()
        started = time.perf_counter()
        deadline = started + bound
        target, accept, poll = url, "text/html", 2.0
        while True:
            try:
                response = browser.get(target, headers={"Accept": accept}, timeout=max(deadline - time.perf_counter(), 0.5))
            except requests.RequestException as error:
                if time.perf_counter() >= deadline:
                    result["outcome"] = "turned away"
                result["error"] = f"{type(error).__name__}: {error}"[:300]
                return result
            now = time.perf_counter()
            if accept == "application/json":  # the waiting room's status poll
                ok = response.status_code == 200 and "json" in response.headers.get("Content-Type", "")
                status = response.json() if ok else {}
                if status.get("status") == "ready":
                    target, accept = urljoin(base, status["url"]), "text/html"
                elif status.get("status") == "waiting":
                    result["polls"] += 1
                    if not pause(status.get("poll_seconds", poll)):
                        return result
                else:  # our place was lost: queue again, as the page does
                    target, accept = url, "text/html"
                continue
            landed = LANDED.match(response.url)
            if response.status_code == 200 and landed:
                path_id = landed.group(1)
                if image == TINY_IMAGE:
                    own = response.text.strip() == f"tree /user/{path_id}/"
                else:
                    own = LANDING_MARKERS[image] in response.text and f"/user/{path_id}/" in response.text
                if own:
                    result.update(outcome="served", seconds=now - started, path_id=path_id, landed_url=response.url)
                    first = response.history[0] if response.history else None
                    if first is not None and first.url.startswith(url):  # the landing page, past the cookie step
                        result["redirect_seconds"] = first.elapsed.total_seconds()
                    return result
                if "Reconnecting" in response.text:  # the service's page while a route is restored
                    result["waits"] += 1
                    if not pause(retry_after(response, 2)):
                        return result
                    target = response.url
                    continue
                result["error"] = f"not its own page at {response.url}: {response.text[:200]!r}"
                return result
            if response.status_code == 429 and "json" not in response.headers.get("Content-Type", ""):
                text = re.sub(r"<[^>]+>|\s+", " ", response.text).strip()
                result["outcome"] = "refused"
                result["error"] = f"refused (HTTP 429): {text[-300:]}"
                return result
            if response.status_code in (429, 503):  # "nothing ready": the page reloads itself
                result["waits"] += 1
                if not pause(retry_after(response)):
                    return result
                target = url
                continue
            step = COOKIE_STEP.search(response.text) if response.status_code == 200 else None
            if step:  # the cookie step: the visitor cookie is set, go on to the same URL
                target = urljoin(response.url, html.unescape(step.group(1)))
                continue
            found = WAITING_STATUS.search(response.text) if response.status_code == 200 else None
            if found:  # the waiting room: its script polls the status URL
                result["waits"] += 1
                seconds = POLL_SECONDS.search(response.text)
                poll = float(seconds.group(1)) if seconds else retry_after(response)
                target, accept = urljoin(response.url, found.group(1)), "application/json"
                continue  # the page asks at once; each answer says when to ask again
            result["error"] = f"HTTP {response.status_code} at {response.url}: {response.text[:200]!r}"
            return result


def burst(urls, *, image, bound=60.0, retry_interval=None, own_addresses=True):
    """One new visitor per URL, all at once (a barrier releases them together).
    Returns the start time, the summary and the URLs the served ones landed on."""
    n = len(urls)
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            results[i] = visit(urls[i], barrier, image=image, bound=bound, retry_interval=retry_interval,
                               address=visitor_address(i) if own_addresses else None)
        except Exception as error:  # a bug in the visitor itself: count it, do not hide it
            results[i] = {"outcome": "failed", "seconds": None, "waits": 0, "path_id": None, "error": repr(error)}

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join in slices so Ctrl-C gets through
            thread.join(0.2)
    return started, summarize(results, n), [r["landed_url"] for r in results if r["outcome"] == "served"]


def one_after_another(url, n, *, image, bound):
    """N new visitors, each arriving once the one before is served."""
    return summarize([visit(url, threading.Barrier(1), image=image, bound=bound, address=visitor_address(i)) for i in range(n)], n)


def to_floor(summary, floor):
    """Each percentile of a burst as a multiple of the same percentile of its floor."""
    return {q: round(summary[q] / floor[q], 2) if summary[q] and floor[q] else None for q in ("p50", "p90", "p99", "max")}


def summarize(results, n):
    served = [r for r in results if r["outcome"] == "served"]
    times = sorted(r["seconds"] for r in served)
    ids = [r["path_id"] for r in served]
    redirects = sorted(r["redirect_seconds"] for r in served if r.get("redirect_seconds") is not None)
    summary = {
        "visitors": n,
        "served": len(served),
        "served_at_once": sum(1 for r in served if r["waits"] == 0),
        "waited": sum(1 for r in served if r["waits"] > 0),
        "turned_away": sum(1 for r in results if r["outcome"] == "turned away"),
        "refused": sum(1 for r in results if r["outcome"] == "refused"),
        "failed": sum(1 for r in results if r["outcome"] == "failed"),
        "duplicates": len(ids) - len(set(ids)),
        "p50": percentile(times, 50),
        "p90": percentile(times, 90),
        "p99": percentile(times, 99),
        "max": times[-1] if times else None,
        "min": times[0] if times else None,
        "redirect_p50": percentile(redirects, 50),
        "redirect_max": redirects[-1] if redirects else None,
        "errors": sorted({r["error"] for r in results if r["outcome"] != "served" and r["error"]})[:10],
        "times": [round(t, 4) for t in times],
    }
    return summary


# --- raw Docker, the machine's own rate --------------------------------------------


def raw_rate(image, n, *, docker_slots, threads, installation):
    """``docker create`` + ``start`` + polling until the server answers under
    its base path (a status below 400, the service's own test of readiness), for ``n`` containers of ``image``, with at most
    ``docker_slots`` Docker calls at once (as the service's
    TMPNB_MAX_DOCK_WORKERS) and ``threads`` containers in flight (as the
    service's Celery worker: 4 per slot). Containers carry the benchmark's
    installation label and are removed at the end."""
    client = docker_client()
    slots = threading.BoundedSemaphore(docker_slots)
    labels = {LABEL_INSTALLATION: installation, LABEL_BENCH: "raw"}
    port_key = f"{CONTAINER_PORT}/tcp"

    def one(i):
        path_id = secrets.token_hex(6)
        base = f"/user/{path_id}/"
        command = COMMANDS[image].format(base_path=base, port=CONTAINER_PORT, ip="0.0.0.0", token=secrets.token_urlsafe(24))
        with slots:
            container = client.containers.create(
                image, command, name=f"tmpnb-{installation}-raw-{path_id}", labels=labels,
                ports={port_key: ("127.0.0.1", None)}, mem_limit=MEM_LIMIT,
            )
            container.start()
            container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"][port_key][0]["HostPort"])
        url = f"http://127.0.0.1:{port}{base}"
        deadline = time.monotonic() + 120
        with requests.Session() as http:
            while time.monotonic() < deadline:
                try:
                    if http.get(url, timeout=2, allow_redirects=False).status_code < 400:
                        return time.time()
                except requests.RequestException:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"raw container of {image} did not answer within 120 s")

    started = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as executor:
            answered = list(executor.map(one, range(n)))
        seconds = max(answered) - started
        return {"image": image, "containers": n, "docker_slots": docker_slots, "threads": threads,
                "seconds": round(seconds, 3), "per_second": round(n / seconds, 2)}
    finally:
        remove_labelled(client, {LABEL_INSTALLATION: installation, LABEL_BENCH: "raw"})
        client.close()


def remove_network(network, tries=10):
    """Docker answers 403 "active endpoints" for a moment after many of a
    network's containers were removed at once."""
    for _ in range(tries):
        try:
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(0.5)
    log(f"network {network.name} not removed: it still has endpoints")


def remove_labelled(client, labels):
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    containers = client.containers.list(all=True, filters=filters)
    def remove(container):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        list(executor.map(remove, containers))
    left = client.containers.list(all=True, filters=filters)
    if left:
        raise RuntimeError(f"could not remove {[c.name for c in left]}")


# --- the cases -------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {"machine": machine(), "options": {}, "cases": {}}
        self.raw = {}  # image -> raw rate result, measured once per run
        self.installation = f"bench{secrets.token_hex(3)}"  # for the raw containers

    def service(self, **kwargs):
        service = Service(heartbeat=self.args.heartbeat, max_dock_workers=self.args.max_dock_workers,
                          database_url=self.args.database_url, **kwargs)
        service.keep_state = self.args.keep_state
        return service

    def raw_for(self, image, n):
        """The machine's own rate for ``image``: after a small warm-up run, two
        runs of ``n`` containers; their mean is what the service is compared with
        (single runs vary by up to a quarter on this kind of machine)."""
        key = (image, n)
        if key not in self.raw:
            slots, threads = self.args.max_dock_workers, 4 * self.args.max_dock_workers
            log(f"raw Docker rate: {n} x {image}, {slots} Docker calls at once, {threads} in flight (warm-up, then 2 runs)")
            raw_rate(image, 2 * slots, docker_slots=slots, threads=threads, installation=self.installation)
            runs = [raw_rate(image, n, docker_slots=slots, threads=threads, installation=self.installation) for _ in range(2)]
            seconds = sum(run["seconds"] for run in runs) / len(runs)
            self.raw[key] = {**runs[0], "seconds": round(seconds, 3), "per_second": round(n / seconds, 2),
                             "runs_per_second": [run["per_second"] for run in runs]}
            log(f"raw: {self.raw[key]['per_second']}/s (runs {self.raw[key]['runs_per_second']})")
        return self.raw[key]

    def burst_case(self, name, *, image, pool_size, ready_target, visitors):
        with self.service(image=image, pool_size=pool_size, ready_target=ready_target, name=name) as service:
            service.wait_ready(ready_target, live=ready_target)
            prefill = service.refill_rate()
            log(f"case {name}: {visitors} visitors at once")
            roles = service.processes()
            cpu_before = {role: process_cpu_seconds(pids) for role, pids in roles.items()}
            machine_before = cpu_ticks()
            started, summary, landed = burst([f"{service.url}/spawn/"] * visitors, image=image,
                                             bound=self.args.bound, retry_interval=self.args.retry_interval)
            machine_after = cpu_ticks()
            summary["burst_cpu_seconds"] = {role: round(process_cpu_seconds(pids) - cpu_before[role], 2) for role, pids in roles.items()}
            summary["burst_machine_busy"] = round((machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1), 2)
            summary["prefill"] = prefill
            summary["pool_size"], summary["ready_target"], summary["image"] = pool_size, ready_target, image
            summary["retry_interval"] = self.args.retry_interval
            summary["bound"] = self.args.bound
            # Cross-check with the service's record: one session per served visitor.
            sessions = service.query(
                "SELECT COUNT(*), COUNT(DISTINCT container_id), COUNT(DISTINCT client_ip) FROM pool_session WHERE ended_at IS NULL")[0]
            summary["sessions"], summary["session_containers"], summary["session_addresses"] = sessions
            if pool_size > ready_target:
                # The containers started under load, after the burst began.
                service.wait_ready(0, live=pool_size, timeout=120)
                summary["under_load"] = service.refill_rate(since=started, start=started)
                summary["under_load"]["timeline"] = [
                    [round(row["created"] - started, 3), round(row["ready"] - started, 3) if row["ready"] else None,
                     round(row["assigned"] - started, 3) if row["assigned"] else None]
                    for row in sorted(service.rows(since=started), key=lambda row: row["created"])
                ]
            summary["floor"] = self.floor(landed, image)
            summary["to_floor"] = to_floor(summary, summary["floor"])
        summary["stop_seconds"] = getattr(service, "stop_seconds", None)
        summary["removed_after_stop"] = getattr(service, "removed_after_stop", None)
        summary["leftovers"] = service.leftovers
        return summary

    def floor(self, landed, image):
        """The same burst without the service: each visitor straight to the page
        a visitor of the burst landed on, through the proxy, on a container
        already routed and warm."""
        log(f"floor: {len(landed)} visitors straight to the notebook pages")
        _, floor, _ = burst(landed, image=image, bound=self.args.bound)
        return {key: floor[key] for key in ("visitors", "served", "failed", "p50", "p90", "p99", "max", "errors")}

    def case_a(self):
        n = self.args.visitors or 50
        return self.burst_case("a", image=TINY_IMAGE, pool_size=n, ready_target=n, visitors=n)

    def case_b(self):
        n = self.args.visitors or 100
        return self.burst_case("b", image=JUPYTER_IMAGE, pool_size=n, ready_target=n, visitors=n)

    def case_c(self):
        n = self.args.visitors or 50
        ready = max(1, round(0.4 * n))  # 20 of 50
        result = self.burst_case("c", image=TINY_IMAGE, pool_size=n, ready_target=ready, visitors=n)
        raw = self.raw_for(TINY_IMAGE, self.args.refill_n)
        extra = n - ready
        result["raw_per_second"] = raw["per_second"]
        result["raw_seconds_for_extra"] = round(extra / raw["per_second"], 3)
        result["bound_last"] = round(TARGETS["c_last_factor"] * extra / raw["per_second"], 3)
        return result

    def case_refill(self):
        """Per image: the raw rate, then the service's: prefill of R rows at
        start-up and refill of R after R visitors took the ready ones."""
        out = {}
        for kind in self.args.refill_images:
            image = IMAGES[kind]
            r = self.args.refill_n if kind == "tiny" else min(self.args.refill_n, 20)
            raw = self.raw_for(image, r)
            with self.service(image=image, pool_size=2 * r, ready_target=r, name=f"refill-{kind}") as service:
                service.wait_ready(r)
                prefill = service.refill_rate()
                log(f"refill {kind}: {r} visitors take the ready containers")
                started, summary, _ = burst([f"{service.url}/spawn/"] * r, image=image, bound=self.args.bound,
                                            retry_interval=self.args.retry_interval)
                service.wait_ready(r, live=2 * r)
                refill = service.refill_rate(since=started, start=started)
            out[kind] = {
                "raw": raw, "prefill": prefill, "refill": refill, "burst_served": summary["served"],
                "ratio_prefill": round(prefill["per_second"] / raw["per_second"], 2),
                "ratio_refill": round(refill["per_second"] / raw["per_second"], 2),
                "leftovers": service.leftovers,
            }
        return out

    def case_route(self):
        """The proxy's hop to a container both ways, on the same containers in
        alternating bursts: to the port published on loopback (the service
        started with TMPNB_ROUTE_TO=published; Docker's userland docker-proxy
        carries it) and to the container's own address on the bridge (a more
        specific route, /user/<id>/<landing>, added for those rounds: the
        service's reconcile ignores routes without its marker)."""
        n, rounds = self.args.visitors or 50, 5
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="route", route_to="published") as service:
            service.wait_ready(n)
            _, _, landed = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=self.args.bound)
            bridge = service.bridge_addresses()
            pages = [urlsplit(url).path for url in landed]
            out, routed = {"published": [], "container": []}, False
            for i in range(rounds):
                for way in ("published", "container") if i % 2 == 0 else ("container", "published"):
                    for page in pages if (way == "container") != routed else []:
                        if way == "container":
                            path_id = page.split("/")[2]
                            service.proxy_api("POST", page, json={"target": f"http://{bridge[path_id]}:{CONTAINER_PORT}"})
                        else:
                            service.proxy_api("DELETE", page)
                    routed = way == "container"
                    log(f"route: round {i + 1}, {way}")
                    _, summary, _ = burst(landed, image=TINY_IMAGE, bound=self.args.bound)
                    out[way].append({key: summary[key] for key in ("served", "p50", "p90", "max")})
        result = {"visitors": n, "rounds": rounds, "leftovers": service.leftovers}
        for way, runs in out.items():
            result[way] = {key: statistics.median(run[key] for run in runs if run[key] is not None) for key in ("p50", "p90", "max")}
            result[way]["runs"] = runs
        return result

    def case_cpu(self):
        """The web process's CPU time (gunicorn master and workers) per
        admission, with visitors arriving one after another."""
        n = self.args.cpu_visitors
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="cpu") as service:
            service.wait_ready(n)
            web = service.processes()["web"]
            log(f"cpu: {n} visitors one after another")
            before = process_cpu_seconds(web)
            summary = one_after_another(f"{service.url}/spawn/", n, image=TINY_IMAGE, bound=self.args.bound)
            cpu = process_cpu_seconds(web) - before
        served = summary["served"]
        return {"visitors": n, "served": served, "web_cpu_seconds": round(cpu, 3),
                "ms_per_admission": round(1000 * cpu / served, 1) if served else None,
                "p50": summary["p50"], "max": summary["max"], "errors": summary["errors"], "leftovers": service.leftovers}

    def case_footprint(self):
        n = 20
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="footprint") as service:
            service.wait_ready(n)
            idle = memory(service)
            log(f"footprint: {n} visitors take the ready containers")
            _, summary, _ = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=self.args.bound,
                                  retry_interval=self.args.retry_interval)
            time.sleep(2 * self.args.heartbeat)
            in_use = memory(service)
            counts = service.counts()
        return {"ready_idle": idle, "in_use": in_use, "served": summary["served"], "counts_in_use": counts,
                "leftovers": service.leftovers}

    def case_sweep(self):
        return sweep()

    def run(self, cases):
        order = ["refill", "a", "b", "c", "route", "cpu", "footprint", "sweep"]
        for name in sorted(cases, key=order.index):
            log(f"=== case {name}")
            busy = wait_quiet(self.args.wait_quiet) if name != "sweep" else None
            started = time.monotonic()
            try:
                self.results["cases"][name] = getattr(self, f"case_{name}")()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:
                log(f"case {name} failed: {error!r}")
                self.results["cases"][name] = {"error": repr(error)[:2000]}
            self.results["cases"][name]["wall_seconds"] = round(time.monotonic() - started, 1)
            self.results["cases"][name]["machine_busy_before"] = busy
        self.results["raw"] = [value for value in self.raw.values()]
        self.results["targets"] = check_targets(self.results["cases"], self.raw)
        return self.results


def sweep():
    """Issue 6, part 3: one reconcile and one cull tick with 1,000 live
    sessions (rows, proxy routes and sleeping tiny containers), timed, with the
    calls each makes to Docker and the proxy: deploy/bench_sweep.py, in a
    process of its own so that it has Django and a database of its own."""
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "bench_sweep.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"the sweep failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for tick in ("reconcile", "cull"):
        calls = figures[f"{tick}_calls"]
        figures[f"{tick}_list_calls"] = calls["docker_list"] + calls["proxy_list"]
    return figures


def memory(service):
    """RSS and PSS (kB from /proc) of each role's process tree, in MiB."""
    out = {}
    for role, pids in sorted(service.processes().items()):
        rss = pss = 0
        each = []
        for pid in pids:
            try:
                status = (Path("/proc") / str(pid) / "status").read_text()
                one_rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
                rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
                one_pss = int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
                name = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
            except (OSError, AttributeError):
                continue
            rss, pss = rss + one_rss, pss + one_pss
            each.append({"pid": pid, "rss_mib": mib(one_rss), "pss_mib": mib(one_pss), "cmdline": name})
        out[role] = {"processes": len(each), "rss_mib": mib(rss), "pss_mib": mib(pss), "each": each}
    four = [out[role] for role in ("web", "worker", "beat", "proxy") if role in out]
    out["service"] = {"processes": sum(r["processes"] for r in four), "rss_mib": round(sum(r["rss_mib"] for r in four), 1),
                      "pss_mib": round(sum(r["pss_mib"] for r in four), 1)}
    return out


# --- report -----------------------------------------------------------------------


def fmt(value, unit="s"):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f} {unit}".strip()
    return str(value)


def verdict(ok):
    return "met" if ok else "MISSED"


def check_targets(cases, raw):
    """Each target of issues 6 and 11 with the figure measured, met or missed."""
    out = []

    def add(case, target, figure, ok):
        out.append({"case": case, "target": target, "figure": figure, "status": "not measured" if ok is None else verdict(ok)})

    a = cases.get("a")
    if a and "p50" in a:
        add("a", f"p50 <= {TARGETS['a_p50']} s", fmt(a["p50"]), a["p50"] is not None and a["p50"] <= TARGETS["a_p50"])
        add("a", f"max <= {TARGETS['a_max']} s", fmt(a["max"]), a["max"] is not None and a["max"] <= TARGETS["a_max"])
        ratio = a.get("to_floor", {}).get("p50")
        add("a", f"p50 <= {TARGETS['a_floor_factor']} x the floor's p50 ({fmt(a.get('floor', {}).get('p50'))})",
            "-" if ratio is None else f"{ratio} x", None if ratio is None else ratio <= TARGETS["a_floor_factor"])
        add("a", "no failure, no duplicate",
            f"{a['served']}/{a['visitors']} served, {a['failed']} failed, {a['turned_away']} turned away, {a['refused']} refused, {a['duplicates']} duplicates",
            a["served"] == a["visitors"] and a["duplicates"] == 0)
    b = cases.get("b")
    if b and "p50" in b:
        add("b", f"p50 <= {TARGETS['b_p50']} s", fmt(b["p50"]), b["p50"] is not None and b["p50"] <= TARGETS["b_p50"])
        add("b", f"p99 <= {TARGETS['b_p99']} s", fmt(b["p99"]), b["p99"] is not None and b["p99"] <= TARGETS["b_p99"])
    c = cases.get("c")
    if c and "served" in c and c["visitors"] > c["ready_target"]:
        add("c", "all served, none turned away",
            f"{c['served']}/{c['visitors']} served, {c['turned_away']} turned away, {c['refused']} refused, {c['failed']} failed",
            c["served"] == c["visitors"] and c["turned_away"] == 0)
        add("c", f"last served <= {TARGETS['c_last_factor']} x raw time for {c['visitors'] - c['ready_target']} extra ({fmt(c['bound_last'])})",
            fmt(c["max"]), c["max"] is not None and c["max"] <= c["bound_last"])
    cpu = cases.get("cpu")
    if cpu and "ms_per_admission" in cpu:
        add("cpu", f"web CPU per admission <= {TARGETS['cpu_ms']} ms", fmt(cpu["ms_per_admission"], "ms"),
            cpu["ms_per_admission"] is not None and cpu["ms_per_admission"] <= TARGETS["cpu_ms"])
    refill = cases.get("refill")
    if refill and "error" not in refill:
        for kind, result in refill.items():
            if not isinstance(result, dict) or "raw" not in result:
                continue
            add("refill", f"{kind}: refill >= {TARGETS['refill_ratio']} x raw",
                f"{result['refill']['per_second']}/s vs raw {result['raw']['per_second']}/s = {result['ratio_refill']}",
                result["ratio_refill"] >= TARGETS["refill_ratio"])
            add("refill", f"{kind}: prefill >= {TARGETS['refill_ratio']} x raw",
                f"{result['prefill']['per_second']}/s vs raw {result['raw']['per_second']}/s = {result['ratio_prefill']}",
                result["ratio_prefill"] >= TARGETS["refill_ratio"])
    sweep = cases.get("sweep")
    if sweep is not None:
        if "reconcile_seconds" in sweep:
            worst = max(sweep["reconcile_seconds"], sweep["cull_seconds"])
            calls = max(sweep["reconcile_list_calls"], sweep["cull_list_calls"])
            add("sweep", f"tick <= {TARGETS['sweep_seconds']} s, <= {TARGETS['sweep_calls']} list calls",
                f"{worst:.3f} s, {calls} calls", worst <= TARGETS["sweep_seconds"] and calls <= TARGETS["sweep_calls"])
        else:
            add("sweep", f"tick <= {TARGETS['sweep_seconds']} s, <= {TARGETS['sweep_calls']} list calls", "not measured yet", None)
    footprint = cases.get("footprint")
    if footprint and "ready_idle" in footprint:
        total = footprint["ready_idle"]["service"]["rss_mib"]
        add("footprint", f"web+worker+beat+proxy RSS <= {TARGETS['footprint_mib']} MiB, 20 ready", f"{total} MiB",
            total <= TARGETS["footprint_mib"])
    return out


def print_report(results):
    out = sys.stdout
    machine_info = results["machine"]
    print(f"\nmachine: {machine_info['nproc']} cores {machine_info['cpu']}, {machine_info['memory_gib']} GiB, "
          f"Docker {machine_info['docker']}, kernel {machine_info['kernel']}", file=out)
    cases = results["cases"]
    bursts = [(name, cases[name]) for name in ("a", "b", "c") if name in cases]
    if bursts:
        print("\nburst (seconds from a visitor's first request to its own notebook page, through the proxy)", file=out)
        header = f"{'case':<4} {'image':<22} {'pool':>4} {'ready':>5} {'N':>4} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'served':>6} {'waited':>6} {'away':>5} {'refused':>7} {'failed':>6} {'dup':>4}"
        print(header, file=out)
        print("-" * len(header), file=out)
        for name, r in bursts:
            if "error" in r:
                print(f"{name:<4} error: {r['error'][:150]}", file=out)
                continue
            def s(v):
                return "-" if v is None else f"{v:.3f}"
            print(f"{name:<4} {r['image']:<22} {r['pool_size']:>4} {r['ready_target']:>5} {r['visitors']:>4} {s(r['p50']):>7} {s(r['p90']):>7} "
                  f"{s(r['p99']):>7} {s(r['max']):>7} {r['served']:>6} {r['waited']:>6} {r['turned_away']:>5} {r.get('refused', 0):>7} {r['failed']:>6} {r['duplicates']:>4}", file=out)
        for name, r in bursts:
            if "error" in r:
                continue
            extra = f"; redirect from Django p50 {fmt(r['redirect_p50'])}, max {fmt(r['redirect_max'])}"
            if r.get("burst_cpu_seconds"):
                extra += (f"; CPU s in the burst {r['burst_cpu_seconds']}, cores busy {r['burst_machine_busy']:.0%}"
                          f" (before the case: {fmt(r.get('machine_busy_before'), '')})")
            if r.get("under_load"):
                u = r["under_load"]
                extra += f"; started under load: {u['containers']} in {u['seconds']} s ({u['per_second']}/s)"
            print(f"  {name}: prefill {r['prefill']['containers']} ready in {r['prefill']['seconds']} s ({r['prefill']['per_second']}/s){extra}", file=out)
            floor, ratio = r.get("floor"), r.get("to_floor")
            if floor:
                print(f"  {name}: floor (the same visitors straight through the proxy): p50 {fmt(floor['p50'])}, p90 {fmt(floor['p90'])},"
                      f" p99 {fmt(floor['p99'])}, max {fmt(floor['max'])}, {floor['served']}/{floor['visitors']} served;"
                      f" the case as a multiple of it: p50 {ratio['p50']}, p90 {ratio['p90']}, p99 {ratio['p99']}, max {ratio['max']}", file=out)
            if r["errors"]:
                print(f"  {name}: errors: {r['errors'][:3]}", file=out)
    route = cases.get("route")
    if route:
        print("\nroute (the floor's burst both ways, median of 5 alternating rounds on the same containers)", file=out)
        if "error" in route:
            print(f"  error: {route['error'][:300]}", file=out)
        else:
            for way, meaning in (("published", "published loopback port"), ("container", "container's address")):
                r = route[way]
                print(f"  {meaning:<24} p50 {fmt(r['p50'])}, p90 {fmt(r['p90'])}, max {fmt(r['max'])}", file=out)
    cpu = cases.get("cpu")
    if cpu:
        if "error" in cpu:
            print(f"\ncpu: error: {cpu['error'][:300]}", file=out)
        else:
            print(f"\ncpu: {cpu['served']}/{cpu['visitors']} visitors one after another: web CPU {cpu['web_cpu_seconds']} s,"
                  f" {fmt(cpu['ms_per_admission'], 'ms')} per admission; each served in p50 {fmt(cpu['p50'])}, max {fmt(cpu['max'])}", file=out)
    refill = cases.get("refill")
    if refill:
        print("\nrefill (containers made ready per second)", file=out)
        if "error" in refill:
            print(f"  error: {refill['error'][:300]}", file=out)
        else:
            header = f"{'image':<8} {'n':>3} {'raw/s':>7} {'prefill/s':>10} {'ratio':>6} {'refill/s':>9} {'ratio':>6}"
            print(header, file=out)
            print("-" * len(header), file=out)
            for kind, r in refill.items():
                if not isinstance(r, dict) or "raw" not in r:
                    continue
                print(f"{kind:<8} {r['raw']['containers']:>3} {r['raw']['per_second']:>7} {r['prefill']['per_second']:>10} {r['ratio_prefill']:>6} "
                      f"{r['refill']['per_second']:>9} {r['ratio_refill']:>6}   raw runs {r['raw'].get('runs_per_second')}", file=out)
            print(f"  raw: docker create + start + poll until it answers, {refill_slots(refill)}, mean of 2 runs;"
                  f" service: the same TMPNB_MAX_DOCK_WORKERS; prefill = pool filled at start-up,"
                  f" refill = the same number started after visitors took every ready one", file=out)
    footprint = cases.get("footprint")
    if footprint:
        print("\nfootprint (MiB, each process tree; PSS counts shared pages once)", file=out)
        if "error" in footprint:
            print(f"  error: {footprint['error'][:300]}", file=out)
        else:
            header = f"{'process':<10} {'procs':>5} {'RSS ready':>10} {'PSS ready':>10} {'RSS in use':>11} {'PSS in use':>11}"
            print(header, file=out)
            print("-" * len(header), file=out)
            for role in ("web", "worker", "beat", "proxy", "service", "redis"):
                idle, busy = footprint["ready_idle"].get(role), footprint["in_use"].get(role)
                if idle is None:
                    continue
                label = "= 4 above" if role == "service" else role
                print(f"{label:<10} {idle['processes']:>5} {idle['rss_mib']:>10} {idle['pss_mib']:>10} {busy['rss_mib']:>11} {busy['pss_mib']:>11}", file=out)
    if "sweep" in cases:
        sweep_ = cases["sweep"]
        print(f"\nsweep with {sweep_['sessions']} live sessions (set up in {sweep_['setup_seconds']} s)", file=out)
        for tick in ("reconcile", "cull"):
            calls = sweep_[f"{tick}_calls"]
            print(f"  {tick:<9} {sweep_[f'{tick}_seconds']:.3f} s   Docker calls {calls['docker']} (lists {calls['docker_list']})"
                  f"   proxy calls {calls['proxy']} (lists {calls['proxy_list']})", file=out)
    print("\ntargets (issues 6 and 11)", file=out)
    for t in results["targets"]:
        print(f"  [{t['status']:>12}] {t['case']:<9} {t['target']:<62} {t['figure']}", file=out)


def refill_slots(refill):
    for r in refill.values():
        if isinstance(r, dict) and "raw" in r:
            return f"{r['raw']['docker_slots']} Docker calls at once, {r['raw']['threads']} in flight"
    return ""


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    try:
        client = docker_client()
        version = client.version()
        client.close()
        docker_version = f"{version['Version']} (API {version['ApiVersion']})"
    except Exception as error:
        docker_version = f"? ({error})"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        node = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
        code = f"{commit}" + (f" + {len(dirty)} uncommitted changes" if dirty else "")
    except OSError:
        code = "?"
    return {"code": code, "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1), "docker": docker_version,
            "kernel": platform.release(), "python": platform.python_version(), "node": node,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --- entry point ---------------------------------------------------------------------

ALL_CASES = ["a", "b", "c", "route", "cpu", "refill", "footprint", "sweep"]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="deploy/bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(ALL_CASES),
                        help="comma-separated, of a (tiny, 50 from a pool of 50), b (Jupyter, 100 from 100), "
                             "c (tiny, 50 from a pool of 50 with 20 ready), route (the proxy's hop both ways), cpu (30 one after another),"
                             " refill, footprint, sweep"
                             " (default: all)")
    parser.add_argument("-n", "--visitors", type=int, default=None, help="visitors (and pool size) of cases a, b, c instead of 50/100/50")
    parser.add_argument("--json", default=str(ROOT / "var" / "bench.json"), help="where to write the results (default var/bench.json)")
    parser.add_argument("--retry-interval", type=float, default=None,
                        help="poll or reload at most this many seconds apart while waiting (default: as the service's pages do)")
    parser.add_argument("--bound", type=float, default=60.0, help="a visitor not served within this many seconds is turned away (default 60)")
    parser.add_argument("--cpu-visitors", type=int, default=30, help="visitors one after another in case cpu (default 30)")
    parser.add_argument("--refill-n", type=int, default=30, help="containers per refill measure (tiny; Jupyter at most 20; default 30)")
    parser.add_argument("--refill-images", default="tiny,jupyter", help="images of the refill case: tiny,jupyter,classic (default tiny,jupyter; jupyter is JupyterLab)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="TMPNB_HEARTBEAT of the service (default 5, the service's default)")
    parser.add_argument("--max-dock-workers", type=int, default=2, help="TMPNB_MAX_DOCK_WORKERS, also the raw runs' Docker slots (default 2)")
    parser.add_argument("--database-url", default=None,
                        help="run the service on PostgreSQL: postgres://user@host:port/any (each case gets a database of its own);"
                             " deploy/bench --postgres starts a throwaway server and passes this")
    parser.add_argument("--wait-quiet", type=float, default=60,
                        help="before each case, wait up to this many seconds for other work to leave the cores idle (default 60)")
    parser.add_argument("--keep-state", action="store_true", help="keep each case's state folder (database, logs) in /var/tmp")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in ALL_CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; known: {', '.join(ALL_CASES)}")
    args.refill_images = [c.strip() for c in args.refill_images.split(",") if c.strip()]
    if any(kind not in IMAGES for kind in args.refill_images):
        parser.error("--refill-images takes tiny, jupyter and/or classic")
    return args


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM and SIGHUP unwind like Ctrl-C, so every case stops its deploy/up.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    needed = set()
    if {"a", "c", "route", "cpu", "footprint", "sweep"} & set(args.cases) or ("refill" in args.cases and "tiny" in args.refill_images):
        needed.add(TINY_IMAGE)
    if "b" in args.cases:
        needed.add(JUPYTER_IMAGE)
    if "refill" in args.cases:
        needed.update(IMAGES[kind] for kind in args.refill_images if kind != "tiny")
    for image in sorted(needed):
        ensure_image(image)
    bench = Bench(args)
    bench.results["options"] = {k: v for k, v in vars(args).items()}
    bench.results["service_environment"] = {key: os.environ[key] for key in sorted(PASS_THROUGH) if key in os.environ}
    started = time.monotonic()
    try:
        results = bench.run(args.cases)
    except KeyboardInterrupt:
        log("interrupted: every deploy/up started has been stopped")
        return 130
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    print_report(results)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path} (whole run {results['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
