"""The cases, each against a service of its own, and the targets of issues 6
and 11 they are held to."""

import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

from deploy.benchmark import log
from deploy.benchmark.images import CONTAINER_PORT, IMAGES, JUPYTER_IMAGE, TINY_IMAGE
from deploy.benchmark.machine import cpu_ticks, machine, memory, process_cpu_seconds, wait_quiet
from deploy.benchmark.raw import raw_rate
from deploy.benchmark.room import case_room
from deploy.benchmark.service import Service
from deploy.benchmark.soak import soak
from deploy.benchmark.steps import landing_replay, steps_upstream
from deploy.benchmark.visitors import burst, one_after_another, to_floor
from tests.stack import ROOT

# The proxy's routing key of its notebook port (pool/origins.py), before a notebook's /user/<id>/ path.
NOTEBOOK_ROUTES = "/@notebooks"
ALL_CASES = ["a", "b", "c", "route", "cpu", "instructions", "refill", "footprint", "sweep", "room"]
# Cases run only when named: the soak (deploy/benchmark/soak.py) takes 45 minutes by default.
NAMED_ONLY = ["soak"]
# Case instructions: visitors timed back to back and with a pause between
# them, and visitors counted by valgrind (twice as many in a second run).
ADMISSIONS_TIMED, ADMISSIONS_PAUSE, ADMISSIONS_COUNTED = 200, 0.01, 50
# And back to back again in a pool with a history: weeks of workshops, kept
# for TMPNB_HISTORY_DAYS, behind the morning's burst.
ADMISSIONS_HISTORY = 20_000

# Targets of issues 6 and 11 (2-core machine).
TARGETS = {
    "a_p50": 0.10,
    "a_max": 0.175,
    "a_floor_factor": 2.0,
    "b_p50": 1.0,
    "b_p99": 1.5,
    "cpu_ms": 3.0,
    "c_last_factor": 1.2,
    "refill_ratio": 0.8,
    "sweep_seconds": 1.0,
    "sweep_calls": 5,
    "footprint_mib": 250,
}


@contextlib.contextmanager
def cpu_used(service, **more_roles):
    """CPU seconds each of the service's roles (and ``more_roles``: name ->
    pids) used in the block, and how busy the machine's cores were. The
    visitors are this process's threads: on one machine they take the same
    cores as the service, so their share is shown too."""
    roles = {**service.processes(), "visitors": [os.getpid()], **more_roles}
    before = {role: process_cpu_seconds(pids) for role, pids in roles.items()}
    machine_before = cpu_ticks()
    used = {}
    yield used
    machine_after = cpu_ticks()
    used["seconds"] = {role: round(process_cpu_seconds(pids) - before[role], 2) for role, pids in roles.items()}
    used["busy"] = round((machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1), 2)


