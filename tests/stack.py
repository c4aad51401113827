"""The real processes the integration tests run: Redis, the proxy, gunicorn,
a Celery worker and beat. Each is started on free loopback ports and stopped
(with its children) by the fixture that started it. Free of Django settings
until a web app is made, so deploy/benchmark shares its helpers too."""

import html
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TINY_IMAGE = "tmpnb/tiny:latest"
# busybox httpd serving a page that names its base path, so a test (or a
# benchmark's visitor) can tell which container answered.
TINY_COMMAND = (
    "sh -c 'mkdir -p /www{base_path} && echo container {base_path} > /www{base_path}index.html"
    " && echo tree {base_path} > /www{base_path}tree && exec httpd -f -p {port} -h /www'"
)
# The same with a folder for the participant's work: the command names it as
# Jupyter's would (the shell takes it as $0 and ignores it), so the service
# saves it when the session ends.
TINY_WORK_COMMAND = (
    "sh -c 'mkdir -p /work /www{base_path} && echo tree {base_path} > /www{base_path}tree && exec httpd -f -p {port} -h /www' --notebook-dir=/work"
)


# The cookie step's page (pool/visitors.py) continues with JavaScript, or with this without it.
CHROMIUM = "/usr/bin/chromium"  # Debian's build, which deploy/test installs
# Headless, and nothing that reaches out of this machine (it has loopback only).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONTINUES = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')


class Browser(requests.Session):
    """A participant's browser, as far as tmpnb's pages need: it keeps cookies,
    follows redirects, and goes on from the cookie step's page by itself, as
    a browser does (a script without a browser stops there)."""

    def request(self, method, url, *args, **kwargs):
        response = super().request(method, url, *args, **kwargs)
        if method.upper() == "GET" and response.status_code == 200 and "text/html" in response.headers.get("Content-Type", ""):
            found = CONTINUES.search(response.text)
            if found:
                return super().request(method, urljoin(response.url, html.unescape(found.group(1))), *args, **kwargs)
        return response


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused and the like
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


