"""The heartbeat's repairs and the culler.

Reconciliation compares the database (the record) with what Docker and the
proxy really hold, with one list call to each, and repairs both sides. Each
repair stands on its own: one that fails is logged and counted, and the
others still run.
"""

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from pool.backends import get_backend
from pool.backends.base import BackendError, ContainerInfo
from pool.models import Container, Event, Pool, Session, Snapshot, Workshop
from pool.services.assignment import serve_queue
from pool.services.collecting import prune_collections
from pool.services.disk import nearly_full
from pool.services.ending import remove_quietly, retire_and_record
from pool.services.events import record_event
from pool.services.network import check_guard
from pool.services.pools import keep_pools_filled
from pool.services.retention import prune_history
from pool.services.routes import route_container
from pool.services.snapshots import copies_due, copies_under_way, give_up_work, prune_snapshots, restore_failed
from pool.services.waiting import drop_abandoned_places
from proxyapi import ProxyError, Route, get_proxy

log = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=Model)

# A STOPPING row this old had its teardown interrupted (a process died): retry it.
STOPPING_GRACE = timedelta(seconds=30)
# A copy queued this long ago that never started is given up even while the
# workers are busy (spawning, or copying others).
COPY_QUEUE_BOUND = timedelta(minutes=30)
STUCK_SPAWN = "never became ready (its worker stopped?)"
STOPPED_UNSAVED = "its end was interrupted before the copy (its worker stopped?)"
COPY_LOST = "the copy stopped before it was done (its worker stopped?)"
# A participant is warned inside their notebook this long before it is due for a cull.
CULL_WARNING = timedelta(minutes=5)
RESTORE_FAILED = "restore_failed"  # the banner's reason when saved work could not be put back


@dataclass
class ReconcileReport:
    dead_replaced: int = 0
    stuck_failed: int = 0
    teardowns_retried: int = 0
    orphans_removed: int = 0
    routes_added: int = 0
    routes_deleted: int = 0
    activity_synced: int = 0
    repairs_failed: int = 0


@contextlib.contextmanager
def _on_its_own(doing: str, report: ReconcileReport) -> Iterator[None]:
    """One repair, whose failure (a container Docker cannot remove, a route
    the proxy refuses) is logged and counted, not raised: otherwise the
    repairs after it would never run, at this tick or any other."""
    try:
        yield
    except Exception as error:
        report.repairs_failed += 1
        if isinstance(error, (BackendError, ProxyError)):
            log.warning("reconcile: %s failed: %s", doing, error)
        else:
            log.exception("reconcile: %s failed", doing)  # the traceback, for the operator


def _spawn_is_stuck(row: Container, now: datetime, *, spawns_under_way: bool) -> bool:
    # A spawn a worker took renews its lease: stuck once the lease ran out.
    if row.lease_until is not None:
        return row.lease_until < now
    # One no worker took yet waits in the queue behind the others, for as
    # long as it takes (filling a 200-seat pool queues 200 spawns, a few at a
    # time). Its task was lost (its worker stopped holding it) only if it
    # waited long and no worker is spawning anything meanwhile.
    return not spawns_under_way and row.created_at < now - timedelta(seconds=2 * settings.TMPNB_SPAWN_TIMEOUT + 30)


def _spawns_under_way(now: datetime) -> bool:
    """Whether a worker took or renewed a spawn's lease within the last lease
    period: the leases of live rows still running, or just finished, are
    ahead of now. Across every pool, as the workers serve them all."""
    return Container.objects.live().filter(lease_until__gt=now).exists()


