"""Join live (pool/services/live.py, deploy/images/tmpnb_invitations.py) on the
live stack, in headless Chromium with real JupyterLab and jupyter-collaboration:
an organiser asks from the room view, the participant accepts in their banner,
the organiser opens the notebook by the one-time link (its page holds no
token), sees the participant's edit appear live, and once the participant
ends it the helper's requests are refused and their live copy stops."""

import time
from pathlib import Path

import pytest

from pool.command import DEFAULT_COMMAND
from pool.models import Event, Session
from pool.services import room
from tests.factories import JUPYTER_IMAGE, PoolFactory, notebook_folder
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser, screenshot  # noqa: F401 (fixtures)
from tests.integration.test_pool_lifecycle import ready_count, wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

NOTEBOOK = "tree/work/live.ipynb"


def test_a_helper_joins_live_sees_the_participants_edit_and_is_out_once_the_participant_ends_it(live_stack, admin_user, open_browser, tmp_path, screenshot):  # noqa: F811
    work = notebook_folder(tmp_path / "workshop", "live.ipynb", "x = 1")
    pool = PoolFactory(
        capacity=1,
        image=JUPYTER_IMAGE,
        command=DEFAULT_COMMAND,
        redirect_uri="/lab",
        mem_limit="384m",
        host_directories=f"{work}:/home/jovyan/work:rw",
        live_help=True,
    )
    live_stack.start(TMPNB_SPAWN_TIMEOUT=120)
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")

    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/spawn/lab/{NOTEBOOK}")
    participant.wait_for_url("**/user/**/lab/**")
    participant.locator("#tmpnb-hand").wait_for(timeout=120_000)
    session = Session.objects.get()
    room.set_display_name(session, "Ada")

    organiser = log_in_as_organiser(open_browser("organiser"), live_stack.url, admin_user)
    organiser.goto(f"{live_stack.url}/admin/room/{pool.pk}/")
    row = organiser.locator(f'#room tr.participant[data-label="{session.visitor_tag}"]')
    row.locator("button.live-ask").click()

    participant.reload()  # the banner asks every 30 s; a new page asks at once
    participant.locator("#tmpnb-live-text", has_text=f"{admin_user.username} asks to join your notebook live").wait_for(timeout=60_000)
    participant.locator("#tmpnb-live-accept").click()
    participant.locator("#tmpnb-live-text", has_text=f"{admin_user.username} is here live").wait_for(timeout=20_000)

    with organiser.context.expect_page() as opened:
        row.locator("button.live-join").click(timeout=20_000)  # the room refreshes itself
    helper = opened.value
    helper.wait_for_url("**/user/**/lab**", timeout=60_000)
    base = helper.url.split("lab", 1)[0]
    helper.goto(f"{base}lab/{NOTEBOOK}")  # the cookie the key gave opens the rest
    helper.locator(".jp-NotebookPanel .jp-CodeCell .cm-content", has_text="x = 1").wait_for(timeout=120_000)
    assert helper.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).token") == ""
    assert session.container.token not in helper.content()
    me = "fetch(location.pathname.split('lab')[0] + 'api/me', {headers: {Authorization: 'token ' + %s}}).then(r => r.json())"
    config_token = "JSON.parse(document.getElementById('jupyter-config-data').textContent).token"
    assert participant.evaluate(me % config_token)["identity"]["display_name"] == "Ada"  # as collaborators see them
    assert helper.evaluate(me % "''")["identity"]["display_name"] == f"Helper: {admin_user.username}"

    # The participant types; the helper sees it arrive without saving or reloading.
    editor = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .cm-content").first
    editor.click(timeout=60_000)
    participant.keyboard.press("End")
    participant.keyboard.type("  # typed by the participant")
    helper.locator(".jp-NotebookPanel .jp-CodeCell .cm-content", has_text="typed by the participant").wait_for(timeout=30_000)
    screenshot(helper, "live-help-helper")

    participant.locator("#tmpnb-live-end").click()
    participant.locator("#tmpnb-live").wait_for(state="hidden", timeout=20_000)
    status = helper.evaluate(f"fetch('{base}api/contents/work', {{credentials: 'include'}}).then(r => r.status)")
    assert status == 403
    # Its shared-document websocket was closed too: what the participant types now never reaches it.
    editor.click()
    participant.keyboard.press("End")
    participant.keyboard.type(" # after the end")
    time.sleep(5)
    assert "after the end" not in helper.locator(".jp-NotebookPanel .jp-CodeCell .cm-content").first.text_content()
    steps = [event.details["step"] for event in Event.objects.filter(kind=Event.Kind.LIVE, session=session).order_by("pk")]
    assert steps == ["asked", "accepted", "joined", "ended"]
