"""A participant's work outlives their notebook, on the real stack with the
default JupyterLab image: saved at a cull, a kill and stop_pools (what
deploy/down runs), downloaded from the ended page by its holder only, and put
back into a new notebook."""

import base64
import io
import json
import re
import subprocess
import sys
import zipfile

import docker
import requests

from pool.command import DEFAULT_COMMAND
from pool.models import Container, Session
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_pool_lifecycle import wait_until
from tests.stack import ROOT, Browser

NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "a1", "metadata": {}, "outputs": [], "source": "print('hello')"}],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}
# JupyterLab starts slowly on a busy machine.
STACK = {"TMPNB_SPAWN_TIMEOUT": 120, "TMPNB_CULL_PERIOD": 1}


def jupyter_pool(**fields):
    return PoolFactory(capacity=2, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, mem_limit="256m", redirect_uri="/lab", **fields)


def takes_a_notebook(stack):
    browser = Browser()
    wait_until(lambda: Container.objects.ready().exists(), timeout=180, what="a ready JupyterLab")
    landing = browser.get(f"{stack.url}/", timeout=60)
    assert landing.status_code == 200 and "<title>JupyterLab</title>" in landing.text
    return browser, holding(browser)


def holding(browser):
    """The container of the one participant's live session."""
    return Session.objects.active().select_related("container__pool").get().container


def save_work(stack, container, **extra_files):
    """A text file and a notebook saved through Jupyter's own API (as the
    editor saves them), plus ``extra_files``; returns each file's bytes as
    the notebook server holds them."""
    api = f"{stack.notebook_url}{container.base_path}api/contents"
    headers = {"Authorization": f"token {container.token}"}
    files = {"notes.txt": {"type": "file", "format": "text", "content": "my results: 42\n"}, "analysis.ipynb": {"type": "notebook", "content": NOTEBOOK}}
    for name, data in extra_files.items():
        files[name] = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    for name, body in files.items():
        assert requests.put(f"{api}/{name}", json=body, headers=headers, timeout=30).status_code in (200, 201)
    return {name: files_of(stack, container, name) for name in files}


def files_of(stack, container, name):
    response = requests.get(f"{stack.notebook_url}{container.base_path}files/{name}", headers={"Authorization": f"token {container.token}"}, timeout=30)
    assert response.status_code == 200, f"{name}: {response.status_code}"
    return response.content


def ended_page_with_work(browser, stack, container):
    # Not by polling its URL meanwhile: each request through the proxy is activity, which puts off an idle cull.
    wait_until(lambda: Session.objects.filter(container=container, ended_at__isnull=False).exists(), timeout=120, what="the end")
    # The notebook's own URL: its origin sends the participant to the ended page on the participants' pages.
    url = f"{stack.notebook_url}{container.base_path}lab"
    wait_until(lambda: 'id="download-work"' in browser.get(url, timeout=10).text, timeout=120, what="the work saved")
    page = browser.get(url, timeout=10)
    assert page.status_code == 410
    return page