def reconcile(pool: Pool | None = None) -> ReconcileReport:
    """Repair every pool, or only ``pool``: then only its rows, the containers
    labelled with its name and the routes marked with it are looked at (still
    one list call to Docker and one to the proxy)."""
    # The order of the reads matters, as spawns go on meanwhile:
    # 1. the rows already handed their container (ready or assigned) before
    #    the listing: only these can be judged gone when Docker lacks them; a
    #    spawn that becomes ready after the listing was simply not there yet.
    # 2. Docker and the proxy.
    # 3. every live row: whatever Docker listed was started for a row already
    #    committed, so nothing being spawned right now looks like an orphan.
    started_before = set(
        _of_pool(Container.objects.filter(state__in=[Container.State.READY, Container.State.ASSIGNED]), pool, "pool").values_list("pk", flat=True)
    )
    running = {info.name: info for info in get_backend().list_containers() if pool is None or info.pool == pool.name}
    routes = get_proxy().list_routes()
    rows = list(_of_pool(Container.objects.live().select_related("pool"), pool, "pool"))
    report = ReconcileReport()
    now = timezone.now()
    spawns_under_way = _spawns_under_way(now)
    copies = copies_due([row.pk for row in rows if row.state == Container.State.STOPPING])
    work_under_way = spawns_under_way or copies_under_way(now)
    for row in rows:
        info = running.get(row.name)
        if (info is None or not info.is_running) and row.state in (Container.State.READY, Container.State.ASSIGNED) and row.pk not in started_before:
            # Became ready after the listing, which may have caught its
            # container between create and start ("created"): judged at the next tick.
            continue
        with _on_its_own(f"repairing {row.name} ({row.state})", report):
            if row.state == Container.State.STOPPING:
                _repair_teardown(row, copies, now=now, work_under_way=work_under_way, report=report)
            else:
                _repair_row(row, info=info, route=routes.get(row.route_path), now=now, spawns_under_way=spawns_under_way, report=report)
    _remove_orphans(running, {row.name for row in rows}, report)
    # Routes added before they named their pool are left to a reconcile of every pool.
    own_routes = {path: r for path, r in routes.items() if pool is None or r.data.get("pool") == pool.name}
    _delete_stray_routes(own_routes, {row.route_path for row in rows}, report)
    with _on_its_own("syncing the sessions' activity", report):
        report.activity_synced = _sync_activity(routes, pool)
    return report


def _of_pool(queryset: QuerySet[RowT], pool: Pool | None, field: str) -> QuerySet[RowT]:
    return queryset if pool is None else queryset.filter(**{field: pool})


def _repair_row(row: Container, *, info: ContainerInfo | None, route: Route | None, now: datetime, spawns_under_way: bool, report: ReconcileReport) -> None:
    if row.state == Container.State.SPAWNING:
        stuck = _spawn_is_stuck(row, now, spawns_under_way=spawns_under_way)
        # Only if the lease is still the one judged stale: a spawn that renewed
        # it meanwhile (or took it, if it had none) is alive.
        if stuck and Container.objects.filter(pk=row.pk, lease_until=row.lease_until).move_to(Container.State.FAILED, error=STUCK_SPAWN):
            remove_quietly(row)
            record_event(Event.Kind.FAILURE, f"{row.name} {STUCK_SPAWN}", container=row, stage="spawn")
            report.stuck_failed += 1
    elif info is None or not info.is_running:
        reason = Session.EndReason.NODE_LOST if info and info.node_down else Session.EndReason.CONTAINER_GONE
        # One that stopped on its own keeps its participant's files until it
        # is removed: the worker copies them out first, as after a kill (not
        # the heartbeat, which serves the waiting room and fills the pools).
        # One that vanished, or went with its node, has none left.
        files_left = info is not None and not info.node_down
        if retire_and_record(
            row,
            reason,
            kind=Event.Kind.FAILURE,
            message=f"{row.name} stopped ({reason}); replacing it",
            only_from=[Container.State.READY, Container.State.ASSIGNED],
            on_worker=files_left and row.state == Container.State.ASSIGNED,
            files_left=files_left,
            stage="running",
        ):
            report.dead_replaced += 1
    elif route is None or route.target != row.target:
        route_container(row)
        report.routes_added += 1


