"""A helper's read-only look (pool/services/look.py) on the live stack, in
headless Chromium with real JupyterLab: a participant runs a cell whose
outputs carry script (HTML, SVG, printed text) and saves; the organiser opens
the notebook from the room view and sees its output as text, no script of it
runs (and the page's policy would refuse one), and the participant's banner
says a helper is looking; a cell run later shows at the next Refresh."""

from pathlib import Path

import pytest

from pool.command import DEFAULT_COMMAND
from pool.models import Event, Session
from tests.factories import JUPYTER_IMAGE, PoolFactory, notebook_folder
from tests.integration.test_accessibility import AXE
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser, run_cell, screenshot  # noqa: F401 (fixtures)
from tests.integration.test_pool_lifecycle import ready_count, wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

SOURCE = """from IPython.display import HTML, SVG, display
display(HTML("<script>document.title = 'pwned'; window.pwned = 1</script><b id='bold'>bold</b>"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned = 2"><script>window.pwned = 3</script></svg>'))
print("<script>window.pwned = 4</script>the answer is", 6 * 7)"""


@pytest.fixture
def work_folder(tmp_path):
    return notebook_folder(tmp_path / "workshop", "look.ipynb", SOURCE)


def test_a_helper_sees_a_cell_the_participant_ran_read_only_and_no_script_of_it_runs(live_stack, admin_user, open_browser, work_folder, screenshot):  # noqa: F811
    pool = PoolFactory(
        capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", mem_limit="256m", host_directories=f"{work_folder}:/home/jovyan/work:rw"
    )
    live_stack.start(TMPNB_SPAWN_TIMEOUT=120)
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")

    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/spawn/lab/tree/work/look.ipynb")
    participant.wait_for_url("**/user/**/lab/**")
    participant.locator("#tmpnb-hand").wait_for(timeout=120_000)  # the banner's script asks the service
    cell = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    run_cell(cell, participant)
    cell.get_by_text("the answer is 42").wait_for(timeout=60_000)
    participant.keyboard.press("Control+s")
    wait_until(lambda: "the answer is 42" in (work_folder / "look.ipynb").read_text(), timeout=30, what="the notebook saved with its outputs")
    session = Session.objects.get()

    organiser = log_in_as_organiser(open_browser("organiser"), live_stack.url, admin_user)
    organiser.goto(f"{live_stack.url}/admin/room/{pool.pk}/")
    organiser.locator(f'#room tr.participant[data-label="{session.visitor_tag}"] a.look').click()
    organiser.get_by_role("link", name="work/look.ipynb").click()  # open in JupyterLab now
    output = organiser.locator("#tmpnb-look pre.output", has_text="the answer is 42")
    output.wait_for(timeout=20_000)
    assert output.text_content() == "<script>window.pwned = 4</script>the answer is 42\n"  # as the text it is
    assert organiser.locator("#tmpnb-look pre.source").first.text_content().startswith("[1] from IPython.display")
    notes = organiser.locator("#tmpnb-look p.note").all_text_contents()
    assert notes == ["Also as text/html: not shown here.", "Also as image/svg+xml: not shown here."]  # beside their plain text
    assert organiser.locator("#tmpnb-look script, #tmpnb-look svg, #bold").count() == 0
    assert organiser.evaluate("window.pwned") is None and organiser.title().startswith("Looking at")
    # The second wall: the page's policy refuses a script, even one put there.
    organiser.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.breached = 1'; document.body.append(s); }")
    assert organiser.evaluate("window.breached") is None
    assert Event.objects.filter(kind=Event.Kind.LOOK, session=session, actor=admin_user.username).count() == 2  # the folder, then the notebook
    screenshot(organiser, "look-read-only")

    # While the page is open, the participant's banner says a helper is looking (it asks every 30 s).
    banner = participant.locator("#tmpnb-cull-warning")
    banner.get_by_text("A helper is looking at your notebooks").wait_for(timeout=45_000)
    screenshot(participant, "look-participant-told")

    # The participant runs another cell and saves; the helper's Refresh shows it.
    second = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").nth(1)
    second.locator(".cm-content").click()
    participant.keyboard.type('print("second", 2 * 21)')
    run_cell(second, participant)
    second.get_by_text("second 42").wait_for(timeout=60_000)
    participant.keyboard.press("Control+s")
    wait_until(lambda: "second 42" in (work_folder / "look.ipynb").read_text(), timeout=30, what="the second cell saved")
    organiser.locator("#look-refresh").click()
    organiser.locator("#tmpnb-look pre.output", has_text="second 42").wait_for(timeout=20_000)
    assert Event.objects.filter(kind=Event.Kind.LOOK, session=session).count() == 3

    # axe-core, evaluated by the browser's devtools (the page would refuse it as a script).
    organiser.evaluate(AXE.read_text() + "\n;null")
    found = organiser.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    assert [(v["id"], v["help"]) for v in found if v["impact"] in ("serious", "critical")] == []
