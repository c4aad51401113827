"""A notebook that writes past TMPNB_DISK_LIMIT is ended with its work saved,
on the real stack: a real container's writable layer, measured by Docker."""

import io
import zipfile
from pathlib import Path

import docker

from pool.models import Container, Event, Session, Snapshot
from tests.factories import PoolFactory
from tests.integration.test_pool_lifecycle import ready_count, visit, wait_until
from tests.stack import TINY_WORK_COMMAND


def test_a_notebook_writing_past_the_disk_limit_is_ended_with_its_work_saved(live_stack, log_dir):
    PoolFactory(capacity=1, command=TINY_WORK_COMMAND)
    live_stack.start(TMPNB_DISK_LIMIT="2m", TMPNB_DISK_PERIOD=1, TMPNB_SNAPSHOT_MAX_MB=1)
    wait_until(lambda: ready_count() == 1, what="a ready container")
    response, _ = visit(live_stack.url)
    assert response.status_code == 200
    session = Session.objects.select_related("container").get()
    client = docker.from_env()
    try:  # what a participant's terminal would do
        client.containers.get(session.container.backend_id).exec_run(
            ["sh", "-c", "echo my results > /work/notes.txt && dd if=/dev/zero of=/work/big.bin bs=1M count=3"]
        )
        # The event is written once the copy is done and the container removed.
        wait_until(lambda: Event.objects.filter(kind=Event.Kind.DISK, session=session).exists(), timeout=30, what="the end")
        session.refresh_from_db()
        assert session.end_reason == Session.EndReason.DISK_FULL
        snapshot = Snapshot.objects.get(session=session)
        with zipfile.ZipFile(io.BytesIO((Path(log_dir) / "snapshots" / snapshot.file_name).read_bytes())) as archive:
            assert archive.read("notes.txt") == b"my results\n"
        assert [item["path"] for item in snapshot.left_out] == ["big.bin"]  # over TMPNB_SNAPSHOT_MAX_MB
        event = Event.objects.get(kind=Event.Kind.DISK, session=session)
        assert event.details["used"] > 2 * 1024 * 1024 and "over TMPNB_DISK_LIMIT" in event.message
        assert Container.objects.get(pk=session.container_id).state == Container.State.GONE
        assert not client.containers.list(all=True, filters={"id": session.container.backend_id})
    finally:
        client.close()
