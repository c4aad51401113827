"""The rules of the pool: fill, spawn, assign, end, cull and reconcile; the event
log, usage samples, schedules, and the figures of the dashboard and /metrics.

Views, admin actions, management commands and Celery tasks are thin edges over
these functions. The database is the record; Docker and the proxy follow it.
"""

from pool.services.assignment import AddressLimitReached, Admission, active_session, admit, assign_container, serve_queue
from pool.services.dashboard import dashboard, pool_overview
from pool.services.ending import finish_retirement, kill_containers, kill_sessions, retire_container, stop_all_containers
from pool.services.events import record_event, write_events_csv
from pool.services.metrics import CULL_REASONS, SPAWN_BUCKETS, metric_values
from pool.services.pools import (
    PoolError,
    drain_pool,
    fill_pool,
    get_default_pool,
    init_default_pool,
    keep_pools_filled,
    pool_named,
    pool_stats,
    resize_pool,
    resume_spawning,
    shrink_pool,
)
from pool.services.schedules import apply_due_schedules
from pool.services.snapshots import (
    RestoreError,
    ended_work,
    prune_snapshots,
    restore_work,
    snapshot_disk,
    snapshot_path,
    visitors_snapshot,
)
from pool.services.spawning import SpawnTimeout, container_spec, spawn_container, static_files_root
from pool.services.upkeep import cull_sessions, heartbeat, reconcile, sync_activity
from pool.services.usage import record_turned_away, take_usage_sample
from pool.services.waiting import Estimate, admission_status, await_admission, drop_abandoned_places, estimate_wait, queue_position

__all__ = [
    "AddressLimitReached",
    "Admission",
    "Estimate",
    "admission_status",
    "await_admission",
    "admit",
    "drop_abandoned_places",
    "estimate_wait",
    "queue_position",
    "serve_queue",
    "CULL_REASONS",
    "PoolError",
    "SPAWN_BUCKETS",
    "SpawnTimeout",
    "active_session",
    "apply_due_schedules",
    "assign_container",
    "container_spec",
    "cull_sessions",
    "dashboard",
    "drain_pool",
    "ended_work",
    "fill_pool",
    "finish_retirement",
    "get_default_pool",
    "heartbeat",
    "init_default_pool",
    "keep_pools_filled",
    "kill_containers",
    "kill_sessions",
    "metric_values",
    "pool_named",
    "pool_overview",
    "pool_stats",
    "prune_snapshots",
    "reconcile",
    "record_event",
    "record_turned_away",
    "resize_pool",
    "restore_work",
    "RestoreError",
    "resume_spawning",
    "retire_container",
    "shrink_pool",
    "snapshot_disk",
    "snapshot_path",
    "spawn_container",
    "static_files_root",
    "stop_all_containers",
    "sync_activity",
    "take_usage_sample",
    "visitors_snapshot",
    "write_events_csv",
]
