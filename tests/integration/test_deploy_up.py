"""deploy/up, the README's first command, serves a real Jupyter notebook from
a prelaunched pool through the proxy, and stops everything on SIGTERM."""

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

from tests.stack import ROOT, Process, free_port, wait_for


def execute(ws_url, code, cookies):
    """Run ``code`` in a kernel over its websocket, as the notebook page does."""
    ws = websocket.create_connection(ws_url, cookie="; ".join(f"{k}={v}" for k, v in cookies.items()), timeout=30)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
        raise AssertionError("no execute_result from the kernel")
    finally:
        ws.close()


@pytest.fixture
def deploy_up(tmp_path, docker_images):
    installation = f"up{uuid.uuid4().hex[:6]}"
    ports = {name: free_port() for name in ("TMPNB_PUBLIC_PORT", "TMPNB_PROXY_API_PORT", "TMPNB_PORT", "TMPNB_REDIS_PORT")}
    env = {
        **{k: str(v) for k, v in ports.items()},
        "TMPNB_PUBLIC_IP": "127.0.0.1",
        "TMPNB_STATE": str(tmp_path),
        "TMPNB_VENV": str(Path(sys.executable).parent.parent),
        "TMPNB_INSTALLATION": installation,
        "TMPNB_POOL_SIZE": "2",
        "TMPNB_HEARTBEAT": "1",
    }
    # The test's own variables must not leak into the service.
    process = Process("deploy-up", ["bash", ROOT / "deploy/up"], env=env, log_dir=tmp_path)
    process.env = {k: v for k, v in process.env.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CONFIGPROXY"))} | env
    process.start()
    process.installation = installation
    process.url = f"http://127.0.0.1:{ports['TMPNB_PUBLIC_PORT']}"
    try:
        wait_for(lambda: "tmpnb is up" in process.log_path.read_text(), 300, "deploy/up")
        yield process
    finally:
        process.stop(signal.SIGTERM, timeout=60)


def our_containers(installation):
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": f"tmpnb.installation={installation}"})
    finally:
        client.close()


def test_a_visitor_lands_in_a_real_notebook_whose_kernel_runs_code(deploy_up):
    output = deploy_up.log_path.read_text()
    password = re.search(r"user admin, password (\S+)", output).group(1)
    wait_for(lambda: len(our_containers(deploy_up.installation)) == 2, 120, "two prelaunched containers")

    with requests.Session() as browser:
        started = time.monotonic()
        for _ in range(120):  # the pool may still be booting: the page says so and retries
            page = browser.get(f"{deploy_up.url}/", timeout=30)
            if page.status_code == 200:
                break
            assert page.status_code == 503 and "retries" in page.text.lower() or "again" in page.text.lower()
            time.sleep(1)
        assignment_seconds = time.monotonic() - started
        assert page.status_code == 200, page.text[:500]
        match = re.match(rf"{deploy_up.url}(/user/[0-9a-f]+/)tree", page.url)
        assert match, page.url
        base = match.group(1)
        assert "<title>Home Page - Select or create a notebook</title>" in page.text

        kernel = browser.post(f"{deploy_up.url}{base}api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": browser.cookies["_xsrf"]}, timeout=30)
        assert kernel.status_code == 201, kernel.text
        ws_url = f"ws://127.0.0.1:{deploy_up.url.rsplit(':', 1)[1]}{base}api/kernels/{kernel.json()['id']}/channels"
        assert execute(ws_url, "6 * 7", browser.cookies.get_dict()) == "42"

        # A reload lands in the same notebook.
        assert browser.get(f"{deploy_up.url}/", timeout=30).url.startswith(f"{deploy_up.url}{base}")
    print(f"first visit to notebook page: {assignment_seconds:.2f}s")

    with requests.Session() as organiser:
        login_page = organiser.get(f"{deploy_up.url}/admin/login/", timeout=10)
        assert login_page.status_code == 200
        response = organiser.post(
            f"{deploy_up.url}/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": organiser.cookies["csrftoken"]},
            headers={"Referer": f"{deploy_up.url}/admin/login/"},
            timeout=10,
        )
        assert response.status_code == 200 and "Site administration" in response.text

    # SIGTERM to deploy/up alone: it must stop everything it started by itself.
    os.kill(deploy_up.popen.pid, signal.SIGTERM)
    deploy_up.popen.wait(60)
    left = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(deploy_up.popen.pid)], capture_output=True, text=True).stdout
    assert left.strip() == "", f"deploy/up left processes running:\n{left}"
    assert our_containers(deploy_up.installation) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{deploy_up.url}/", timeout=2)