def downloaded(browser, stack, page):
    href = re.search(r'id="download-work" href="([^"]+)"', page.text).group(1)
    response = browser.get(f"{stack.url}{href}", timeout=30)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return f"{stack.url}{href}", {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def start_again_with_my_files(browser, stack, page, names):
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    wait_until(lambda: Container.objects.ready().exists(), timeout=180, what="a ready JupyterLab for the restart")
    landed = browser.post(f"{stack.url}{action}", data={"csrfmiddlewaretoken": token}, timeout=60)
    assert landed.status_code == 200 and "<title>JupyterLab</title>" in landed.text
    again = holding(browser)
    # The visitor lands at once; the worker puts the files back meanwhile.
    wait_until(lambda: all(has_file(stack, again, name) for name in names), timeout=60, what="the files put back")
    return again


def has_file(stack, container, name):
    url = f"{stack.notebook_url}{container.base_path}api/contents/{name}?content=0"
    return requests.get(url, headers={"Authorization": f"token {container.token}"}, timeout=10).status_code == 200


def test_an_idle_cull_keeps_the_work_for_its_holder_who_starts_again_with_it(live_stack):
    jupyter_pool(cull_timeout=15)
    live_stack.start(**STACK)
    browser, container = takes_a_notebook(live_stack)
    saved = save_work(live_stack, container)
    assert json.loads(saved["analysis.ipynb"])["cells"][0]["source"] in ("print('hello')", ["print('hello')"])

    page = ended_page_with_work(browser, live_stack, container)  # idle 15 s, then culled
    assert Session.objects.get(container=container).end_reason == Session.EndReason.CULLED_IDLE
    url, work = downloaded(browser, live_stack, page)
    assert {name: work.get(name) for name in saved} == saved
    assert Browser().get(url, timeout=10).status_code == 404  # another browser

    again = start_again_with_my_files(browser, live_stack, page, saved)
    assert again.pk != container.pk
    assert {name: files_of(live_stack, again, name) for name in saved} == saved
    client = docker.from_env()
    try:  # owned by the notebook's user, who can change and delete them
        owners = client.containers.get(again.backend_id).exec_run("stat -c %U /home/jovyan/notes.txt /home/jovyan/analysis.ipynb")
        assert owners.output.decode().split() == ["jovyan", "jovyan"]
    finally:
        client.close()


def test_a_kill_and_stop_pools_save_the_work_within_the_size_cap(live_stack, admin_client):
    jupyter_pool()
    live_stack.start(TMPNB_SNAPSHOT_MAX_MB=1, **STACK)
    browser, container = takes_a_notebook(live_stack)
    big = bytes(range(256)) * 6000  # 1.5 MB: over the cap
    saved = save_work(live_stack, container, **{"big.bin": big, "small.bin": b"\x00\x01"})

    admin_client.post("/admin/pool/session/", {"action": "kill", "_selected_action": [Session.objects.get(container=container).pk]})
    page = ended_page_with_work(browser, live_stack, container)
    assert re.search(r'<ul id="left-out"><li>big.bin</li></ul>', page.text)
    _, work = downloaded(browser, live_stack, page)
    assert "big.bin" not in work
    assert {name: work[name] for name in ("notes.txt", "analysis.ipynb", "small.bin")} == {
        name: saved[name] for name in ("notes.txt", "analysis.ipynb", "small.bin")
    }

    again = start_again_with_my_files(browser, live_stack, page, ["notes.txt"])
    assert files_of(live_stack, again, "notes.txt") == saved["notes.txt"]
    stop = subprocess.run([sys.executable, "manage.py", "stop_pools"], cwd=ROOT, env=live_stack.worker.env, capture_output=True, text=True, timeout=300)
    assert stop.returncode == 0, stop.stderr
    assert Session.objects.get(container=again).end_reason == Session.EndReason.SERVICE_STOPPED
    _, work = downloaded(browser, live_stack, ended_page_with_work(browser, live_stack, again))
    assert work["notes.txt"] == saved["notes.txt"] and work["small.bin"] == b"\x00\x01"


def test_a_notebook_whose_container_stopped_on_its_own_has_its_work_saved(live_stack):
    jupyter_pool()
    live_stack.start(**STACK)
    browser, container = takes_a_notebook(live_stack)
    saved = save_work(live_stack, container)
    client = docker.from_env()
    try:  # it crashes: stopped behind the service's back, its files still in it
        client.containers.get(container.backend_id).kill()
    finally:
        client.close()
    page = ended_page_with_work(browser, live_stack, container)  # the heartbeat notices, the worker copies
    assert Session.objects.get(container=container).end_reason == Session.EndReason.CONTAINER_GONE
    assert "Its container stopped on its own (it crashed). Your files were saved before it was removed." in page.text
    _, work = downloaded(browser, live_stack, page)
    assert {name: work.get(name) for name in saved} == saved
    wait_until(lambda: Container.objects.get(pk=container.pk).state == Container.State.GONE, timeout=60, what="the container removed")
