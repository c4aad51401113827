"""Nobody drains the pool by accident, against the real stack (proxy,
gunicorn, worker and beat, Docker): scripts without a cookie jar, HEAD and
link previews take no notebook; a participant in Chromium still lands in one
click; the access code. Rules in pool/visitors.py, rows-only tests in
tests/pool/test_visitors.py."""

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from pool.backends import docker as docker_backend
from pool.models import Container, Event, Pool, Session
from tests.factories import PoolFactory, continue_url
from tests.integration.test_browser import CHROMIUM, open_browser  # noqa: F401 (a fixture)
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.pool.test_visitors import PREVIEW_AGENTS
from tests.stack import Browser

READY = 3
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")
CODE = "tulip-42"


@pytest.fixture
def guarded(live_stack):
    """A pool with room to spawn: any notebook taken would start another container."""
    PoolFactory(capacity=READY * 2, ready_target=READY)
    # Every request here comes from 127.0.0.1: the spawn rate would refuse them first.
    live_stack.start(TMPNB_SPAWN_RATE="100000/m", TMPNB_API_TOKEN="api-secret", GUNICORN_CMD_ARGS="--access-logfile -")
    wait_until(lambda: ready_count() == READY, what=f"{READY} ready containers")
    return live_stack


def assert_nothing_taken(live_stack):
    # A claim would have queued a refill at once: the worker's next heartbeats show it.
    live_stack.wait_for_heartbeats()
    assert Session.objects.count() == 0
    assert Container.objects.ready().count() == Container.objects.count() == READY
    assert len(docker_backend.list_containers()) == READY


def test_a_thousand_cookieless_requests_heads_and_curls_take_nothing(guarded):
    url = guarded.url
    paths = ["/", "/spawn/", "/spawn/notebooks/intro.ipynb", "/p/default/", "/p/default/spawn/data/x.csv"]

    def script(n):
        # requests.get follows redirects and keeps cookies along a chain, as many tools do.
        page = requests.get(f"{url}{paths[n % len(paths)]}", timeout=30)
        assert page.status_code == 200 and "Opening your notebook" in page.text
        if n % 2:  # one that also follows the page's link, still without a cookie jar
            again = requests.get(urljoin(page.url, continue_url(page.text)), timeout=30)
            assert again.status_code == 200 and "did not keep our cookie" in again.text
        head = requests.head(f"{url}{paths[n % len(paths)]}", timeout=30)
        assert head.status_code == 200
        return n

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as executor:
        assert len(list(executor.map(script, range(1000)))) == 1000
    print(f"\n1,000 cookieless visits (2,500 requests) answered in {time.perf_counter() - started:.1f} s")
    # HEAD with the visitor cookie, as a browser that has it might send.
    with requests.Session() as holder:
        holder.get(f"{url}/", timeout=30)
        assert holder.head(f"{url}/", timeout=30).status_code == 200
    for path in paths:  # curl, following redirects (-L)
        curl = subprocess.run(["curl", "-sSL", "-o", "/dev/null", "-w", "%{http_code}", f"{url}{path}"], capture_output=True, text=True, timeout=30)
        assert curl.stdout == "200", curl.stderr
        assert subprocess.run(["curl", "-sSIL", f"{url}{path}"], capture_output=True, timeout=30).returncode == 0
    assert_nothing_taken(guarded)


def test_link_previews_with_and_without_cookies_take_nothing_and_unfurl(guarded):
    for agent in PREVIEW_AGENTS:
        for path in ("/", "/spawn/notebooks/intro.ipynb"):
            bare = requests.get(f"{guarded.url}{path}", headers={"User-Agent": agent}, timeout=30)
            assert bare.status_code == 200
            assert '<meta property="og:title" content="Jupyter notebooks">' in bare.text
            assert f'<meta property="og:url" content="{guarded.url}{path}">' in bare.text
            # Holding a visitor cookie, and going on from every page as a browser does.
            with Browser() as previewer:
                previewer.cookies.update(requests.get(f"{guarded.url}/", timeout=30).cookies)
                assert "tmpnb_visitor" in previewer.cookies
                assert "og:description" in previewer.get(f"{guarded.url}{path}", headers={"User-Agent": agent}, timeout=30).text
    assert_nothing_taken(guarded)


