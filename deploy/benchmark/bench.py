"""The bench: what every case is given (deploy/bench's options, the one way
to start a service, the raw Docker rates measured once a run), and the run
of the cases named."""

import secrets
import time

from deploy.benchmark import log
from deploy.benchmark.cases import CASES, RUN_ORDER
from deploy.benchmark.machine import machine, wait_quiet
from deploy.benchmark.raw import raw_rate
from deploy.benchmark.report import check_targets
from deploy.benchmark.service import Service


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {"machine": machine(), "options": {}, "cases": {}}
        self.raw = {}  # image -> raw rate result, measured once per run
        self.installation = f"bench{secrets.token_hex(3)}"  # for the raw containers

    def service(self, **kwargs):
        """A service of the case's own (deploy/up), with the options' settings."""
        service = Service(heartbeat=self.args.heartbeat, max_dock_workers=self.args.max_dock_workers, database_url=self.args.database_url, **kwargs)
        service.keep_state = self.args.keep_state
        return service

    def raw_for(self, image, n, *, own_network=False):
        """The machine's own rate for ``image``: after a small warm-up run, two
        runs of ``n`` containers; their mean is what the service is compared with
        (single runs vary by up to a quarter on this kind of machine).
        ``own_network``: on a network of their own, as the service's (raw_rate)."""
        key = (image, n, own_network)
        if key not in self.raw:
            slots, threads = self.args.max_dock_workers, 4 * self.args.max_dock_workers
            where = "on a network of their own" if own_network else "on the default bridge"
            log(f"raw Docker rate: {n} x {image} {where}, {slots} Docker calls at once, {threads} in flight (warm-up, then 2 runs)")

            def run(count):
                return raw_rate(image, count, docker_slots=slots, threads=threads, installation=self.installation, own_network=own_network)

            run(2 * slots)
            runs = [run(n) for _ in range(2)]
            seconds = sum(run["seconds"] for run in runs) / len(runs)
            self.raw[key] = {
                **runs[0],
                "seconds": round(seconds, 3),
                "per_second": round(n / seconds, 2),
                "runs_per_second": [run["per_second"] for run in runs],
            }
            log(f"raw: {self.raw[key]['per_second']}/s (runs {self.raw[key]['runs_per_second']})")
        return self.raw[key]

    def run(self, names):
        for name in sorted(names, key=RUN_ORDER.index):
            log(f"=== case {name}")
            case = CASES[name]
            busy = wait_quiet(self.args.wait_quiet) if case.quiet else None
            started = time.monotonic()
            try:
                self.results["cases"][name] = case.run(self)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:
                log(f"case {name} failed: {error!r}")
                self.results["cases"][name] = {"error": repr(error)[:2000]}
            self.results["cases"][name]["wall_seconds"] = round(time.monotonic() - started, 1)
            self.results["cases"][name]["machine_busy_before"] = busy
        self.results["raw"] = [value for value in self.raw.values()]
        self.results["targets"] = check_targets(self.results["cases"])
        return self.results
