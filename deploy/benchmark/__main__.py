"""deploy/bench's entry: ``python -m deploy.benchmark --help``."""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import deploy.benchmark
from deploy.benchmark import log
from deploy.benchmark.bench import Bench
from deploy.benchmark.cases import ALL_CASES, CASES, NAMED_ONLY
from deploy.benchmark.images import IMAGES, ensure_image
from deploy.benchmark.report import print_report
from deploy.benchmark.service import PASS_THROUGH
from tests.stack import ROOT


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="deploy/bench", description=deploy.benchmark.__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help="comma-separated, of a (tiny, 50 from a pool of 50), b (Jupyter, 100 from 100), "
        "c (tiny, 50 from a pool of 50 with 20 ready), route (the proxy's hop both ways), cpu (30 one after another),"
        " instructions (admissions in one process: CPU and valgrind's count), refill, footprint, sweep,"
        " room (N participants: landing, JupyterLab's start-up, a kernel, 6*7; today's behaviour side by side)"
        " (default: all of these), soak (churn under faults, --minutes long; only when named)",
    )
    parser.add_argument("--minutes", type=float, default=45, help="how long the soak runs (default 45; under 10, the short version CI runs)")
    parser.add_argument("-n", "--visitors", type=int, default=None, help="visitors (and pool size) of cases a, b, c instead of 50/100/50")
    parser.add_argument("--room-n", default="1,30,100", help="participants of case room, comma-separated (default 1,30,100)")
    parser.add_argument("--files-n", default="30,100", help="participants of case files, comma-separated (default 30,100)")
    parser.add_argument("--json", default=str(ROOT / "var" / "bench.json"), help="where to write the results (default var/bench.json)")
    parser.add_argument(
        "--retry-interval", type=float, default=None, help="poll or reload at most this many seconds apart while waiting (default: as the service's pages do)"
    )
    parser.add_argument("--bound", type=float, default=60.0, help="a visitor not served within this many seconds is turned away (default 60)")
    parser.add_argument("--cpu-visitors", type=int, default=30, help="visitors one after another in case cpu (default 30)")
    parser.add_argument("--refill-n", type=int, default=30, help="containers per refill measure (tiny; Jupyter at most 20; default 30)")
    parser.add_argument(
        "--refill-images", default="tiny,jupyter", help="images of the refill case: tiny,jupyter,classic (default tiny,jupyter; jupyter is JupyterLab)"
    )
    parser.add_argument("--heartbeat", type=float, default=5.0, help="TMPNB_HEARTBEAT of the service (default 5, the service's default)")
    parser.add_argument("--max-dock-workers", type=int, default=2, help="TMPNB_MAX_DOCK_WORKERS, also the raw runs' Docker slots (default 2)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="run the service on PostgreSQL: postgres://user@host:port/any (each case gets a database of its own);"
        " deploy/bench --postgres starts a throwaway server and passes this",
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=60, help="before each case, wait up to this many seconds for other work to leave the cores idle (default 60)"
    )
    parser.add_argument("--keep-state", action="store_true", help="keep each case's state folder (database, logs) in /var/tmp")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in ALL_CASES + NAMED_ONLY]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; known: {', '.join(ALL_CASES + NAMED_ONLY)}")
    args.room_sizes = [int(n) for n in args.room_n.split(",") if n.strip()]
    args.files_sizes = [int(n) for n in args.files_n.split(",") if n.strip()]
    args.refill_images = [c.strip() for c in args.refill_images.split(",") if c.strip()]
    if any(kind not in IMAGES for kind in args.refill_images):
        parser.error("--refill-images takes tiny, jupyter and/or classic")
    return args


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM and SIGHUP unwind like Ctrl-C, so every case stops its deploy/up.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    for image in sorted({image for name in args.cases for image in CASES[name].images(args)}):
        ensure_image(image)
    bench = Bench(args)
    bench.results["options"] = {k: v for k, v in vars(args).items()}
    bench.results["service_environment"] = {key: os.environ[key] for key in sorted(PASS_THROUGH) if key in os.environ}
    started = time.monotonic()
    try:
        results = bench.run(args.cases)
    except KeyboardInterrupt:
        log("interrupted: every deploy/up started has been stopped")
        return 130
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    print_report(results)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path} (whole run {results['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
