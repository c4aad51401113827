"""A participant who controls their whole container (tests/integration/
participant_server.py replaces Jupyter with a server that records what it
receives) learns nobody else's credentials and cannot drive the service's
pages, in headless Chromium against the real stack: notebooks on the
proxy's notebook port (the default), and each on <id>.<domain> (with a
domain, which Chromium resolves to loopback here)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from pool.models import Container, Session
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser  # noqa: F401 (a fixture)
from tests.integration.test_pool_lifecycle import ready_count, wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

DOMAIN = "nb.test"
SERVER = Path(__file__).with_name("participant_server.py")


@pytest.fixture
def participant_folder(tmp_path_factory):
    """A folder the container's user can read, holding the participant's server."""
    folder = tmp_path_factory.mktemp("participant")
    shutil.copy(SERVER, folder / SERVER.name)
    folder.chmod(0o755)
    (folder / SERVER.name).chmod(0o644)
    return folder


@pytest.fixture(params=["notebook port", "notebook domain"])
def stack_and_origins(request, live_stack):
    """(the stack, the service's URL, a notebook's URL from its /user/... path, Chromium's extra flags)"""
    if request.param == "notebook port":
        return live_stack, live_stack.url, lambda path: f"{live_stack.notebook_url}{path}", []
    return origin_each(request.getfixturevalue("stack_with_own_proxy"))


def origin_each(stack_with_own_proxy):
    """stack_and_origins's for the stack behind a proxy that serves each notebook on <id>.<domain>."""
    stack = stack_with_own_proxy(notebook_domain=DOMAIN)
    port = stack.proxy.public_port

    def notebook(path):
        return f"http://{re.match(r'/user/([0-9a-f]+)/', path).group(1)}.{DOMAIN}:{port}{path}"

    return stack, f"http://{DOMAIN}:{port}", notebook, [f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1, MAP {DOMAIN} 127.0.0.1"]


def received_by(container):
    """What the participant's server recorded: one dict per request it got."""
    return received_from(subprocess.run(["docker", "logs", container.backend_id], capture_output=True, text=True, timeout=30, check=True).stdout)


def received_from(logs):
    """The requests a participant's server recorded in its log ``logs``."""
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


def test_a_participant_receives_nobody_elses_cookies_and_cannot_reach_past_their_origin(
    stack_and_origins,
    participant_folder,
    admin_user,
    open_browser,  # noqa: F811
):
    stack, service, notebook, flags = stack_and_origins
    participants_cannot_reach_past_their_origins(stack, service, notebook, flags, participant_folder, admin_user, open_browser, logs=received_by)


def participants_cannot_reach_past_their_origins(stack, service, notebook, flags, participant_folder, admin_user, browser_named, *, logs, start_env=None):
    """Three participants' servers, an attacker, a victim and the organiser in
    Chromium: nobody's cookie reaches the attacker's server, and its page
    reaches neither the service's pages nor (with a domain) another notebook.
    ``logs(container)`` is what a participant's server recorded; returns the
    attacker's and the victim's containers."""
    command = "python3 /srv/participant_server.py {port} {base_path}"
    PoolFactory(capacity=3, image=JUPYTER_IMAGE, command=command, redirect_uri="/tree", host_directories=f"{participant_folder}:/srv:ro")
    stack.start(**(start_env or {}))
    wait_until(lambda: ready_count() == 3, timeout=60, what="3 participants' servers")

    # The attacker, A, and a victim, B, each land in their own notebook; the organiser is logged in.
    attacker, victim = browser_named("attacker", args=flags), browser_named("victim", args=flags)
    for browser in (attacker, victim):
        browser.goto(f"{service}/")
        browser.wait_for_url("**/user/**")
    a, b = (Container.objects.get(path_id=re.search(r"/user/([0-9a-f]+)/", page.url).group(1)) for page in (attacker, victim))
    assert attacker.url.startswith(notebook(a.base_path)) and victim.url.startswith(notebook(b.base_path))
    assert Session.objects.active().filter(container__in=[a, b]).count() == 2
    organiser = log_in_as_organiser(browser_named("organiser", args=flags), service, admin_user)

    # Both open A's link: A's page tries the organiser's pages, the landing page and B's notebook.
    attack = f"{notebook(a.base_path)}attack?service={service}&other={notebook(b.base_path)}tree"
    for who, page in (("organiser", organiser), ("victim", victim)):
        page.goto(attack)
        page.wait_for_function("document.title === 'done'", timeout=30_000)
        results = json.loads(page.text_content("body"))
        for name in ("admin", "admin_window", "landing", "landing_here"):
            assert results[name].startswith("blocked"), (who, name, results[name])
        if django_settings.TMPNB_NOTEBOOK_DOMAIN:
            assert results["other_notebook"].startswith("blocked"), (who, results)
        else:  # the trade-off of one port for every notebook (README "Safety")
            assert results["other_notebook"].startswith("read"), (who, results)

    # A's server saw both visits, and none of their cookies.
    requests_seen = logs(a)
    assert len([r for r in requests_seen if r["path"].startswith(f"{a.base_path}attack")]) == 2
    theirs = {c["value"] for page in (organiser, victim) for c in page.context.cookies() if c["name"].startswith("tmpnb_")}
    assert any(c["name"] == "tmpnb_session" for c in organiser.context.cookies())
    assert any(c["name"] == "tmpnb_visitor" for c in victim.context.cookies())
    for seen in requests_seen:
        cookie = next((value for name, value in seen["headers"].items() if name.lower() == "cookie"), "")
        assert "tmpnb_" not in cookie and not any(value in cookie for value in theirs), seen
    # A's answers set none of the service's cookies, and no cookie for other hosts; its own, yes.
    for page in (organiser, victim):
        assert not [c for c in page.context.cookies() if c["value"] == "forged"], page.context.cookies()
        assert [c for c in page.context.cookies() if c["name"] == "own"]
    # The organiser's session still works.
    organiser.goto(f"{service}/admin/")
    organiser.wait_for_selector("#tmpnb-dashboard")
    return a, b
