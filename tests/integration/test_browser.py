"""The organiser's real flow in headless Chromium (Debian's package, driven
by Playwright) against the live stack: log in, see a participant's new
session on the dashboard, kill it; the participant's next request shows the
ended page. Screenshots go to artifacts/screenshots/. A participant opens
a deep link into JupyterLab and runs a cell."""

import json
import os
import re
from pathlib import Path

import pytest

from pool.command import DEFAULT_COMMAND
from pool.models import Session
from pool.services import ending
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import CHROMIUM, CHROMIUM_FLAGS, ROOT, Browser

SCREENSHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")


@pytest.fixture
def open_browser(tmp_path, monkeypatch):
    """Opens a browser of its own (a fresh user-data-dir) for each person in
    the test; ``args`` are more Chromium flags, options go to Playwright
    (java_script_enabled=False...)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread, which makes
    # Django refuse the test's own (synchronous) queries; nothing here is async.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        contexts = []

        def open_one(name, args=(), **options):
            context = playwright.chromium.launch_persistent_context(
                tmp_path / f"profile-{name}",
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_FLAGS, *args],
                viewport={"width": 1280, "height": 900},
                **options,
            )
            contexts.append(context)
            return context.pages[0] if context.pages else context.new_page()

        yield open_one
        for context in contexts:
            context.close()


def log_in_as_organiser(page, url, user):
    """Log ``page`` in to the admin as ``user`` (pytest-django's admin_user); it lands on the dashboard."""
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#tmpnb-dashboard")
    return page


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    return take


def test_an_organiser_kills_a_participants_session_from_the_dashboard(live_stack, admin_user, open_browser, screenshot):
    PoolFactory(capacity=3, ready_target=2)
    live_stack.start(TMPNB_SAMPLE_PERIOD=1)
    wait_until(lambda: ready_count() == 2, what="2 ready containers")

    organiser = log_in_as_organiser(open_browser("organiser"), live_stack.url, admin_user)
    assert organiser.locator("#live-sessions tr.session").count() == 0

    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/")
    participant.wait_for_url("**/user/**")  # past the cookie step's page, which goes on by itself
    assert participant.text_content("body").strip().startswith("tree /user/")
    notebook_url = participant.url
    session = Session.objects.get()

    # The dashboard refreshes by itself: the new session appears without a reload.
    row = organiser.locator(f'#live-sessions tr.session[data-visitor="{session.visitor_tag}"]')
    row.wait_for(timeout=20_000)
    assert session.container.path_id in row.text_content()
    wait_until(lambda: organiser.locator("#usage-chart polyline").count() == 3, what="the usage chart drawn")
    screenshot(organiser, "dashboard-live-session")

    row.get_by_role("button", name="Kill").click()
    organiser.wait_for_selector("text=Killed 1 session(s).")
    ended_row = organiser.locator("#ended-sessions tbody tr").first
    assert session.visitor_tag in ended_row.text_content()
    assert f"killed by {admin_user.username}" in ended_row.text_content()
    screenshot(organiser, "dashboard-after-kill")

    response = participant.goto(notebook_url)
    assert response.status == 410
    assert participant.locator("h1").text_content() == "This notebook server has ended"
    screenshot(participant, "participant-ended")
    session.refresh_from_db()
    assert session.describe_end() == f"killed by {admin_user.username}"


def test_the_waiting_page_moves_on_to_the_notebook_by_itself(live_stack, open_browser, screenshot):
    PoolFactory(capacity=1)
    live_stack.start()
    wait_until(lambda: ready_count() == 1, what="1 ready container")
    holder = Browser()
    assert "/user/" in holder.get(f"{live_stack.url}/", timeout=30).url

    participant = open_browser("waiting")
    participant.goto(f"{live_stack.url}/")
    assert participant.text_content("#position").strip() == "1"
    assert "All notebook servers are in use" in participant.text_content("#phase")
    screenshot(participant, "waiting-room")

    ending.kill_sessions([Session.objects.get()], by="test")  # a place frees up
    participant.wait_for_url("**/user/**", timeout=30_000)  # no click, no reload
    assert participant.text_content("body").strip().startswith("tree /user/")
    assert Session.objects.active().get().container.base_path in participant.url


INTRO = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "answer", "metadata": {}, "outputs": [], "source": "print(6 * 7)"}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def workshop_folder(tmp_path):
    """A folder of notebooks mounted into every container, as an organiser's host_directories."""
    folder = tmp_path / "workshop"
    folder.mkdir()
    (folder / "intro.ipynb").write_text(json.dumps(INTRO))
    os.chown(folder, 1000, 1000)  # the image's jovyan reads it and may save into it
    os.chown(folder / "intro.ipynb", 1000, 1000)
    return folder


def run_cell(cell, page, tries=5):
    """Shift+Enter in the cell, again if JupyterLab did not take it: while it
    still lays out its panels (slowly, on a busy machine) the editor can lose
    the focus between the click and the key. A cell taken shows [*] (queued or
    running) or its output."""
    prompt, output = cell.locator(".jp-InputArea-prompt"), cell.locator(".jp-OutputArea-output")
    for _ in range(tries):
        cell.locator(".cm-content").click(timeout=60_000)  # the file is open in JupyterLab
        page.keyboard.press("Shift+Enter")
        try:
            wait_until(lambda: "*" in prompt.text_content() or output.count() > 0, timeout=10, what="the cell to be taken")
            return
        except AssertionError:
            continue
    raise AssertionError(f"JupyterLab did not take Shift+Enter in {tries} tries")


def test_a_participant_runs_a_cell_in_jupyterlab_from_a_deep_link(live_stack, open_browser, workshop_folder, tmp_path):
    PoolFactory(
        capacity=2,
        image=JUPYTER_IMAGE,
        command=DEFAULT_COMMAND,
        redirect_uri="/lab",
        mem_limit="256m",
        host_directories=f"{workshop_folder}:/home/jovyan/work:rw",
    )
    live_stack.start()
    wait_until(lambda: ready_count() == 2, timeout=120, what="2 ready JupyterLab containers")

    participant = open_browser("jupyterlab")
    participant.goto(f"{live_stack.url}/spawn/lab/tree/work/intro.ipynb")
    assert re.search(r"/user/[0-9a-f]+/lab/tree/work/intro\.ipynb", participant.url), participant.url
    cell = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    run_cell(cell, participant)
    output = cell.locator(".jp-OutputArea-output")
    output.wait_for(timeout=120_000)  # the kernel starts, runs the cell and answers over its websocket
    assert output.text_content().strip() == "42"
    assert participant.get_by_text("official Jupyter news").count() == 0  # the image never asks about the news feed
    participant.screenshot(path=tmp_path / "jupyterlab-participant.png")
    assert (tmp_path / "jupyterlab-participant.png").stat().st_size > 0

    # The same kind of link on the pool's own path opens the file in Notebook 7.
    with Browser() as other:  # past the cookie step, as a browser goes
        page = other.get(f"{live_stack.url}/p/default/spawn/tree/work/intro.ipynb", timeout=30)
    assert page.status_code == 200
    assert re.search(r"/user/[0-9a-f]+/notebooks/work/intro\.ipynb$", page.url), page.url
