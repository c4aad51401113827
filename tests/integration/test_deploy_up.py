"""deploy/up, the README's first command, serves a real Jupyter notebook from
a prelaunched pool through the proxy; a restart of the whole service loses no
session; deploy/down removes every notebook. Runs on the default JupyterLab
image and on the classic Notebook image, configured as the README says."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests
import websocket

from pool import netguard
from pool.services import network
from tests.factories import CLASSIC_JUPYTER_IMAGE, JUPYTER_IMAGE
from tests.stack import ROOT, Browser, Process, free_port, wait_for

# Per image: the service's variables (the README's), where a visitor lands, and
# what that page holds once it is the visitor's own server.
IMAGES = {
    "jupyterlab": (JUPYTER_IMAGE, {}, "lab", "<title>JupyterLab</title>"),
    "classic": (CLASSIC_JUPYTER_IMAGE, {"TMPNB_IMAGE": CLASSIC_JUPYTER_IMAGE}, "tree", "<title>Home Page - Select or create a notebook</title>"),
}


def execute(ws_url, code, cookies):
    """Run ``code`` in a kernel over its websocket, as the notebook page does."""
    ws = websocket.create_connection(ws_url, cookie="; ".join(f"{k}={v}" for k, v in cookies.items()), timeout=30)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                }
            )
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
        raise AssertionError("no execute_result from the kernel")
    finally:
        ws.close()


class DeployUp:
    """deploy/up on private ports, with its own state folder and installation label."""

    def __init__(self, state_dir, **variables):
        self.installation = f"up{uuid.uuid4().hex[:6]}"
        ports = {name: free_port() for name in ("TMPNB_PUBLIC_PORT", "TMPNB_NOTEBOOK_PORT", "TMPNB_PROXY_API_PORT", "TMPNB_PORT", "TMPNB_REDIS_PORT")}
        self.port = ports["TMPNB_PUBLIC_PORT"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.notebook_port = ports["TMPNB_NOTEBOOK_PORT"]
        self.notebook_url = f"http://127.0.0.1:{self.notebook_port}"
        self.state_dir = state_dir
        # Only the service's own variables: none of the test run's.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CONFIGPROXY", "TMPNB_"))}
        self.env = (
            base
            | {k: str(v) for k, v in ports.items()}
            | {
                "TMPNB_PUBLIC_IP": "127.0.0.1",
                "TMPNB_STATE": str(state_dir),
                "TMPNB_VENV": str(Path(sys.executable).parent.parent),
                "TMPNB_INSTALLATION": self.installation,
                "TMPNB_POOL_SIZE": "2",
                "TMPNB_HEARTBEAT": "1",
            }
            | variables
        )
        self.process = None

    def start(self):
        self.process = Process("deploy-up", ["bash", ROOT / "deploy/up"], log_dir=self.state_dir)
        self.process.env = self.env
        self.process.start()
        wait_for(lambda: "tmpnb is up" in self.process.log_path.read_text(), 300, "deploy/up")
        return self

    def stop(self):
        """SIGTERM to deploy/up alone: it must stop everything it started by itself."""
        os.kill(self.process.popen.pid, signal.SIGTERM)
        self.process.popen.wait(60)
        listed = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(self.process.popen.pid)], capture_output=True, text=True).stdout
        # Not even an exited child waiting for init to reap it (<defunct>).
        assert listed.strip() == "", "deploy/up left processes behind:\n" + listed

    def manage(self, *args):
        """deploy/manage as an operator runs it from a new shell: none of the
        service's settings or secrets in its environment, only the variables
        deploy/up was started with."""
        shell = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
        shell |= {k: v for k, v in self.env.items() if k.startswith("TMPNB_")}
        return subprocess.run(["bash", ROOT / "deploy/manage", *args], env=shell, cwd="/", capture_output=True, text=True, timeout=120)

    def pool_status(self):
        done = self.manage("pool_status", "--json")
        assert done.returncode == 0, done.stderr
        [row] = json.loads(done.stdout)
        return row

    def down(self):
        return subprocess.run(["bash", ROOT / "deploy/down"], env=self.env, check=True, capture_output=True, text=True, timeout=120)

    def containers(self):
        client = docker.from_env()
        try:
            return client.containers.list(all=True, filters={"label": f"tmpnb.installation={self.installation}"})
        finally:
            client.close()


@pytest.fixture(params=IMAGES, ids=str)
def image(request):
    return request.param


@pytest.fixture
def service(tmp_path, docker_images, image):
    deployed = DeployUp(tmp_path, **IMAGES[image][1])
    try:
        yield deployed.start()
    finally:
        deployed.process.stop(signal.SIGTERM, timeout=60)
        deployed.down()
        assert deployed.containers() == []
        assert netguard.rules(deployed.installation) == []  # the network guard went with deploy/down


def first_visit(browser, url):
    for _ in range(120):  # the pool may still be booting: the page says so and retries
        page = browser.get(f"{url}/", timeout=30)
        if "/user/" in page.url:
            return page
        assert page.status_code == 200 and "tries again by itself" in page.text
        time.sleep(1)
    raise AssertionError("no notebook within two minutes")


def test_a_visitor_lands_in_a_real_notebook_that_outlives_a_restart(service, image):
    docker_image, _, landing, own_page = IMAGES[image]
    banner = service.process.log_path.read_text()
    password = re.search(r"user admin, password (\S+)", banner).group(1)
    # The default mode says what it gives up, in a line each (README "Safety").
    assert f"Notebooks:     port {service.notebook_port}, one origin shared by all notebooks" in banner
    assert "Plain HTTP:    passwords and tokens cross the network in clear" in banner
    browser = Browser()
    started = time.monotonic()
    page = first_visit(browser, service.url)
    print(f"first visit to the notebook's /{landing} page: {time.monotonic() - started:.2f}s")
    match = re.match(rf"{service.notebook_url}(/user/[0-9a-f]+/){landing}", page.url)
    assert match, page.url
    base = match.group(1)
    assert own_page in page.text and base in page.text
    assert {c.attrs["Config"]["Image"] for c in service.containers()} == {docker_image}
    assert netguard.missing(network.guard_policy(), service.installation) == []  # deploy/up guarded the notebooks' network

    kernel = browser.post(f"{service.notebook_url}{base}api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": browser.cookies["_xsrf"]}, timeout=30)
    assert kernel.status_code == 201, kernel.text
    ws_url = f"ws://127.0.0.1:{service.notebook_port}{base}api/kernels/{kernel.json()['id']}/channels"
    assert execute(ws_url, "answer = 6 * 7\nanswer", browser.cookies.get_dict()) == "42"
    assert browser.get(f"{service.url}/", timeout=30).url == page.url  # a reload: the same notebook

    # The whole service restarts: its notebooks keep running, and the same
    # visitor comes back to the same kernel, which still knows `answer`.
    service.stop()
    assert len(service.containers()) == 2
    service.start()
    # Until the route is back, the app answers with its "reconnecting" page, not the notebook's JSON.
    wait_for(lambda: isinstance(browser.get(f"{service.notebook_url}{base}api/kernels", timeout=5).json(), list), 30, "the route restored")
    assert browser.get(f"{service.url}/", timeout=30).url == page.url
    assert execute(ws_url, "answer + 1", browser.cookies.get_dict()) == "43"

    with Browser() as organiser:
        organiser.get(f"{service.url}/admin/login/", timeout=10)
        response = organiser.post(
            f"{service.url}/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": organiser.cookies["tmpnb_csrf"]},
            headers={"Referer": f"{service.url}/admin/login/"},
            timeout=10,
        )
        assert response.status_code == 200 and "Site administration" in response.text

    operate_from_a_new_shell(service)

    service.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.url}/", timeout=2)
    down = service.down()
    assert service.containers() == []
    # The proxy stopped with deploy/up and took the routes with it: said once, not per container.
    assert down.stdout == "2 notebook containers removed.\n"
    assert down.stderr == "The proxy is not running: the routes went with it; only the containers were removed.\n"


def operate_from_a_new_shell(service):
    """The README's commands, through deploy/manage, against the running service
    (which holds one visitor's notebook and a pool of 2)."""
    row = service.pool_status()
    assert (row["capacity"], row["in_use"]) == (2, 1)

    refused = service.manage("resize_pool", "-5")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", "CommandError: the pool size cannot be negative\n")
    refused = service.manage("drain_pool", "--pool", "nope")
    assert (refused.returncode, refused.stderr) == (1, "CommandError: no pool named 'nope'; pools: default\n")

    resized = service.manage("resize_pool", "3")
    assert resized.stdout == "Pool default: size 3, ready target 3.\n", resized.stderr
    wait_for(lambda: service.pool_status()["ready"] == 2, 120, "the pool grown to 3")
    before = {c.name for c in service.containers() if c.status == "running"}

    drained = service.manage("drain_pool")
    assert drained.stdout == "Pool default: replacing 2 container(s); containers in use keep running.\n", drained.stderr
    wait_for(lambda: service.pool_status()["ready"] == 2, 120, "the drained pool refilled")
    after = {c.name for c in service.containers() if c.status == "running"}
    assert len(before & after) == 1 and len(after) == 3  # only the visitor's notebook stayed
    assert service.pool_status()["failed_today"] == 0

    culled = service.manage("cull")
    assert culled.stdout == "culled-idle: 0, culled-age: 0\n", culled.stderr
    reconciled = service.manage("reconcile")
    assert reconciled.stdout.startswith("dead replaced: 0, stuck failed: 0,"), reconciled.stderr
    assert service.manage("resize_pool", "2").returncode == 0
    wait_for(lambda: service.pool_status()["ready"] == 1, 60, "the pool shrunk back to 2")


def test_deploy_manage_before_any_deploy_up_says_so_in_one_line(tmp_path):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPNB_STATE": str(tmp_path / "state"), "TMPNB_VENV": str(Path(sys.executable).parent.parent)}
    done = subprocess.run(["bash", ROOT / "deploy/manage", "pool_status"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"[tmpnb] no installation in {tmp_path / 'state'} (no readable secrets.env): start it once with deploy/up\n"


def test_a_state_folder_or_secrets_another_user_could_write_are_refused(tmp_path):
    """Root sources secrets.env from the state folder: one another user could
    have prepared would run their commands as root."""
    state = tmp_path / "state"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPNB_STATE": str(state), "TMPNB_VENV": str(Path(sys.executable).parent.parent)}

    def manage():
        return subprocess.run(["bash", ROOT / "deploy/manage", "pool_status"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    state.mkdir(mode=0o777)
    state.chmod(0o1777)  # as /var/tmp is
    done = manage()
    assert done.returncode == 1
    assert done.stderr == f"[tmpnb] refusing the state folder {state}: it must be a folder of root's that no other user can write to (not a link)\n"
    state.chmod(0o700)
    secrets = state / "secrets.env"
    secrets.write_text(f"touch {tmp_path / 'ran-as-root'}\n")
    os.chown(secrets, 65534, 65534)  # nobody's
    done = manage()
    assert done.returncode == 1
    assert done.stderr == f"[tmpnb] refusing {secrets}: it must be a file of root's that no other user can write to (not a link)\n"
    assert not (tmp_path / "ran-as-root").exists()
    assert oct(state.stat().st_mode & 0o777) == "0o700"
