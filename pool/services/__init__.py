"""The rules of the pool: fill, spawn, assign, end, cull and reconcile.

Views, admin actions, management commands and Celery tasks are thin edges over
these functions. The database is the record; Docker and the proxy follow it.
"""

from pool.services.assignment import AddressLimitReached, Admission, active_session, admit, assign_container, serve_queue
from pool.services.ending import kill_containers, kill_sessions, retire_container, stop_all_containers
from pool.services.pools import (
    PoolError,
    drain_pool,
    fill_pool,
    get_default_pool,
    init_default_pool,
    keep_pools_filled,
    pool_stats,
    resize_pool,
    resume_spawning,
    shrink_pool,
)
from pool.services.spawning import SpawnTimeout, container_spec, spawn_container, static_files_root
from pool.services.upkeep import cull_sessions, heartbeat, reconcile, sync_activity
from pool.services.waiting import Estimate, admission_status, drop_abandoned_places, estimate_wait, queue_position

__all__ = [
    "AddressLimitReached",
    "Admission",
    "Estimate",
    "admission_status",
    "admit",
    "drop_abandoned_places",
    "estimate_wait",
    "queue_position",
    "serve_queue",
    "PoolError",
    "SpawnTimeout",
    "active_session",
    "assign_container",
    "container_spec",
    "cull_sessions",
    "drain_pool",
    "fill_pool",
    "get_default_pool",
    "heartbeat",
    "init_default_pool",
    "keep_pools_filled",
    "kill_containers",
    "kill_sessions",
    "pool_stats",
    "reconcile",
    "resize_pool",
    "resume_spawning",
    "retire_container",
    "shrink_pool",
    "spawn_container",
    "static_files_root",
    "stop_all_containers",
    "sync_activity",
]
