"""Every participant page, the organiser's dashboard and room view, checked in Chromium
with axe-core (deploy/a11y, installed by deploy/test): no serious or critical
violation. And the waiting room's live updates as a screen reader or a
keyboard user meets them.

The pages are served by Django's live server from rows the test makes: the
markup is what a visitor gets, without Docker or the proxy behind it."""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError

from pool.models import Container, Session, Snapshot
from pool.services import live, room
from tests.factories import ContainerFactory, PoolFactory
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser  # noqa: F401 (a fixture)
from tests.stack import ROOT

AXE = ROOT / "deploy" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
LANGUAGES = ["en", "fr", "de", "es", "pt", "it", "ja", "zh-hans"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium"),
    pytest.mark.skipif(not AXE.exists(), reason="deploy/test installs axe-core (deploy/a11y)"),
]

RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" ")),
  }));
}"""


def run_axe(page):
    """axe-core's serious and critical findings on the page as it stands."""
    page.add_script_tag(path=str(AXE))
    return [v for v in page.evaluate(RUN_AXE) if v["impact"] in ("serious", "critical")]


def serious_violations(page):
    """run_axe once the page has loaded."""
    for _ in range(5):
        try:
            page.wait_for_load_state("load")
            return run_axe(page)
        except PlaywrightError as error:
            # The reconnecting page reloads itself by design: check the new one.
            if "context was destroyed" not in str(error) and "navigat" not in str(error):
                raise
    raise AssertionError(f"{page.url} never held still long enough to be checked")


def check(page, url, status, checked, name):
    response = page.goto(url)
    assert response.status == status, f"{url} answered {response.status}"
    checked[f"{name} [{page.locator('html').get_attribute('lang')}]"] = serious_violations(page)


@pytest.fixture
def served(live_server, transactional_db):
    return live_server.url


def test_no_participant_page_nor_the_dashboard_has_a_serious_accessibility_violation(served, open_browser, admin_user, settings):  # noqa: F811
    # Notebooks at <id>.localhost, which Chromium resolves to this live server, as any browser does.
    settings.TMPNB_NOTEBOOK_DOMAIN = "localhost"
    pool = PoolFactory(capacity=1, live_help=True)  # the room view's live-help column too
    ContainerFactory(pool=pool)
    ContainerFactory(pool=PoolFactory(name="python"))
    ContainerFactory(pool=PoolFactory(name="workshop", access_code="tulip-42"))
    ended = ContainerFactory(pool=pool, state=Container.State.GONE)
    checked = {}

    holder = open_browser("holder")
    check(holder, f"{served}/", 200, checked, "reconnecting")  # into the notebook, whose route is "being restored"
    assert "/user/" in holder.url and holder.locator("h1").text_content() == "Reconnecting to your notebook server"
    check(holder, f"{served}/p/python/", 409, checked, "held elsewhere")
    # An earlier notebook of theirs, ended with its work saved (a file left out): the offer to download and start again.
    saved = ContainerFactory(pool=pool, state=Container.State.GONE)
    earlier = Session.objects.create(container=saved, visitor=Session.objects.get().visitor, ended_at=timezone.now(), end_reason=Session.EndReason.CULLED_IDLE)
    Snapshot.objects.create(
        session=earlier,
        taken_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=48),
        file_name="work.zip",
        file_count=2,
        left_out=[{"path": "data/big.csv", "size": 300_000_000}],
    )
    check(holder, f"{served}/user/{saved.path_id}/lab", 410, checked, "ended, work saved")
    assert holder.locator("#download-work").is_visible() and holder.locator("#restore-work").is_visible()
    check(holder, f"{served}/resume/", 200, checked, "resume code")
    assert holder.locator("#resume-code").is_visible()
    visitor = open_browser("visitor")
    for language in LANGUAGES:
        visitor.context.set_extra_http_headers({"Accept-Language": language})
        check(visitor, f"{served}/", 200, checked, "waiting room")  # the only notebook is taken
        assert visitor.locator("#position").text_content() == "1"
        assert visitor.locator("html").get_attribute("lang") == language
        check(visitor, f"{served}/user/{ended.path_id}/tree", 410, checked, "ended")
        check(visitor, f"{served}/user/nosuch/", 404, checked, "ended, unknown server")
        check(visitor, f"{served}/p/workshop/", 200, checked, "access code")
        visitor.fill("#code", "tulip-41")
        with visitor.expect_navigation():
            visitor.click("button[type=submit]")
        assert visitor.locator("#code-message").is_visible()
        checked[f"wrong access code [{visitor.locator('html').get_attribute('lang')}]"] = serious_violations(visitor)
        check(visitor, f"{served}/resume/", 200, checked, "resume form")
        visitor.fill("#code", "calm-otter-lantern-0000")
        with visitor.expect_navigation():
            visitor.click("main button[type=submit]")
        assert visitor.locator("#resume-message").is_visible()
        checked[f"wrong resume code [{visitor.locator('html').get_attribute('lang')}]"] = serious_violations(visitor)
    # The cookie step's page, held still: its continuation answers 204 (no
    # content), which leaves the browser on the page instead of moving on.
    newcomer = open_browser("newcomer")
    newcomer.route("**/*tmpnb_cookie_check=*", lambda route: route.fulfill(status=204))
    with newcomer.expect_request("**/*tmpnb_cookie_check=*"):  # it does continue by itself
        assert newcomer.goto(f"{served}/", wait_until="commit").status == 200
    newcomer.wait_for_selector("#continue")
    # Not serious_violations: to Playwright, the cancelled continuation keeps
    # the page loading for ever.
    checked["cookie step [en]"] = run_axe(newcomer)
    check(open_browser("no cookies"), f"{served}/?tmpnb_cookie_check={int(time.time())}", 200, checked, "cookies needed")
    check(open_browser("previewer", user_agent="Slackbot-LinkExpanding 1.0"), f"{served}/", 200, checked, "link preview")
    settings.TMPNB_MAX_PER_IP = 1  # the holder's address already holds one
    # The newcomer keeps the cookie its step gave: refused at once, not after a step of its own.
    check(newcomer, f"{served}/", 429, checked, "refused")

    organiser = log_in_as_organiser(open_browser("organiser"), served, admin_user)
    checked["dashboard"] = serious_violations(organiser)
    participant = Session.objects.active().get(container__pool=pool)
    room.raise_hand(participant, "stuck on cell 3")
    live.ask(participant, helper=admin_user.get_username())
    organiser.goto(f"{served}/admin/room/{pool.pk}/")
    organiser.locator("#hands li.hand").wait_for()  # the rows, filled in by the page's first refresh
    organiser.locator("#room td.live .live-end").wait_for()  # the ask, and its Withdraw button
    checked["room view"] = serious_violations(organiser)

    assert len(checked) == 4 + 7 * len(LANGUAGES) + 3 + 3
    print(f"\naxe-core checked {len(checked)} pages: {', '.join(checked)}")
    failing = {page: found for page, found in checked.items() if found}
    assert not failing, "\n".join(f"{page}: {found}" for page, found in failing.items())


