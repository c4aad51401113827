"""The room view and the raised hand on the live stack, in headless Chromium
with real JupyterLab: a participant raises a hand with a text and gives a
name from the box beside the cull banner, and the organiser's room view
shows them, as text; a cell that sleeps shows as a busy kernel; a hand is
lowered from both sides."""

from pathlib import Path

import pytest

from pool.command import DEFAULT_COMMAND
from pool.models import Session
from tests.factories import JUPYTER_IMAGE, PoolFactory, notebook_folder
from tests.integration.test_accessibility import AXE
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser, run_cell, screenshot  # noqa: F401 (fixtures)
from tests.integration.test_pool_lifecycle import ready_count, wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

HOSTILE = '<img src=x onerror="window.pwned=1"><b>stuck</b> on cell 3 & </span>'


@pytest.fixture
def sleeper_folder(tmp_path):
    return notebook_folder(tmp_path / "workshop", "sleeper.ipynb", "import time\ntime.sleep(300)")


def test_a_raised_hand_and_a_busy_kernel_show_in_the_organisers_room_view(live_stack, admin_user, open_browser, sleeper_folder, screenshot):  # noqa: F811
    pool = PoolFactory(
        capacity=1,
        image=JUPYTER_IMAGE,
        command=DEFAULT_COMMAND,
        redirect_uri="/lab",
        mem_limit="256m",
        host_directories=f"{sleeper_folder}:/home/jovyan/work:rw",
    )
    live_stack.start(TMPNB_SPAWN_TIMEOUT=120)
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")

    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/spawn/lab/tree/work/sleeper.ipynb")
    participant.wait_for_url("**/user/**/lab/**")
    hand = participant.locator("#tmpnb-hand")
    hand.wait_for(timeout=120_000)

    # The participant lowers a hand they raised, from their side.
    hand.click()
    participant.locator("#tmpnb-hand-form button[type=submit]").click()
    participant.get_by_text("Your hand is raised").wait_for()
    assert hand.get_attribute("aria-pressed") == "true"
    hand.click()
    wait_until(lambda: hand.get_attribute("aria-pressed") == "false", timeout=10, what="the hand lowered")
    assert Session.objects.get().hand_raised_at is None

    # A name, and a hand with a text full of markup.
    participant.locator("#tmpnb-name").click()
    participant.fill("#tmpnb-name-input", "<i>Ada</i>")
    participant.locator("#tmpnb-name-form button[type=submit]").click()
    wait_until(lambda: participant.locator("#tmpnb-name").text_content() == "<i>Ada</i>", timeout=10, what="the name kept")
    hand.click()
    participant.fill("#tmpnb-hand-text", HOSTILE)
    participant.locator("#tmpnb-hand-form button[type=submit]").click()
    participant.get_by_text("Your hand is raised").wait_for()
    session = Session.objects.get()
    assert (session.display_name, session.hand_text) == ("<i>Ada</i>", HOSTILE)
    assert not participant.locator("#tmpnb-hand-form").is_visible() and not participant.locator("#tmpnb-name-form").is_visible()
    participant.locator("#tmpnb-name").click()  # the box with a form open, as axe-core checks it
    participant.add_script_tag(path=str(AXE))
    found = participant.evaluate("async () => (await axe.run('#tmpnb-help', {resultTypes: ['violations']})).violations")
    assert [v["id"] for v in found if v["impact"] in ("serious", "critical")] == []
    screenshot(participant, "participant-hand-raised")
    participant.locator("#tmpnb-name-form button[type=button]").click()  # cancel

    cell = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    try:
        run_cell(cell, participant)
    except Exception as error:  # another dialog took the clicks: say which
        screenshot(participant, "room-view-participant-cell-not-run")
        raise AssertionError(f"the cell did not run; dialogs: {participant.locator('.jp-Dialog').all_text_contents()}") from error

    organiser = log_in_as_organiser(open_browser("organiser"), live_stack.url, admin_user)
    organiser.goto(f"{live_stack.url}/admin/room/{pool.pk}/")
    raised = organiser.locator("#hands li.hand")
    raised.wait_for(timeout=20_000)
    assert raised.locator(".hand-text").text_content() == HOSTILE  # shown as the text it is
    assert raised.locator("b").text_content() == f"<i>Ada</i> ({session.visitor_tag})"
    assert organiser.locator("#tmpnb-room img, #tmpnb-room i").count() == 0
    assert organiser.evaluate("window.pwned") is None
    row = organiser.locator(f'#room tr.participant[data-label="{session.visitor_tag}"]')
    # The kernel runs the sleeping cell: the next refreshes say so.
    wait_until(lambda: row.locator("td.kernel").text_content() == "busy", timeout=60, what="the kernel shown busy")
    assert row.locator("td.notebooks").text_content() == "1"
    screenshot(organiser, "room-view-raised-hand")

    # The organiser lowers it; the participant's box hears it at its next question.
    raised.get_by_role("button", name="Lower").click()
    organiser.get_by_text("Lowered the hand of").wait_for()
    wait_until(lambda: organiser.locator("#hand-count").text_content() == "0", timeout=20, what="no hand raised")
    assert Session.objects.get().hand_raised_at is None
    wait_until(lambda: hand.get_attribute("aria-pressed") == "false", timeout=45, what="the participant's box told")