def floor_summary(floor, used):
    floor = {key: floor[key] for key in ("visitors", "served", "failed", "p50", "p90", "p99", "max", "errors")}
    floor["cpu_seconds"], floor["machine_busy"] = used["seconds"], used["busy"]
    return floor


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {"machine": machine(), "options": {}, "cases": {}}
        self.raw = {}  # image -> raw rate result, measured once per run
        self.installation = f"bench{secrets.token_hex(3)}"  # for the raw containers

    def service(self, **kwargs):
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

    def burst_case(self, name, *, image, pool_size, ready_target, visitors):
        with self.service(image=image, pool_size=pool_size, ready_target=ready_target, name=name) as service:
            service.wait_ready(ready_target, live=ready_target)
            prefill = service.refill_rate()
            log(f"case {name}: {visitors} visitors at once")
            with cpu_used(service) as used:
                started, summary, landed = burst(
                    [f"{service.url}/spawn/"] * visitors, image=image, bound=self.args.bound, retry_interval=self.args.retry_interval
                )
            summary["burst_cpu_seconds"], summary["burst_machine_busy"] = used["seconds"], used["busy"]
            summary["prefill"] = prefill
            summary["pool_size"], summary["ready_target"], summary["image"] = pool_size, ready_target, image
            summary["retry_interval"] = self.args.retry_interval
            summary["bound"] = self.args.bound
            # Cross-check with the service's record: one session per served visitor.
            sessions = service.query("SELECT COUNT(*), COUNT(DISTINCT container_id), COUNT(DISTINCT client_ip) FROM pool_session WHERE ended_at IS NULL")[0]
            summary["sessions"], summary["session_containers"], summary["session_addresses"] = sessions
            if pool_size > ready_target:
                # The containers started under load, after the burst began.
                service.wait_ready(0, live=pool_size, timeout=120)
                summary["under_load"] = service.refill_rate(since=started, start=started)
                summary["under_load"]["timeline"] = [
                    [
                        round(row["created"] - started, 3),
                        round(row["ready"] - started, 3) if row["ready"] else None,
                        round(row["assigned"] - started, 3) if row["assigned"] else None,
                    ]
                    for row in sorted(service.rows(since=started), key=lambda row: row["created"])
                ]
            summary["floor"] = self.floor(landed, image, service)
            summary["to_floor"] = to_floor(summary, summary["floor"])
            replay = landing_replay(f"{service.url}/spawn/")
            for key, upstream in (("steps_floor", "asyncio"), ("server_floor", "gunicorn")):
                summary[key] = self.steps_floor(landed, image, service, upstream, replay)
                summary[f"to_{key}"] = to_floor(summary, summary[key])
        summary["stop_seconds"] = getattr(service, "stop_seconds", None)
        summary["removed_after_stop"] = getattr(service, "removed_after_stop", None)
        summary["leftovers"] = service.leftovers
        return summary

    def floor(self, landed, image, service):
        """The same burst without the service: each visitor straight to the page
        a visitor of the burst landed on, through the proxy, on a container
        already routed and warm."""
        log(f"floor: {len(landed)} visitors straight to the notebook pages")
        with cpu_used(service) as used:
            _, floor, _ = burst(landed, image=image, bound=self.args.bound)
        return floor_summary(floor, used)

    def steps_floor(self, landed, image, service, upstream, replay):
        """The same visitors through the landing page's three steps, the first
        two answered by an ``upstream`` that does no work, with the service's
        cookie-step answer ``replay`` (deploy/benchmark/steps.py): asyncio,
        what any service with the cookie step would cost on this machine;
        gunicorn, what the service's server costs without Django."""
        log(f"floor with the landing's steps: {len(landed)} visitors, three requests each, a {upstream} upstream that does no work")
        with steps_upstream(upstream, landed, replay, service.proxy_api) as (pids, paths):
            with cpu_used(service, upstream=pids) as used:
                _, floor, _ = burst([service.url + path for path in paths], image=image, bound=self.args.bound)
        return floor_summary(floor, used)

    def case_a(self):
        n = self.args.visitors or 50
        return self.burst_case("a", image=TINY_IMAGE, pool_size=n, ready_target=n, visitors=n)

    def case_b(self):
        n = self.args.visitors or 100
        return self.burst_case("b", image=JUPYTER_IMAGE, pool_size=n, ready_target=n, visitors=n)

    def case_c(self):
        n = self.args.visitors or 50
        ready = max(1, round(0.4 * n))  # 20 of 50
        result = self.burst_case("c", image=TINY_IMAGE, pool_size=n, ready_target=ready, visitors=n)
        raw = self.raw_for(TINY_IMAGE, self.args.refill_n)
        extra = n - ready
        result["raw_per_second"] = raw["per_second"]
        result["raw_seconds_for_extra"] = round(extra / raw["per_second"], 3)
        result["bound_last"] = round(TARGETS["c_last_factor"] * extra / raw["per_second"], 3)
        # The target's yardstick is raw Docker on its default bridge; the
        # service's containers join a network of their own (the network guard's),
        # where Docker's start does more: the same run that way shows how much.
        if result.get("max"):
            own = self.raw_for(TINY_IMAGE, self.args.refill_n, own_network=True)
            result["raw_own_network_per_second"] = own["per_second"]
            result["last_to_raw_own_network"] = round(result["max"] / (extra / own["per_second"]), 2)
        return result

    def case_refill(self):
        """Per image: the raw rate, then the service's: prefill of R rows at
        start-up and refill of R after R visitors took the ready ones."""
        out = {}
        for kind in self.args.refill_images:
            image = IMAGES[kind]
            r = self.args.refill_n if kind == "tiny" else min(self.args.refill_n, 20)
            raw = self.raw_for(image, r)
            with self.service(image=image, pool_size=2 * r, ready_target=r, name=f"refill-{kind}") as service:
                service.wait_ready(r)
                prefill = service.refill_rate()
                log(f"refill {kind}: {r} visitors take the ready containers")
                started, summary, _ = burst([f"{service.url}/spawn/"] * r, image=image, bound=self.args.bound, retry_interval=self.args.retry_interval)
                service.wait_ready(r, live=2 * r)
                refill = service.refill_rate(since=started, start=started)
            out[kind] = {
                "raw": raw,
                "prefill": prefill,
                "refill": refill,
                "burst_served": summary["served"],
                "ratio_prefill": round(prefill["per_second"] / raw["per_second"], 2),
                "ratio_refill": round(refill["per_second"] / raw["per_second"], 2),
                "leftovers": service.leftovers,
            }
        return out

    def case_route(self):
        """The proxy's hop to a container both ways, on the same containers in
        alternating bursts: to the port published on loopback (the service
        started with TMPNB_ROUTE_TO=published; Docker's userland docker-proxy
        carries it) and to the container's own address on the bridge (a more
        specific route, /user/<id>/<landing>, added for those rounds: the
        service's reconcile ignores routes without its marker; on the notebook
        port's key, NOTEBOOK_ROUTES)."""
        n, rounds = self.args.visitors or 50, 5
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="route", env={"TMPNB_ROUTE_TO": "published"}) as service:
            service.wait_ready(n)
            _, _, landed = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=self.args.bound)
            bridge = service.bridge_addresses()
            pages = [urlsplit(url).path for url in landed]
            out, routed = {"published": [], "container": []}, False
            for i in range(rounds):
                for way in ("published", "container") if i % 2 == 0 else ("container", "published"):
                    for page in pages if (way == "container") != routed else []:
                        if way == "container":
                            path_id = page.split("/")[2]
                            service.proxy_api("POST", NOTEBOOK_ROUTES + page, json={"target": f"http://{bridge[path_id]}:{CONTAINER_PORT}"})
                        else:
                            service.proxy_api("DELETE", NOTEBOOK_ROUTES + page)
                    routed = way == "container"
                    log(f"route: round {i + 1}, {way}")
                    _, summary, _ = burst(landed, image=TINY_IMAGE, bound=self.args.bound)
                    out[way].append({key: summary[key] for key in ("served", "p50", "p90", "max")})
        result = {"visitors": n, "rounds": rounds, "leftovers": service.leftovers}
        for way, runs in out.items():
            result[way] = {key: statistics.median(run[key] for run in runs if run[key] is not None) for key in ("p50", "p90", "max")}
            result[way]["runs"] = runs
        return result

    def case_cpu(self):
        """The web process's CPU time (gunicorn master and workers) per
        admission, with visitors arriving one after another."""
        n = self.args.cpu_visitors
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="cpu") as service:
            service.wait_ready(n)
            web = service.processes()["web"]
            log(f"cpu: {n} visitors one after another")
            before = process_cpu_seconds(web)
            summary = one_after_another(f"{service.url}/spawn/", n, image=TINY_IMAGE, bound=self.args.bound)
            cpu = process_cpu_seconds(web) - before
        served = summary["served"]
        return {
            "visitors": n,
            "served": served,
            "web_cpu_seconds": round(cpu, 3),
            "ms_per_admission": round(1000 * cpu / served, 1) if served else None,
            "p50": summary["p50"],
            "max": summary["max"],
            "errors": summary["errors"],
            "leftovers": service.leftovers,
        }

    def case_instructions(self):
        """The service's own work per admission, in one process without HTTP
        (deploy/benchmark/admissions.py): its CPU time with visitors back to
        back and with a pause between them, and the instructions valgrind
        counts, a figure that the machine's other work does not move. The
        count is the difference between a run of 2N visitors and one of N, so
        that start-up and set-up, the same in both, drop out."""
        timed = {pause: admissions(ADMISSIONS_TIMED, pause=pause)["cpu_ms_per_admission"] for pause in (0.0, ADMISSIONS_PAUSE)}
        with_history = admissions(ADMISSIONS_TIMED, pause=0.0, history=ADMISSIONS_HISTORY)["cpu_ms_per_admission"]
        n, rows = ADMISSIONS_COUNTED, 2 * ADMISSIONS_COUNTED
        counted = [instructions(["-m", "deploy.benchmark.admissions", str(visitors), "--rows", str(rows)]) for visitors in (n, 2 * n)]
        return {
            "timed_visitors": ADMISSIONS_TIMED,
            "cpu_ms_back_to_back": timed[0.0],
            "pause_seconds": ADMISSIONS_PAUSE,
            "cpu_ms_with_pause": timed[ADMISSIONS_PAUSE],
            "history_visitors": ADMISSIONS_HISTORY,
            "cpu_ms_with_history": with_history,
            "counted_visitors": n,
            "instructions_per_admission": round((counted[1] - counted[0]) / n),
        }

    def case_footprint(self):
        n = 20
        with self.service(image=TINY_IMAGE, pool_size=n, ready_target=n, name="footprint") as service:
            service.wait_ready(n)
            idle = memory(service)
            log(f"footprint: {n} visitors take the ready containers")
            _, summary, _ = burst([f"{service.url}/spawn/"] * n, image=TINY_IMAGE, bound=self.args.bound, retry_interval=self.args.retry_interval)
            time.sleep(2 * self.args.heartbeat)
            in_use = memory(service)
            counts = service.counts()
        return {"ready_idle": idle, "in_use": in_use, "served": summary["served"], "counts_in_use": counts, "leftovers": service.leftovers}

    def case_sweep(self):
        return sweep()

    def case_room(self):
        return case_room(self, self.args.room_sizes)

    def case_soak(self):
        return soak(self.args.minutes, keep_state=self.args.keep_state)

    def run(self, cases):
        order = ["refill", "a", "b", "c", "route", "cpu", "instructions", "footprint", "sweep", "room", "soak"]
        for name in sorted(cases, key=order.index):
            log(f"=== case {name}")
            busy = wait_quiet(self.args.wait_quiet) if name != "sweep" else None
            started = time.monotonic()
            try:
                self.results["cases"][name] = getattr(self, f"case_{name}")()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:
                log(f"case {name} failed: {error!r}")
                self.results["cases"][name] = {"error": repr(error)[:2000]}
            self.results["cases"][name]["wall_seconds"] = round(time.monotonic() - started, 1)
            self.results["cases"][name]["machine_busy_before"] = busy
        self.results["raw"] = [value for value in self.raw.values()]
        self.results["targets"] = check_targets(self.results["cases"], self.raw)
        return self.results