@pytest.fixture
def waiting_visitor(served, open_browser):  # noqa: F811
    """A visitor in the waiting room (the only notebook is held by someone else)."""
    pool = PoolFactory(capacity=1, cull_timeout=3600, cull_max=4 * 3600)
    ContainerFactory(pool=pool)
    open_browser("holder").goto(f"{served}/")
    page = open_browser("waiting")
    page.goto(f"{served}/")
    assert page.locator("#position").text_content() == "1"
    return pool, page


def polls(page, count):
    for _ in range(count):
        with page.expect_response("**/waiting/status?*"):
            pass


def test_the_waiting_room_announces_changes_politely_and_not_every_poll(waiting_visitor):
    pool, page = waiting_visitor
    region = page.locator("#progress")
    assert region.get_attribute("role") == "status" and region.get_attribute("aria-live") == "polite"
    # What a screen reader hears: the region's changes, counted as the DOM sees them.
    page.evaluate("""() => {
      window.changes = [];
      new MutationObserver(records => records.forEach(r => window.changes.push(r.target.id || r.target.parentNode.id)))
        .observe(document.getElementById("progress"), {subtree: true, childList: true, characterData: true});
    }""")
    assert page.locator("#estimate").text_content() == "about an hour"
    polls(page, 2)
    assert page.evaluate("window.changes") == []  # polls that change nothing say nothing

    # The holder has been idle for 45 minutes: their notebook is culled in 15,
    # which stays "about 15 minutes" for minutes (10 sat on a rounding edge).
    Session.objects.filter(container__pool=pool).update(last_activity=timezone.now() - timedelta(minutes=45))
    page.wait_for_function("document.getElementById('estimate').textContent === 'about 15 minutes'")
    polls(page, 2)
    assert page.evaluate("window.changes") == ["estimate"]


def test_a_keyboard_alone_changes_the_language(waiting_visitor):
    _, page = waiting_visitor
    # Past the page's own fields (the optional name, its button), in order.
    focused = []
    while len(focused) < 5 and (not focused or focused[-1] != "language"):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert focused == ["display-name", "Save", "language"]
    page.keyboard.press("ArrowDown")  # English, then French
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Change"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("h1").text_content().strip() == "Votre notebook arrive"
    assert page.locator("#position").text_content() == "1"  # still first in the queue


def test_the_waiting_rooms_motion_stops_for_those_who_ask_for_less(waiting_visitor):
    _, page = waiting_visitor
    animation = "getComputedStyle(document.querySelector('.busy')).animationName"
    assert page.evaluate(animation) == "turn"
    page.emulate_media(reduced_motion="reduce")
    assert page.evaluate(animation) == "none"
