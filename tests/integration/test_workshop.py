"""A workshop on the real stack (tiny image, beat and worker running): before
its start its landing takes nothing, at its start the headcount is ready, and
at its close everyone's work is collected, their sessions end and the pool
drains, all driven by beat."""

import time
import zipfile
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from pool.models import Container, QueueEntry, Session, Workshop
from pool.services import workshops
from tests.integration.test_collect_work import participants_land, unprivileged_pool, write_as_notebook_user
from tests.integration.test_pool_lifecycle import visit, wait_until

HEADCOUNT = 3


def sleep_until(moment):
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()))


def test_a_workshop_opens_on_time_warm_and_at_its_close_collects_and_drains(live_stack):
    pool = unprivileged_pool(capacity=0, ready_target=0)
    live_stack.start()
    # The pool never filled, so its fill is the cautious default: it warms a minute ahead.
    now = timezone.now()
    start = now + workshops.warming_lead(HEADCOUNT, workshops.DEFAULT_FILL) + timedelta(seconds=10)
    workshop = workshops.plan_workshop(
        Workshop(name="Intro", starts_at=start, ends_at=start + timedelta(seconds=20), keep_minutes=0), headcounts={pool: HEADCOUNT}, now=now
    )

    response, _ = visit(live_stack.url)
    assert response.status_code == 503 and f"Opens at {timezone.localtime(start):%H:%M}." in response.text
    assert not Session.objects.exists() and not QueueEntry.objects.exists()

    wait_until(
        lambda: Container.objects.ready().count() >= HEADCOUNT, timeout=(start - timezone.now()).total_seconds(), what="the headcount ready by the start"
    )
    print(f"\nheadcount ready {(start - timezone.now()).total_seconds():.1f} s before the start, warming from {workshop.lead_seconds} s ahead")
    sleep_until(start)
    sessions = participants_land(live_stack, 2)
    for session in sessions:
        write_as_notebook_user(session.container, "notes.txt", f"{session.visitor_tag}\n".encode())

    # The collection comes first, then the sessions end and the containers go.
    wait_until(lambda: not Container.objects.live().exists(), timeout=90, what="the pool drained")
    workshop = Workshop.objects.select_related("collection").get()
    assert workshop.finished_at is not None and workshop.collection.taken_at is not None
    assert workshop.collection.participants == 2 and workshop.collection.incomplete == 0
    with zipfile.ZipFile(Path(live_stack.log_dir) / "collections" / workshop.collection.file_name) as archive:
        for session in sessions:
            assert archive.read(f"{session.visitor_tag}/notes.txt") == f"{session.visitor_tag}\n".encode()
    assert set(Session.objects.values_list("end_reason", flat=True)) == {Session.EndReason.CULLED_AGE}
    pool.refresh_from_db()
    assert (pool.capacity, pool.ready_target) == (0, 0)
    assert visit(live_stack.url)[0].status_code == 410  # a latecomer is told it ended
