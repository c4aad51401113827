"""Broadcasting on the real stack, with the tiny image run as an unprivileged
notebook user: `manage.py broadcast` (what `deploy/manage broadcast` runs)
puts a folder into every live notebook through the worker, owned by the
notebook's user, byte for byte, never over a participant's own; a notebook
started later has it too."""

import io
import secrets
import tarfile

import docker

from pool.command import DEFAULT_COMMAND
from pool.models import Container, Event, Session
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import open_browser  # noqa: F401 (a fixture)
from tests.integration.test_collect_work import ROOT_FOLDER, manage, participants_land, unprivileged_pool, write_as_notebook_user
from tests.integration.test_pool_lifecycle import ready_count, visit, wait_until


def read_back(client, container, path):
    """(bytes, "uid:gid") of ``path`` in the notebook's root folder, as Docker finds it."""
    stream, _ = client.api.get_archive(container.backend_id, f"{ROOT_FOLDER}/{path}")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        return tar.extractfile(member).read(), f"{member.uid}:{member.gid}"


def test_a_broadcast_folder_reaches_every_notebook_as_its_user_and_never_over_their_files(live_stack, tmp_path):
    unprivileged_pool(capacity=3)
    live_stack.start()
    first, *others = participants_land(live_stack, 3)
    write_as_notebook_user(first.container, "week2/mine.txt", b"my own week 2\n")
    folder = tmp_path / "week2"
    (folder / "data").mkdir(parents=True)
    sent = {"task.md": b"# Week 2\n", "data/numbers.bin": secrets.token_bytes(200_000)}
    for path, data in sent.items():
        (folder / path).write_bytes(data)

    said = manage(live_stack, "broadcast", "default", str(folder))
    assert said == "Pool default: week2 reached 3 notebook(s), 0 failed; 1 held that name and got it as '(from organiser)'.\n"
    client = docker.from_env()
    try:
        for session, where in [(first, "week2 (from organiser)"), *((other, "week2") for other in others)]:
            for path, data in sent.items():
                assert read_back(client, session.container, f"{where}/{path}") == (data, "1000:100"), (session.visitor_tag, path)
        assert read_back(client, first.container, "week2/mine.txt") == (b"my own week 2\n", "1000:100")
        # The notebook's user can change what it was sent (its folder is theirs too).
        edited = client.containers.get(others[0].container.backend_id).exec_run(["sh", "-c", f"echo mine >> '{ROOT_FOLDER}/week2/task.md'"], user="1000:100")
        assert edited.exit_code == 0

        # A participant arriving later gets a notebook started after the broadcast, which holds it.
        manage(live_stack, "resize_pool", "4")
        wait_until(lambda: Container.objects.ready().exists(), timeout=60, what="a fourth notebook")
        response, _ = visit(live_stack.url)
        assert response.status_code == 200 and "/user/" in response.url
        later = Session.objects.active().select_related("container").order_by("-started_at").first()
        assert later not in (first, *others)
        for path, data in sent.items():
            assert read_back(client, later.container, f"week2/{path}") == (data, "1000:100")
    finally:
        client.close()
    event = Event.objects.get(kind=Event.Kind.BROADCAST)
    assert event.message.startswith("manage.py sent the folder week2 to 3 notebook(s) of pool default: 3 reached, none failed")


def test_a_participant_in_jupyterlab_sees_a_broadcast_arrive_and_lists_it_without_a_reload(live_stack, open_browser, tmp_path):  # noqa: F811
    PoolFactory(capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", mem_limit="512m")
    live_stack.start(TMPNB_SPAWN_TIMEOUT=120)
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")
    participant = open_browser("participant")
    participant.goto(f"{live_stack.url}/")
    participant.wait_for_url("**/user/**/lab**")
    listing = participant.locator(".jp-DirListing-content")
    listing.wait_for(timeout=120_000)
    participant.locator("#tmpnb-help").wait_for(timeout=60_000)  # the banner's script has had its first answer
    handout = tmp_path / "handout-week3.md"
    handout.write_bytes(b"# Week 3\n")

    assert manage(live_stack, "broadcast", "default", str(handout)).startswith("Pool default: handout-week3.md reached 1 notebook(s), 0 failed")
    # The script asks every 30 s: by then the line is there, read out, and
    # the file browser lists the file (refreshed by the script, no reload).
    line = participant.locator("#tmpnb-arrival")
    line.wait_for(timeout=45_000)
    assert line.get_attribute("role") == "status"
    assert line.locator("span").text_content() == "The organiser sent you “handout-week3.md”: it is in your files."
    listing.get_by_text("handout-week3.md", exact=True).wait_for(timeout=10_000)
    participant.reload()  # said once per tab
    listing.wait_for(timeout=120_000)
    participant.locator("#tmpnb-help").wait_for(timeout=60_000)
    assert participant.locator("#tmpnb-arrival").count() == 0