@needs_chromium
@pytest.mark.parametrize("javascript", [True, False])
def test_a_participant_in_chromium_lands_in_one_click(guarded, open_browser, javascript):  # noqa: F811
    participant = open_browser(f"participant-{javascript}", java_script_enabled=javascript)
    participant.goto(f"{guarded.url}/spawn/notebooks/intro.ipynb")
    participant.wait_for_url("**/user/**")
    session = Session.objects.get()
    assert participant.url.startswith(f"{guarded.notebook_url}{session.container.base_path}notebooks/intro.ipynb")
    participant.goto(f"{guarded.url}/")  # a reload: the same notebook
    participant.wait_for_url("**/user/**")
    assert Session.objects.get() == session


@needs_chromium
def test_the_access_code_lets_the_right_people_in_and_stays_out_of_logs(guarded, open_browser):  # noqa: F811
    Pool.objects.update(access_code=CODE)
    participant = open_browser("coded")
    participant.goto(f"{guarded.url}/")
    participant.wait_for_selector("input[name=code]")
    participant.fill("input[name=code]", "tulip-41")
    participant.click("button[type=submit]")
    assert "That code is not right" in participant.text_content("#code-message")
    assert Session.objects.count() == 0

    participant.fill("input[name=code]", CODE)
    participant.click("button[type=submit]")
    participant.wait_for_url("**/user/**")
    assert participant.text_content("body").strip().startswith("tree /user/")
    session = Session.objects.get()
    participant.goto(f"{guarded.url}/")  # a reload does not ask again
    participant.wait_for_url("**/user/**")
    assert Session.objects.get() == session

    # A script without the code gets the form, and takes nothing.
    with Browser() as script:
        assert 'name="code"' in script.get(f"{guarded.url}/", timeout=30).text
    assert Session.objects.count() == 1
    # The API keeps its token.
    api = requests.post(f"{guarded.url}/api/spawn", headers={"Authorization": "token api-secret"}, timeout=30)
    assert api.status_code == 201
    # The code is in no log and no event; the access log shows the form's POSTs.
    guarded.stop()
    logs = "".join(process.log_path.read_text(errors="replace") for process in (guarded.web, guarded.worker, guarded.beat))
    assert re.search(r'"POST /(\?\S*)? HTTP/1\.1" 403', logs) and re.search(r'"POST /(\?\S*)? HTTP/1\.1" 303', logs)
    assert CODE not in logs and "tulip" not in logs
    assert not [e for e in Event.objects.all() if "tulip" in f"{e.message} {e.details} {e.actor}"]


def test_failed_admin_logins_are_locked_out_after_n_attempts(live_stack, admin_user):
    live_stack.start(worker=False, beat=False, TMPNB_LOGIN_FAILURE_LIMIT=3)
    login = f"{live_stack.url}/admin/login/?next=/admin/"

    def attempt(password):
        with requests.Session() as browser:
            browser.get(login, timeout=30)  # the CSRF cookie
            form = {"username": admin_user.username, "password": password, "csrfmiddlewaretoken": browser.cookies["tmpnb_csrf"]}
            return browser.post(login, data=form, headers={"Referer": login}, allow_redirects=False, timeout=30)

    assert [attempt("wrong").status_code for _ in range(3)] == [200, 200, 429]
    locked = attempt("password")  # even the right password, for a while
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    event = Event.objects.get(kind=Event.Kind.LOCKOUT)
    assert event.details == {"username": admin_user.username, "address": "127.0.0.1"}
