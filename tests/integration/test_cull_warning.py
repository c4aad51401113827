"""The warning before a cull, inside the participant's JupyterLab (the
default image's page carries deploy/images/cull-warning.js), in headless
Chromium against the live stack: the page asks the service how long is left
and shows it; nobody else is told."""

import re
from pathlib import Path

import pytest
import requests

from pool.command import DEFAULT_COMMAND
from pool.models import Session
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import CHROMIUM, open_browser  # noqa: F401 (a fixture)
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import Browser

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")


def test_a_participants_jupyterlab_shows_how_long_until_an_idle_cull(live_stack, open_browser):  # noqa: F811
    # Two idle minutes: shorter than the warning's five, so the page warns as soon as it asks.
    PoolFactory(capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", mem_limit="256m", cull_timeout=120)
    live_stack.start(TMPNB_SPAWN_TIMEOUT=120)
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")

    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/")
    participant.wait_for_url("**/user/**/lab**")
    banner = participant.locator("#tmpnb-cull-warning")
    banner.wait_for(timeout=120_000)
    assert re.fullmatch(
        r"This notebook will be shut down in about [12] minutes? because it has been idle; any activity keeps it open\. "
        r"Your files will be saved: the page it ends on offers them for download\. "
        r"To carry on from another device, open \S+/resume/ there and type your resume code [a-z]+(-[a-z]+)+-\d+\.",
        banner.locator("span").text_content(),
    ), banner.text_content()
    assert (banner.get_attribute("role"), banner.get_attribute("aria-live")) == ("status", "polite")
    participant.locator("#jp-main-dock-panel").wait_for(timeout=120_000)  # JupyterLab itself starts as ever
    assert banner.is_visible()  # and does not cover the banner
    session = Session.objects.active().select_related("container").get()  # warned before the cull, not after

    # The page asked on the notebook's origin, with the notebook's token.
    asked = f"{live_stack.notebook_url}/api/notebooks/{session.container.path_id}/time-left"
    assert requests.get(asked, headers={"Authorization": f"token {session.container.token}"}, timeout=10).json()["warn"] is True
    assert requests.get(asked, timeout=10).status_code == 404  # no token
    assert requests.get(asked, headers={"Authorization": "token guessed"}, timeout=10).status_code == 404
    with Browser() as other:
        other.get(f"{live_stack.url}/", timeout=30)  # another visitor (the only notebook is taken: they wait)
        assert other.get(f"{live_stack.url}/api/notebooks/{session.container.path_id}/time-left", timeout=10).status_code == 404

    participant.get_by_role("button", name="Dismiss").click()
    banner.wait_for(state="detached")