def _repair_teardown(row: Container, copies: dict[int, Snapshot | None], *, now: datetime, work_under_way: bool, report: ReconcileReport) -> None:
    """A STOPPING row whose end was interrupted (a process died) is removed
    without its copy; never one whose copy is running or waits its turn."""
    if not _teardown_is_stuck(row, copies, now=now, work_under_way=work_under_way):
        return
    # No copy here: the heartbeat serves the waiting room and fills the pools.
    # give_up_work refuses while a copy holds the container (started since).
    if give_up_work(row, COPY_LOST if copies.get(row.pk) else STOPPED_UNSAVED):
        remove_quietly(row)
        row.mark_gone()
        report.teardowns_retried += 1


def _teardown_is_stuck(row: Container, copies: dict[int, Snapshot | None], *, now: datetime, work_under_way: bool) -> bool:
    since = row.ended_at or now - 2 * COPY_QUEUE_BOUND  # none lacks one: as if long ago
    copy = copies.get(row.pk)
    if copy is not None and copy.taken_at is None:
        # A copy renews its lease while it runs: stuck once the lease ran out.
        return copy.lease_until is None or copy.lease_until < now
    if row.pk not in copies or copy is not None:
        # Nothing to copy, or copied: only the removal was left.
        return since < now - STOPPING_GRACE
    # Its copy has not started: it waits its turn behind the others (a kill
    # of 40 sessions queues 40 copies, a worker runs a few at once). Its task
    # was lost only if it waited long with no worker copying or spawning
    # meanwhile, or longer than any queue takes.
    waited = now - since
    grace = STOPPING_GRACE + timedelta(seconds=settings.TMPNB_SNAPSHOT_TIMEOUT + settings.DOCKER_TIMEOUT)
    return (waited > grace and not work_under_way) or waited > COPY_QUEUE_BOUND


def _remove_orphans(running: dict[str, ContainerInfo], live_names: set[str], report: ReconcileReport) -> None:
    for name, info in running.items():
        if name not in live_names:
            with _on_its_own(f"removing orphan container {name}", report):
                log.info("removing orphan container %s", name)
                get_backend().remove_container(info.backend_id)
                report.orphans_removed += 1


def _delete_stray_routes(routes: dict[str, Route], live_paths: set[str], report: ReconcileReport) -> None:
    for path in routes:
        if path not in live_paths:
            with _on_its_own(f"deleting stray route {path}", report):
                get_proxy().delete_route(path)
                report.routes_deleted += 1


def _sync_activity(routes: dict[str, Route], pool: Pool | None = None) -> int:
    """Copy the proxy's last_activity of each route onto its live session."""
    changed = []
    for session in _of_pool(Session.objects.active().select_related("container"), pool, "container__pool"):
        route = routes.get(session.container.route_path)
        if route and route.last_activity and route.last_activity > session.last_activity:
            session.last_activity = route.last_activity
            changed.append(session)
    Session.objects.bulk_update(changed, ["last_activity"], batch_size=500)
    return len(changed)


def sync_activity(pool: Pool | None = None) -> int:
    return _sync_activity(get_proxy().list_routes(), pool)


def cull_due(session: Session, last_activity: datetime) -> tuple[datetime, datetime]:
    """When ``session`` becomes due for its age cull and for its idle cull
    (the next cull after that ends it), given its ``last_activity``."""
    pool = session.container.pool
    return session.started_at + timedelta(seconds=pool.cull_max), last_activity + timedelta(seconds=pool.cull_timeout)


@dataclass(frozen=True, kw_only=True)
class TimeLeft:
    """How long a held notebook has before a cull, for the warning inside it."""

    idle_timeout: int
    idle_left: int
    age_left: int
    disk_used: int | None = None  # bytes written at the last disk check
    disk_limit: int | None = None  # TMPNB_DISK_LIMIT
    restore_failed: bool = False  # saved work asked into it could not be put there
    session: Session | None = field(default=None, compare=False, repr=False)

    @property
    def disk_warn(self) -> bool:
        return nearly_full(self.disk_used, self.disk_limit)

    @property
    def reason(self) -> str:
        """What the banner is about: the end that comes first, else a restore that failed."""
        if self.disk_warn:
            return Session.EndReason.DISK_FULL
        if self.restore_failed and not self.cull_due_soon:
            return RESTORE_FAILED
        return Session.EndReason.CULLED_AGE if self.age_left <= self.idle_left else Session.EndReason.CULLED_IDLE

    @property
    def seconds_left(self) -> int:
        return min(self.idle_left, self.age_left)

    @property
    def cull_due_soon(self) -> bool:
        return self.seconds_left <= CULL_WARNING.total_seconds()

    @property
    def warn(self) -> bool:
        return self.disk_warn or self.cull_due_soon or self.restore_failed


