"""Workshop materials against the real stack (proxy, gunicorn, worker and
beat, Docker): the worker prepares what an organiser asks for, every new
notebook holds its own copy, a deep link opens a notebook of the materials,
and bad input changes nothing. Rules in pool/services/materials.py, tested
directly in tests/pool/test_services_materials.py."""

import json
import re
from pathlib import Path

from pool.backends import docker as docker_backend
from pool.command import DEFAULT_COMMAND
from pool.models import Container, Event, Pool, Session
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import CHROMIUM, INTRO, open_browser  # noqa: F401 (a fixture)
from tests.integration.test_pool_lifecycle import wait_until
from tests.pool.test_materials_files import file_entry, make_tar, serving_git, write_tree
from tests.stack import Browser

MATERIALS = {
    "intro.ipynb": json.dumps(INTRO).encode(),
    "data/numbers.csv": b"a,b\n1,2\n",
    "images/dot.png": bytes(range(256)),  # bytes that are no text
}


def ready_with(version, count):
    return Container.objects.ready().filter(materials_version=version).count() == count


def test_two_participants_each_get_their_own_copy_from_a_git_repository_and_a_deep_link_opens_it(live_stack, tmp_path, open_browser):  # noqa: F811
    with serving_git(tmp_path, MATERIALS) as url:
        PoolFactory(
            capacity=3,
            ready_target=2,
            image=JUPYTER_IMAGE,
            command=DEFAULT_COMMAND,
            redirect_uri="/lab",
            mem_limit="256m",
            materials_source=url,
            materials_branch="workshop",
        )
        live_stack.start()
        wait_until(lambda: ready_with(1, 2), timeout=180, what="2 ready JupyterLab containers holding version 1")
    expected = MATERIALS | {"extra.md": b"# day two\n"}  # the branch's own file
    assert Pool.objects.get().materials_summary.startswith("4 file(s), ")

    participants = []
    for _ in range(2):
        browser = Browser()
        landed = browser.get(f"{live_stack.url}/spawn/lab/tree/intro.ipynb", timeout=60)
        assert landed.status_code == 200
        assert re.search(r"/user/[0-9a-f]+/lab/tree/intro\.ipynb\?token=", landed.url), landed.url
        participants.append(browser)
    first, second = (Session.objects.get(visitor=v).container for v in Session.objects.values_list("visitor", flat=True))

    def api(browser, container, path, method="GET", **kwargs):
        headers = {"Authorization": f"token {container.token}"}
        return browser.request(method, f"{live_stack.notebook_url}{container.base_path}{path}", headers=headers, timeout=30, **kwargs)

    for browser, container in zip(participants, (first, second)):
        for name, content in expected.items():
            got = api(browser, container, f"files/{name}")
            assert got.status_code == 200 and got.content == content, name
    # The notebook user owns the copy: saving over a file and adding one next to it work.
    saved = api(participants[0], first, "api/contents/data/numbers.csv", "PUT", json={"type": "file", "format": "text", "content": "mine\n"})
    assert saved.status_code == 200, saved.text
    assert api(participants[0], first, "api/contents/data/new.txt", "PUT", json={"type": "file", "format": "text", "content": "x"}).status_code == 201
    assert api(participants[0], first, "files/data/numbers.csv").content == b"mine\n"
    assert api(participants[1], second, "files/data/numbers.csv").content == MATERIALS["data/numbers.csv"]
    assert api(participants[1], second, "api/contents/data/new.txt").status_code == 404
    for browser in participants:
        browser.close()

    if Path(CHROMIUM).exists():  # the notebook itself opens, from the pool's own form of the link
        participant = open_browser("materials")
        participant.goto(f"{live_stack.url}/p/default/spawn/lab/tree/intro.ipynb")
        participant.wait_for_url("**/user/*/lab/tree/intro.ipynb**", timeout=120_000)  # maybe after the waiting room
        # The notebook's cell, as the materials hold it, shows once JupyterLab opened the file.
        cells = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .cm-content", has_text="print(6 * 7)")
        cells.first.wait_for(timeout=120_000)


def test_changing_the_materials_replaces_only_ready_containers_and_bad_input_changes_nothing(live_stack, tmp_path):
    write_tree(tmp_path / "day1", {"intro.txt": b"day one\n"})
    pool = PoolFactory(capacity=4, ready_target=2, materials_source=str(tmp_path / "day1"))
    live_stack.start(TMPNB_HEARTBEAT="0.5")
    wait_until(lambda: ready_with(1, 2), timeout=60, what="2 ready containers holding version 1")
    with Browser() as visitor:
        assert visitor.get(f"{live_stack.url}/", timeout=30).status_code == 200
    taken = Session.objects.get().container
    wait_until(lambda: ready_with(1, 2), timeout=60, what="the pool refilled")
    before = sorted(docker_backend.list_containers(), key=lambda c: c.name)

    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    Pool.objects.filter(pk=pool.pk).update(materials_source=str(tmp_path / "broken.zip"))
    wait_until(lambda: Pool.objects.get().materials_error, timeout=30, what="the broken archive refused")
    refusal = Event.objects.filter(kind=Event.Kind.MATERIALS).first()
    assert "broken.zip is not a readable zip or tar.gz archive" in refusal.message and refusal.message.endswith("keeping version 1")
    assert Pool.objects.get().materials_version == 1
    assert sorted(docker_backend.list_containers(), key=lambda c: c.name) == before  # nothing replaced

    make_tar(tmp_path / "day2.tar.gz", [file_entry("intro.txt", b"day two\n")])
    Pool.objects.filter(pk=pool.pk).update(materials_source=str(tmp_path / "day2.tar.gz"))
    wait_until(lambda: ready_with(2, 2), timeout=60, what="2 ready containers holding version 2")
    assert Pool.objects.get().materials_error == ""
    taken.refresh_from_db()
    assert (taken.state, taken.materials_version) == (Container.State.ASSIGNED, 1)
    running = {c.backend_id for c in docker_backend.list_containers()}
    assert taken.backend_id in running and len(running & {c.backend_id for c in before}) == 1
    scratch = tmp_path / "out"
    for container, text in [(taken, b"day one\n")] + [(c, b"day two\n") for c in Container.objects.ready()]:
        docker_backend.copy_out(container.backend_id, path="/intro.txt", destination=scratch / container.name)
        assert (scratch / container.name / "intro.txt").read_bytes() == text