class Process:
    """A child process in its own process group, so stopping it stops its children."""

    def __init__(self, name, args, env=None, log_dir=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_dir or "/tmp") / f"{name}-{secrets.token_hex(3)}.log"
        self.popen = None

    def start(self):
        """Launch the process and return once it answers."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self):
        log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_ready(self):
        """Nothing to wait for unless a kind of process says what answering is."""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def assert_running(self):
        assert self.popen.poll() is None, f"{self.name} exited:\n{self.log_tail()}"


class RedisServer(Process):
    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        super().__init__("redis", ["redis-server", "--bind", "127.0.0.1", "--port", self.port, "--save", "", "--appendonly", "no"], log_dir=log_dir)

    def wait_ready(self):
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), 0.2).close() or True, 10, "redis")


class Proxy(Process):
    """deploy/proxy/tmpnb-proxy.mjs: configurable-http-proxy with the
    service's listeners. Without ``notebook_domain``, the notebooks share the
    second port (``notebook_url``); with it, notebook <id> is <id>.<domain>
    on the public port (a browser maps the names to loopback). It serves
    JupyterLab's files from ``var_dir`` (the service's TMPNB_VAR_DIR, which
    ``service_env`` hands on), ``log_dir`` unless given."""

    def __init__(self, default_target, log_dir, token=None, public_port=None, api_port=None, api_ip="127.0.0.1", notebook_domain="", tls=None, var_dir=None):
        self.token = token or secrets.token_hex(16)
        self.public_port = public_port or free_port()
        self.api_port = api_port or free_port()
        self.notebook_port = free_port()
        self.notebook_domain = notebook_domain
        self.tls = tls
        self.var_dir = Path(var_dir or log_dir)
        self.scheme = "https" if tls else "http"
        self.public_url = f"{self.scheme}://127.0.0.1:{self.public_port}"
        self.notebook_url = f"{self.scheme}://127.0.0.1:{self.notebook_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        args = ["node", ROOT / "deploy/proxy/tmpnb-proxy.mjs", "--ip", "127.0.0.1", "--port", self.public_port, "--api-ip", api_ip]
        args += ["--api-port", self.api_port, "--default-target", default_target, "--log-level", "warn"]
        args += ["--notebook-port", self.notebook_port, "--notebook-domain", notebook_domain]
        if tls:
            args += ["--ssl-cert", tls[0], "--ssl-key", tls[1]]
        super().__init__("proxy", args, env={"CONFIGPROXY_AUTH_TOKEN": self.token, "TMPNB_VAR_DIR": str(self.var_dir)}, log_dir=log_dir)

    def service_env(self):
        """What the service's processes must know of this proxy's origins."""
        env = {"TMPNB_PUBLIC_PORT": self.public_port, "TMPNB_NOTEBOOK_PORT": self.notebook_port, "TMPNB_NOTEBOOK_DOMAIN": self.notebook_domain}
        env["TMPNB_VAR_DIR"] = self.var_dir
        if self.tls:
            env |= {"TMPNB_TLS_CERT": self.tls[0], "TMPNB_TLS_KEY": self.tls[1]}
        return {key: str(value) for key, value in env.items()}

    def wait_ready(self):
        headers = {"Authorization": f"token {self.token}"}
        wait_for(lambda: requests.get(f"{self.api_url}/api/routes", headers=headers, timeout=1).ok, 15, "the proxy")

    def routes(self):
        response = requests.get(f"{self.api_url}/api/routes", headers={"Authorization": f"token {self.token}"}, timeout=5)
        response.raise_for_status()
        return response.json()


# gunicorn's --keep-alive, as deploy/up and deploy/systemd run it: clearly
# longer than the proxy keeps an idle connection to it (UPSTREAM_IDLE_MS in
# deploy/proxy/tmpnb-proxy.mjs, 1 s), so the proxy always closes first.
WEB_KEEP_ALIVE = 5


class WebApp(Process):
    def __init__(self, port, env, log_dir, workers=2, keep_alive=WEB_KEEP_ALIVE):
        """``keep_alive`` None: gunicorn's own default (2 s)."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Waiting pages' long polls hold threads of their own (the setting is
        # read only when ``env`` has none: deploy/benchmark runs no Django).
        if "TMPNB_LONG_POLLS" in env:
            long_polls = int(env["TMPNB_LONG_POLLS"])
        else:
            from django.conf import settings

            long_polls = settings.TMPNB_LONG_POLLS
        threads = 4 + long_polls
        args = [BIN / "gunicorn", "tmpnb_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", workers, "--threads", threads]
        if keep_alive is not None:
            args += ["--keep-alive", keep_alive]
        super().__init__("web", args, env=env, log_dir=log_dir)

    def wait_ready(self):
        wait_for(lambda: requests.get(f"{self.url}/admin/login/", timeout=1).status_code == 200, 30, "gunicorn")


class CeleryWorker(Process):
    def __init__(self, env, log_dir):
        args = [
            BIN / "celery",
            "-A",
            "tmpnb_site",
            "worker",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"test-{secrets.token_hex(3)}@%h",
        ]
        super().__init__("worker", args, env={**env, "C_FORCE_ROOT": "1"}, log_dir=log_dir)

    def wait_ready(self):
        wait_for(lambda: "ready." in self.log_path.read_text(errors="replace"), 30, "the Celery worker")

    def tasks_succeeded(self, name):
        """The ids of the tasks called ``name`` this worker has finished
        without error since it started, as its INFO log reports them."""
        return set(re.findall(rf"Task {re.escape(name)}\[([^\]]+)\] succeeded", self.log_path.read_text(errors="replace")))


class CeleryBeat(Process):
    def __init__(self, env, log_dir):
        schedule = Path(log_dir) / f"beat-{secrets.token_hex(3)}"
        super().__init__("beat", [BIN / "celery", "-A", "tmpnb_site", "beat", "--loglevel", "INFO", "--schedule", schedule], env=env, log_dir=log_dir)
