"""The room is usable at 9:00 (issue 32): a kernel already waits in each ready
JupyterLab server for the participant's first notebook (JupyterLab's own
files come compressed from the proxy: tests/integration/test_lab_static.py)."""

import json
import os
import re
import time
from pathlib import Path

import pytest
import requests

from pool.command import CLASSIC_COMMAND, DEFAULT_COMMAND
from pool.models import Container
from tests.factories import CLASSIC_JUPYTER_IMAGE, JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import open_browser, run_cell  # noqa: F401 (open_browser is a fixture)
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

WHERE_AM_I = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "cwd", "metadata": {}, "outputs": [], "source": "import os\nprint(os.getcwd())"}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def ask(container, path, method="GET"):
    response = requests.request(method, f"{container.target}{container.base_path}{path}", headers={"Authorization": f"token {container.token}"}, timeout=10)
    response.raise_for_status()
    return response.json()


def kernel_of(container, notebook):
    """The kernel of ``notebook``'s session (JupyterLab names the session after
    the notebook once it has started the kernel: waited for)."""
    found = {}

    def session_named():
        found.update((session["path"], session["kernel"]["id"]) for session in ask(container, "api/sessions"))
        return notebook in found

    wait_until(session_named, timeout=30, what=f"a session of {notebook}")
    return found[notebook]


def run_and_read(page, url):
    page.goto(url)
    # The notebook of ``url`` in front: JupyterLab also reopens the ones open before.
    name = url.split("?")[0].rsplit("/", 1)[-1]
    page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel", has_text=name).wait_for(timeout=120_000)
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    run_cell(cell, page)
    output = cell.locator(".jp-OutputArea-output")
    output.wait_for(timeout=120_000)
    return output.text_content().strip()


def held_back(route):
    """JupyterLab shows a notebook's cells, then lists and makes its checkpoint,
    then asks for its kernel: held back, the first cell runs in that gap, as a
    quick participant's does on a busy machine. There JupyterLab's own executor
    found no kernel, asked "Select kernel for ..." and, once answered, swapped
    the waiting kernel for a new one (deploy/images/tmpnb-first-run)."""
    time.sleep(1)
    route.continue_()


@pytest.fixture
def notebooks(tmp_path):
    """Two notebooks in a subfolder, each printing where its kernel works."""
    folder = tmp_path / "workshop"
    folder.mkdir()
    for name in ("first.ipynb", "second.ipynb"):
        (folder / name).write_text(json.dumps(WHERE_AM_I))
        os.chown(folder / name, 1000, 1000)
    os.chown(folder, 1000, 1000)
    return folder


def test_the_waiting_kernel_is_handed_out_once_each_notebook_works_in_its_folder_and_restarts(live_stack, open_browser, notebooks):  # noqa: F811
    PoolFactory(
        capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", mem_limit="256m", host_directories=f"{notebooks}:/home/jovyan/work:rw"
    )
    live_stack.start()
    wait_until(lambda: ready_count() == 1, timeout=120, what="a ready JupyterLab container")
    container = Container.objects.get(state=Container.State.READY)
    waiting = ask(container, "tmpnb/waiting-kernel")
    assert waiting["ready"] and waiting["id"], waiting  # ready means its kernel answered already
    assert ask(container, "api/kernels") == []  # JupyterLab's "Running" panel does not show it

    participant = open_browser("room")
    # Once: a route makes every request of the page wait for this thread, and
    # the reloads below would then stall (JupyterLab's theme can fail to load).
    participant.route("**/api/contents/work/first.ipynb/checkpoints*", held_back, times=1)
    participant.goto(f"{live_stack.url}/spawn/lab/tree/work/first.ipynb")
    first = participant.url
    assert re.search(r"/user/[0-9a-f]+/lab/tree/work/first\.ipynb", first), first
    assert run_and_read(participant, first) == "/home/jovyan/work"  # moved to the notebook's folder
    first_kernel = kernel_of(container, "work/first.ipynb")
    assert first_kernel == waiting["id"]
    assert ask(container, "tmpnb/waiting-kernel")["id"] is None  # handed out, once

    second = first.replace("first.ipynb", "second.ipynb")
    assert run_and_read(participant, second) == "/home/jovyan/work"
    assert kernel_of(container, "work/second.ipynb") not in (waiting["id"], first_kernel, None)

    # A restart (what JupyterLab's Kernel menu asks) starts it again, in its folder.
    ask(container, f"api/kernels/{first_kernel}/restart", method="POST")
    assert run_and_read(participant, first) == "/home/jovyan/work"
    assert kernel_of(container, "work/first.ipynb") == first_kernel


def test_the_classic_notebook_has_no_waiting_kernel_and_still_works(live_stack):
    PoolFactory(capacity=1, image=CLASSIC_JUPYTER_IMAGE, command=CLASSIC_COMMAND, redirect_uri="/tree", mem_limit="256m")
    live_stack.start()
    wait_until(lambda: ready_count() == 1, timeout=120, what="a ready classic container")
    container = Container.objects.get(state=Container.State.READY)
    answer = requests.get(f"{container.target}{container.base_path}tmpnb/waiting-kernel", headers={"Authorization": f"token {container.token}"}, timeout=10)
    assert answer.status_code == 404
    assert ask(container, "api/kernels") == []
    with Browser() as participant:
        page = participant.get(f"{live_stack.url}/spawn/", timeout=30)
    assert page.status_code == 200 and "Home Page - Select or create a notebook" in page.text
