"""The event log: one row for each thing that happens to a pool, a container
or a session. The services call record_event() as they act, inside the same
transaction where there is one, so the log says what the database says."""

import csv
import json

from pool.models import Event

CSV_COLUMNS = ["time", "kind", "pool", "container", "visitor", "actor", "message", "details"]


def record_event(kind, message, *, pool=None, container=None, session=None, actor="", **details):
    """Add one row to the event log. The pool defaults to the container's."""
    pool_id = pool.pk if pool is not None else getattr(container, "pool_id", None)
    return Event.objects.create(
        kind=kind, message=message[:500], pool_id=pool_id, container=container, session=session, actor=actor, details=details
    )


def write_events_csv(events, stream):
    """The events as CSV, oldest first, one row each; ``details`` as JSON."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    for event in events.select_related("pool", "container", "session").order_by("time", "pk"):
        writer.writerow([
            event.time.isoformat(),
            event.kind,
            event.pool.name if event.pool else "",
            event.container.name if event.container else "",
            event.session.visitor_tag if event.session else "",
            event.actor,
            event.message,
            json.dumps(event.details, sort_keys=True) if event.details else "",
        ])
