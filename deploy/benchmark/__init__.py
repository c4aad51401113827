"""The benchmark of issues 6 and 11: how fast a burst of new visitors lands
in their own notebooks (next to two floors: the same burst straight through
the proxy, and through the landing's steps with no work behind them), the web
process's CPU per admission, how fast the pool refills next to what Docker
itself can do, and how much memory the service takes.

Run it with ``deploy/bench`` (which installs and starts what is missing first,
then runs ``python -m deploy.benchmark``); ``deploy/bench --help`` lists the
options. The package's modules: ``service`` (one ``deploy/up`` and its record),
``visitors`` (simulated visitors), ``raw`` (the raw Docker baseline),
``cases`` (the cases and their targets), ``report`` (the tables),
``machine`` (CPU and memory), ``steps`` (the no-work upstream of the
second floor), ``images``; and runs of their own: ``sweep``
(run by the case of that name), ``waiting``, ``browser``, ``boot``, ``materials``.

Each case runs ``deploy/up`` as a subprocess on free loopback ports with its
own state directory and installation label, and stops it with SIGTERM to ``deploy/up`` alone, even on
failure or Ctrl-C; it then checks that no process of that ``deploy/up`` is
left and removes every container with its label (``deploy/up`` keeps them
across restarts). Results are printed as tables and written as JSON
(``--json``, default ``var/bench.json``). docs/performance.md describes the
method and the results.

How readiness is read: the service's own record. ``deploy/up`` keeps its
SQLite database in ``$TMPNB_STATE/var`` (or, with ``--database-url``, a
PostgreSQL database the benchmark makes for the case); the benchmark reads the
container rows there (read-only queries) and waits until the pool's ready count is
reached, until Docker lists that many running containers with the
installation's label, and until the proxy holds that many routes; then it
waits two more heartbeats and checks that the counts still hold. The rows'
``created_at`` and ``ready_at`` also give the service's refill rate.
"""

import sys
import time


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
