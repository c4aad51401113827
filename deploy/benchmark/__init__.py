"""The benchmark of issues 6 and 11: how fast a burst of new visitors lands
in their own notebooks (next to two floors: the same burst straight through
the proxy, and through the landing's steps with no work behind them), the web
process's CPU per admission, how fast the pool refills next to what Docker
itself can do, and how much memory the service takes.

Run it with ``deploy/bench`` (which installs and starts what is missing first,
then runs ``python -m deploy.benchmark``); ``deploy/bench --help`` lists the
options. A case is a ``Case`` (below): a function of the bench (``bench``:
the options, the raw Docker rates, the one way to start a service) that
returns the case's figures as a dict, a printer of them, and the targets it
is held to; ``cases`` lists them in the report's order. The cases' modules:
``bursts`` (a, b, c), ``route``, ``costs`` (cpu, footprint),
``admissions`` (instructions), ``refill``, ``sweep``, ``room``, ``soak``.
The parts they share: ``service`` (one ``deploy/up`` and its record),
``visitors`` (the one visitor model), ``raw`` (the raw Docker baseline),
``report`` (the tables and targets), ``machine`` (CPU and memory), ``steps``
(the no-work upstream of the second floor), ``images``; and runs of their
own: ``waiting``, ``browser``, ``boot``, ``materials``.

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

import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.stack import ROOT


def no_targets(figures):
    return []


def no_images(args):
    return []


@dataclass(frozen=True)
class Case:
    """One case of deploy/bench."""

    run: Callable  # (bench) -> the figures, a dict written to the JSON as it is
    show: Callable  # (figures, out): prints them; not called for a case that failed
    title: str | None  # printed above a failed case's error (None: the bursts' table shows it)
    targets: Callable = no_targets  # (figures) -> [(target, figure, met or None)]
    images: Callable = no_images  # (options) -> the images the case runs, built if missing
    quiet: bool = True  # wait for the machine's cores to go idle first (--wait-quiet)
    named_only: bool = False  # run only when named in --cases


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def eventually(check, timeout, interval=0.5):
    """``check()``'s first true answer within ``timeout`` seconds (errors
    count as not yet), else None."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if answer := check():
                return answer
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def run_module(module, *args, timeout):
    """Run deploy/benchmark/<module>.py in a process of its own and return
    the figures it prints as JSON on its last line."""
    result = subprocess.run([sys.executable, "-m", f"deploy.benchmark.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/benchmark/{module}.py failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt(value, unit="s"):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f} {unit}".strip()
    return str(value)


def print_table(header, lines, out):
    print(header, file=out)
    print("-" * len(header), file=out)
    for line in lines:
        print(line, file=out)


def spread(values, *quantiles):
    """The nearest-rank percentiles of ``values`` by name ("p50", "max", ...)."""
    ordered = sorted(values)
    return {q: (ordered[-1] if ordered else None) if q == "max" else percentile(ordered, int(q[1:])) for q in quantiles}


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