def time_left(*, path_id: str, visitor: str | None = None, token: str | None = None, now: datetime | None = None) -> TimeLeft | None:
    """The TimeLeft of the live session of container ``path_id`` if
    ``visitor`` holds it, or to whoever knows its notebook's ``token``; else
    None (nobody else learns anything). Idleness is the proxy's own
    last_activity of the route (the session's copy is only synced at each
    cull); raises ProxyError when the proxy cannot say."""
    if visitor is None and token is None:
        return None
    sessions = Session.objects.active().select_related("container__pool").filter(container__path_id=path_id)
    session = sessions.filter(visitor=visitor).first() if visitor is not None else sessions.first()
    if session is None or (token is not None and not constant_time_compare(token, session.container.token)):
        return None
    route = get_proxy().get_route(session.container.route_path)
    last_activity = max(filter(None, [session.last_activity, route.last_activity if route else None]))
    age_due, idle_due = cull_due(session, last_activity)
    now = now or timezone.now()
    # A workshop's end is an age cull for everyone in it: their banner warns of it.
    if (closes_at := Workshop.objects.closing_at(session.container.pool_id, now)) is not None:
        age_due = min(age_due, closes_at)
    return TimeLeft(
        idle_timeout=session.container.pool.cull_timeout,
        idle_left=max(0, round((idle_due - now).total_seconds())),
        age_left=max(0, round((age_due - now).total_seconds())),
        disk_used=session.container.disk_used,
        disk_limit=settings.TMPNB_DISK_LIMIT,
        restore_failed=restore_failed(session.container),
        session=session,
    )


def cull_sessions(*, now: datetime | None = None, pool: Pool | None = None) -> dict[str, int]:
    """End sessions (of every pool, or only ``pool``'s) idle longer than their
    pool's cull_timeout, or open longer than its cull_max. Ready containers
    are never culled for idleness."""
    sync_activity(pool)
    now = now or timezone.now()
    culled: dict[str, int] = {Session.EndReason.CULLED_IDLE: 0, Session.EndReason.CULLED_AGE: 0}
    for session in _of_pool(Session.objects.active().select_related("container__pool"), pool, "container__pool"):
        age_due, idle_due = cull_due(session, session.last_activity)
        if age_due < now:
            reason = Session.EndReason.CULLED_AGE
        elif idle_due < now:
            reason = Session.EndReason.CULLED_IDLE
        else:
            continue
        culled[reason] += retire_and_record(
            session.container, reason, kind=Event.Kind.CULL, message=f"{session.container.name} culled: {Session.EndReason(reason).label}"
        )
    return culled


def heartbeat() -> list[Container]:
    """Repair what drifted, prune old history, let waiting visitors in, then fill every pool.
    Returns the rows to spawn."""
    try:
        check_guard()
    except Exception:
        log.exception("network guard not checked")
    try:
        reconcile()
    except (BackendError, ProxyError) as error:
        # Without a true picture, repair nothing; filling still works from the rows.
        log.warning("reconcile skipped: %s", error)
    except Exception:
        # An answer of a shape nobody foresaw, or a bug: the rest of the tick still runs.
        log.exception("reconcile skipped")
    drop_abandoned_places()
    prune_history()
    prune_snapshots()
    prune_collections()
    for pool_id in Pool.objects.values_list("pk", flat=True):
        serve_queue(pool_id)
    return keep_pools_filled()
