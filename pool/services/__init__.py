"""The rules of the pool: fill, spawn, assign, end, cull and reconcile; the event
log, usage samples, schedules, and the figures of the dashboard and /metrics.

Views, admin actions, management commands and Celery tasks are thin edges over
these functions. The database is the record; Docker and the proxy follow it.
Callers import the module that holds a rule (``from pool.services import
assignment``), so that the call graph reads from the imports:

- ``assignment``: admission, claiming a ready container, the waiting queue served in order.
- ``waiting``: the waiting room's place, estimate and long poll.
- ``turns``: telling a waiting visitor their turn came (Redis).
- ``pools``: filling, resizing, draining a pool; the default pool.
- ``spawning``: starting one container and waiting until it answers.
- ``ending``: retiring and killing containers and sessions.
- ``routes``: a container's route in the proxy, added and deleted.
- ``materials``: a pool's workshop files, prepared once per change and copied into new containers.
- ``snapshots``: a participant's work saved at the end, downloaded, put back, pruned.
- ``upkeep``: the heartbeat, culling and the reconcile against Docker and the proxy.
- ``network``: the network guard of a pool's containers.
- ``worker``: tasks queued for the Celery worker, by name (the services never import pool.tasks).
- ``schedules``, ``usage``, ``events``, ``retention``: planned capacity, usage samples,
  the event log, pruning of history.
- ``dashboard``, ``metrics``: the organisers' figures and those of /metrics.
- ``room``: the room view of a pool's participants, and the hands and names they send.
"""