def sweep():
    """Issue 6, part 3: one reconcile and one cull tick with 1,000 live
    sessions (rows, proxy routes and sleeping tiny containers), timed, with the
    calls each makes to Docker and the proxy: deploy/benchmark/sweep.py, in a
    process of its own so that it has Django and a database of its own."""
    figures = run_module("sweep", timeout=1200)
    for tick in ("reconcile", "cull"):
        calls = figures[f"{tick}_calls"]
        figures[f"{tick}_list_calls"] = calls["docker_list"] + calls["proxy_list"]
    return figures


def admissions(visitors, *, pause, history=0):
    return run_module("admissions", str(visitors), "--pause", str(pause), "--history", str(history), timeout=600)


def run_module(module, *args, timeout):
    """Run deploy/benchmark/<module>.py in a process of its own and return
    the figures it prints as JSON on its last line."""
    result = subprocess.run([sys.executable, "-m", f"deploy.benchmark.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/benchmark/{module}.py failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def instructions(python_args):
    """Instructions that valgrind's callgrind counts for a Python run (a
    fixed hash seed: the same run counts the same, to a few in 100,000)."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *python_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    collected = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or not collected:
        raise RuntimeError(f"valgrind failed:\n{result.stderr[-3000:]}")
    return int(collected.group(1))


def fmt(value, unit="s"):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f} {unit}".strip()
    return str(value)


def verdict(ok):
    return "met" if ok else "MISSED"


def check_targets(cases, raw):
    """Each target of issues 6 and 11 with the figure measured, met or missed."""
    out = []

    def add(case, target, figure, ok):
        out.append({"case": case, "target": target, "figure": figure, "status": "not measured" if ok is None else verdict(ok)})

    a = cases.get("a")
    if a and "p50" in a:
        add("a", f"p50 <= {TARGETS['a_p50']} s", fmt(a["p50"]), a["p50"] is not None and a["p50"] <= TARGETS["a_p50"])
        add("a", f"max <= {TARGETS['a_max']} s", fmt(a["max"]), a["max"] is not None and a["max"] <= TARGETS["a_max"])
        ratio = a.get("to_floor", {}).get("p50")
        add(
            "a",
            f"p50 <= {TARGETS['a_floor_factor']} x the floor's p50 ({fmt(a.get('floor', {}).get('p50'))})",
            "-" if ratio is None else f"{ratio} x",
            None if ratio is None else ratio <= TARGETS["a_floor_factor"],
        )
        add(
            "a",
            "no failure, no duplicate",
            f"{a['served']}/{a['visitors']} served, {a['failed']} failed, {a['turned_away']} turned away, {a['refused']} refused, {a['duplicates']} duplicates",
            a["served"] == a["visitors"] and a["duplicates"] == 0,
        )
    b = cases.get("b")
    if b and "p50" in b:
        add("b", f"p50 <= {TARGETS['b_p50']} s", fmt(b["p50"]), b["p50"] is not None and b["p50"] <= TARGETS["b_p50"])
        add("b", f"p99 <= {TARGETS['b_p99']} s", fmt(b["p99"]), b["p99"] is not None and b["p99"] <= TARGETS["b_p99"])
    c = cases.get("c")
    if c and "served" in c and c["visitors"] > c["ready_target"]:
        add(
            "c",
            "all served, none turned away",
            f"{c['served']}/{c['visitors']} served, {c['turned_away']} turned away, {c['refused']} refused, {c['failed']} failed",
            c["served"] == c["visitors"] and c["turned_away"] == 0,
        )
        add(
            "c",
            f"last served <= {TARGETS['c_last_factor']} x raw time for {c['visitors'] - c['ready_target']} extra ({fmt(c['bound_last'])})",
            fmt(c["max"]),
            c["max"] is not None and c["max"] <= c["bound_last"],
        )
    cpu = cases.get("cpu")
    if cpu and "ms_per_admission" in cpu:
        add(
            "cpu",
            f"web CPU per admission <= {TARGETS['cpu_ms']} ms",
            fmt(cpu["ms_per_admission"], "ms"),
            cpu["ms_per_admission"] is not None and cpu["ms_per_admission"] <= TARGETS["cpu_ms"],
        )
    refill = cases.get("refill")
    if refill and "error" not in refill:
        for kind, result in refill.items():
            if not isinstance(result, dict) or "raw" not in result:
                continue
            add(
                "refill",
                f"{kind}: refill >= {TARGETS['refill_ratio']} x raw",
                f"{result['refill']['per_second']}/s vs raw {result['raw']['per_second']}/s = {result['ratio_refill']}",
                result["ratio_refill"] >= TARGETS["refill_ratio"],
            )
            add(
                "refill",
                f"{kind}: prefill >= {TARGETS['refill_ratio']} x raw",
                f"{result['prefill']['per_second']}/s vs raw {result['raw']['per_second']}/s = {result['ratio_prefill']}",
                result["ratio_prefill"] >= TARGETS["refill_ratio"],
            )
    sweep = cases.get("sweep")
    if sweep is not None:
        if "reconcile_seconds" in sweep:
            worst = max(sweep["reconcile_seconds"], sweep["cull_seconds"])
            calls = max(sweep["reconcile_list_calls"], sweep["cull_list_calls"])
            add(
                "sweep",
                f"tick <= {TARGETS['sweep_seconds']} s, <= {TARGETS['sweep_calls']} list calls",
                f"{worst:.3f} s, {calls} calls",
                worst <= TARGETS["sweep_seconds"] and calls <= TARGETS["sweep_calls"],
            )
        else:
            add("sweep", f"tick <= {TARGETS['sweep_seconds']} s, <= {TARGETS['sweep_calls']} list calls", "not measured yet", None)
    footprint = cases.get("footprint")
    if footprint and "ready_idle" in footprint:
        total = footprint["ready_idle"]["service"]["rss_mib"]
        add("footprint", f"web+worker+beat+proxy RSS <= {TARGETS['footprint_mib']} MiB, 20 ready", f"{total} MiB", total <= TARGETS["footprint_mib"])
    return out
