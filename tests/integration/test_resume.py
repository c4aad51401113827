"""A resume code on the real stack: a participant reads theirs on /resume/,
and a second browser with no cookie of theirs types it and lands in the same
JupyterLab; after a kill, the same code brings the saved work back in a new one."""

import re
from urllib.parse import parse_qs, urlsplit

import requests

from pool.models import Container, Event, Session, Snapshot
from tests.integration.test_pool_lifecycle import wait_until
from tests.integration.test_snapshots import STACK, files_of, has_file, jupyter_pool, save_work, takes_a_notebook
from tests.stack import Browser


def read_code(browser, stack):
    page = browser.get(f"{stack.url}/resume/", timeout=10)
    assert page.status_code == 200
    return re.search(r'id="resume-code">([^<]+)<', page.text).group(1)


def type_code(browser, stack, code):
    """The other device's form: its page (visitor and CSRF cookies), then the POST; returns where it leads."""
    page = browser.get(f"{stack.url}/resume/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = browser.post(f"{stack.url}/resume/", data={"code": code, "csrfmiddlewaretoken": token}, allow_redirects=False, timeout=60)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


def notebook_of(location):
    """The container a notebook URL with its token leads to."""
    url = urlsplit(location)
    container = Container.objects.get(path_id=re.match(r"/user/([^/]+)/", url.path).group(1))
    assert parse_qs(url.query)["token"] == [container.token]
    return container


def test_a_code_typed_in_another_browser_opens_the_same_notebook_and_after_a_kill_its_saved_work(live_stack, admin_client, log_dir):
    jupyter_pool()
    live_stack.start(**STACK)
    first, container = takes_a_notebook(live_stack)
    saved = save_work(live_stack, container)
    code = read_code(first, live_stack)

    second = Browser()  # no cookie of the first
    location = type_code(second, live_stack, code.upper().replace("-", " "))
    assert notebook_of(location) == container
    landed = second.get(location, timeout=60)
    assert landed.status_code == 200 and "<title>JupyterLab</title>" in landed.text
    assert files_of(live_stack, container, "notes.txt") == saved["notes.txt"]
    # The first browser keeps its notebook; the second took none.
    assert first.get(f"{live_stack.url}/", allow_redirects=False, timeout=10).headers["Location"].startswith(location.split("?")[0])
    assert Session.objects.active().count() == 1

    session = Session.objects.get(container=container)
    admin_client.post("/admin/pool/session/", {"action": "kill", "_selected_action": [session.pk]})
    wait_until(lambda: Snapshot.objects.filter(session=session, taken_at__isnull=False).exists(), timeout=120, what="the work saved")
    wait_until(lambda: Container.objects.ready().exists(), timeout=180, what="a ready JupyterLab for the restart")
    again = notebook_of(type_code(second, live_stack, code))
    assert again != container
    assert second.get(f"{live_stack.url}/", allow_redirects=False, timeout=10).headers["Location"].startswith(f"{live_stack.notebook_url}{again.base_path}")
    wait_until(lambda: all(has_file(live_stack, again, name) for name in saved), timeout=60, what="the files put back")
    assert {name: files_of(live_stack, again, name) for name in saved} == saved
    assert Event.objects.filter(kind=Event.Kind.RESUME).count() == 2
    assert not any(code in event.message or code in str(event.details) for event in Event.objects.all())
    assert requests.get(f"{live_stack.notebook_url}/resume/", timeout=10).status_code == 404  # not on the notebooks' origin
    # No log of the stack's (proxy, web, worker, beat, Redis) holds it: it travels in POST bodies only.
    logs = [path for path in log_dir.rglob("*") if path.is_file()]
    assert logs and not any(code in path.read_text(errors="replace") for path in logs)
