"""The soak of issue 33: participants come and go for ``minutes`` (they land,
run code that writes a file, work, go idle and are culled, or are killed by
an organiser) while faults are injected one after another. It reports the
sessions lost and the work lost (both must be 0), how long the service took
to heal after each fault, the 5xx answers, and the landing times of the
others while one participant misbehaves.

The service runs as deploy/systemd runs it: Redis, the proxy, gunicorn, a
Celery worker and beat (service.py's Units), each killed and started
again on its own as systemd would (deploy/up stops everything once one of
its processes ends). Its Docker engine is a private dockerd
(tests/dockerd.py), so restarting it disturbs no one else on the machine,
and its snapshots folder is a small tmpfs, so "disk nearly full" fills that
and not the machine's disk. The image is the tiny busybox one (tmpnb/tiny):
no fault needs Jupyter, and churn is fast. Needs root (dockerd, iptables,
mount).
"""

import contextlib
import os
import random
import re
import secrets
import signal
import subprocess
import threading
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import mkdtemp
from unittest import mock

import requests

from deploy.benchmark import Case, eventually, log, spread
from deploy.benchmark.images import docker_client
from deploy.benchmark.machine import container_cores
from deploy.benchmark.service import Units
from deploy.benchmark.visitors import new_browser, visit, visitor_address
from tests.dockerd import private_dockerd
from tests.stack import TINY_IMAGE, TINY_WORK_COMMAND

# Ends that are a session's own; any other end loses it.
FINE_ENDS = {"culled-idle", "culled-age", "killed", "disk-full"}
POOL_SIZE, READY_TARGET = 12, 3
SNAPSHOT_FS_MB = 64  # the tmpfs under TMPNB_VAR_DIR/snapshots
NEARLY_FULL_LEFT = 2 * 1024 * 1024  # bytes left free while "disk nearly full"
UNANSWERED_GRACE = 30  # seconds a live notebook may not answer (a restarting proxy) before it counts as lost
HEAL_BOUND = 120  # seconds: a fault not healed by then is reported as not healed
PROBES = 5  # visitors landed one after another while a participant misbehaves
FORM_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
WARNED = "SELECT 1 FROM pool_event e JOIN pool_container c ON e.container_id = c.id WHERE c.path_id = ? AND e.kind = 'disk' AND e.message LIKE '%warned%'"


@dataclass(frozen=True)
class Plan:
    minutes: float
    arrive_every: float  # mean seconds between two arrivals
    active: float  # seconds a participant works before going idle
    cull_timeout: int
    hold: float  # seconds a process or the disk stays down or full
    disk_limit_mb: int = 20
    kill_share: float = 0.3  # of the participants, killed by an organiser (the others are culled)

    @classmethod
    def for_minutes(cls, minutes):
        if minutes < 10:  # the CI version: every fault once, in a few minutes
            return cls(minutes, arrive_every=4, active=6, cull_timeout=10, hold=2)
        return cls(minutes, arrive_every=6, active=20, cull_timeout=30, hold=10)


class SoakService(Units):
    """The service as deploy/systemd runs it (deploy/benchmark/service.py's
    Units), with the soak's settings and its snapshots on a small tmpfs."""

    def __init__(self, *, plan, docker_host):
        env = {"DOCKER_HOST": docker_host, "TMPNB_CULL_TIMEOUT": plan.cull_timeout, "TMPNB_CULL_PERIOD": 1, "TMPNB_DISK_PERIOD": 1}
        env |= {"TMPNB_DISK_LIMIT": f"{plan.disk_limit_mb}m", "TMPNB_SNAPSHOT_MAX_MB": 1, "TMPNB_LONG_POLLS": 16}
        super().__init__(image=TINY_IMAGE, command=TINY_WORK_COMMAND, pool_size=POOL_SIZE, ready_target=READY_TARGET, heartbeat=1.0, name="soak", env=env)
        self.snapshots = self.state / "var" / "snapshots"

    def start(self):
        self.snapshots.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SNAPSHOT_FS_MB}m", "tmpfs", str(self.snapshots)], check=True)
        return super().start()

    def clean_up(self):
        subprocess.run(["umount", "-l", str(self.snapshots)], check=False)
        super().clean_up()

    def ready(self):
        return self.counts().get("ready", 0)

    def row(self, path_id):
        """The notebook's container and session, and its session's snapshot."""
        sql = (
            "SELECT c.backend_id, s.id, s.ended_at, s.end_reason, sn.taken_at, sn.file_name, sn.error FROM pool_container c"
            " LEFT JOIN pool_session s ON s.container_id = c.id LEFT JOIN pool_snapshot sn ON sn.session_id = s.id WHERE c.path_id = ?"
        )
        found = self.query(sql, (path_id,))
        keys = ("backend_id", "session", "ended_at", "end_reason", "taken_at", "file_name", "error")
        return dict(zip(keys, found[0], strict=True)) if found else None


class Organiser:
    """The admin's kill action, through the proxy, as an organiser clicks it."""

    def __init__(self, url, password):
        self.url, self.password = url, password
        self.browser = new_browser()

    def _form_token(self, page):
        answer = self.browser.get(f"{self.url}{page}", timeout=10)
        found = FORM_TOKEN.search(answer.text)
        return answer, found and found.group(1)

    def _kill_once(self, session_id):
        answer, token = self._form_token("/admin/pool/session/")
        if "/admin/login/" in answer.url:
            data = {"username": "admin", "password": self.password, "csrfmiddlewaretoken": token, "next": "/admin/pool/session/"}
            answer = self.browser.post(answer.url, data=data, timeout=10)
            token = (found := FORM_TOKEN.search(answer.text)) and found.group(1)
        data = {"action": "kill", "_selected_action": [session_id], "csrfmiddlewaretoken": token}
        answer = self.browser.post(f"{self.url}/admin/pool/session/", data=data, timeout=10)
        return answer.ok and "/admin/login/" not in answer.url

    def kill(self, session_id):
        return bool(eventually(lambda: self._kill_once(session_id), HEAL_BOUND, interval=1))


class Soak:
    def __init__(self, service, engine, plan):
        self.service, self.engine, self.plan = service, engine, plan
        self.organiser = Organiser(service.url, service.admin_password)
        self.lock = threading.Lock()
        self.during = None  # the misbehaviour under way, if any
        self.fault = None  # the fault injected or healing, if any: what a failure is put down to
        self.failed_landings = Counter()  # (fault, error) of each visitor not served
        self.landings, self.answers, self.outcomes = [], Counter(), Counter()
        self.lost, self.work_lost, self.work_saved, self.faults = {}, {}, 0, []
        self.visitors, self.threads, self.stopping, self.errors = 0, [], threading.Event(), []

    # --- one participant -------------------------------------------------

    def answered(self, response):
        if response.status_code >= 500:
            kind = "nothing ready (503 with Retry-After)" if "Retry-After" in response.headers else f"HTTP {response.status_code}"
            with self.lock:
                self.answers[f"{kind} ({self.fault or 'no fault'})"] += 1

    def land(self):
        """A new visitor lands; (path_id, url), or None if it was not served."""
        with self.lock:
            i, self.visitors = self.visitors, self.visitors + 1
            during = self.during
        result = visit(
            f"{self.service.url}/spawn/", threading.Barrier(1), image=TINY_IMAGE, bound=HEAL_BOUND, address=visitor_address(i), on_response=self.answered
        )
        with self.lock:
            self.outcomes[result["outcome"]] += 1
            if result["outcome"] == "served":
                self.landings.append((result["seconds"], during))
            else:
                self.failed_landings[f"{self.fault or 'no fault'}: {result['error'] or result['outcome']}"] += 1
        return (result["path_id"], result["landed_url"]) if result["outcome"] == "served" else None

    def run_code(self, path_id, script, detach=False):
        """Run ``script`` in the notebook, as its terminal would (retried while Docker restarts)."""

        def once():
            client = docker_client()
            try:
                found = client.containers.get(self.service.row(path_id)["backend_id"]).exec_run(["sh", "-c", script], detach=detach)
                return detach or found.exit_code == 0
            finally:
                client.close()

        return bool(eventually(once, HEAL_BOUND, interval=1))

    def write_work(self, path_id):
        name, content = f"work-{secrets.token_hex(4)}.txt", secrets.token_hex(8)
        return (name, content) if self.run_code(path_id, f"echo {content} > /work/{name}") else None

    def work(self, path_id, url, seconds):
        """Use the notebook for ``seconds``; a notebook that stops answering
        for UNANSWERED_GRACE while its row says live is lost."""
        browser = new_browser()
        end, silent_since = time.monotonic() + seconds, None
        while time.monotonic() < end or silent_since is not None:
            try:
                response = browser.get(url, timeout=5)
                self.answered(response)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            if ok or self.service.row(path_id)["ended_at"] is not None:
                silent_since = None
            elif silent_since is None:
                silent_since = time.monotonic()
            elif time.monotonic() - silent_since > UNANSWERED_GRACE:
                self.lose(path_id, "its notebook stopped answering while its row said live")
                return False
            time.sleep(2)
        return True

    def lose(self, path_id, why):
        with self.lock:
            self.lost.setdefault(path_id, why)
        log(f"session {path_id} lost: {why}")

    def finish(self, path_id, work, kill=False, reason=None):
        """End the session (the organiser's kill, or wait for its cull), then
        check how it ended and that the work written is in its snapshot."""
        if kill and not self.organiser.kill(self.service.row(path_id)["session"]):
            self.lose(path_id, "the organiser's kill was never taken")
        timeout = self.plan.cull_timeout + HEAL_BOUND
        # The copy is closed (taken_at) a moment before its zip is recorded (file_name).
        row = eventually(lambda: (found := self.service.row(path_id))["taken_at"] and (found["file_name"] or found["error"]) and found, timeout)
        row = row or self.service.row(path_id)
        if row["end_reason"] not in FINE_ENDS or (reason and row["end_reason"] != reason):
            self.lose(path_id, f"ended {row['end_reason'] or 'never'}")
        try:
            with zipfile.ZipFile(self.service.snapshots / row["file_name"]) as saved:
                kept = saved.read(work[0]).decode().strip() == work[1]
        except (OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
            kept, row["error"] = False, row["error"] or repr(error)
        with self.lock:
            if kept:
                self.work_saved += 1
            else:
                self.work_lost[path_id] = row["error"] or "not in its snapshot"
        return row

    def participant(self, kill):
        try:
            self.come_and_go(kill)
        except Exception as error:  # the soak's own failure (the record unreadable...): shown, not hidden
            log(f"a participant failed: {error!r}")
            with self.lock:
                self.errors.append(repr(error)[:300])

    def come_and_go(self, kill):
        if self.stopping.is_set() or not (landed := self.land()):
            return
        path_id, url = landed
        work = self.write_work(path_id)
        if work is None:
            self.lose(path_id, "could not run code in it")
        elif self.work(path_id, url, self.plan.active * random.uniform(0.5, 1.5)):
            self.finish(path_id, work, kill=kill)

    # --- the churn and the faults -----------------------------------------

    def arrivals(self):
        while not self.stopping.wait(self.plan.arrive_every * random.uniform(0.5, 1.5)):
            thread = threading.Thread(target=self.participant, args=(random.random() < self.plan.kill_share,), daemon=True)
            thread.start()
            self.threads.append(thread)

    @contextlib.contextmanager
    def misbehaving(self, what):
        """Landings in the block are the others' while ``what`` goes on."""
        self.during = what
        try:
            yield
        finally:
            self.during = None

    def probes(self, count=PROBES):
        for _ in range(count):
            self.land()

    def heal(self, name, injected, cleared, **details):
        """How long after the fault was cleared a new visitor landed and the
        pool was full again."""
        landed = eventually(self.land, HEAL_BOUND, interval=0.2)
        landed_at = time.monotonic()
        refilled = eventually(lambda: self.service.ready() >= READY_TARGET, HEAL_BOUND, interval=0.2)
        fault = {"fault": name, "seconds": round(cleared - injected, 1), "healed": bool(landed and refilled)}
        fault |= {
            "landed_after": round(landed_at - cleared, 1) if landed else None,
            "refilled_after": round(time.monotonic() - cleared, 1) if refilled else None,
        }
        self.faults.append(fault | details)
        log(f"fault {name}: {fault | details}")

    def process_fault(self, role, sig=signal.SIGTERM):
        injected = time.monotonic()
        self.service.restart(role, sig, hold=self.plan.hold)
        return injected, time.monotonic()

    def dockerd_restart(self):
        injected = time.monotonic()
        self.engine.stop(signal.SIGTERM, timeout=30)
        time.sleep(self.plan.hold)
        self.engine.start()
        return injected, time.monotonic()

    def disk_nearly_full(self):
        """The snapshots' disk filled but for NEARLY_FULL_LEFT while sessions end."""
        filler = self.service.snapshots / "soak-filler.bin"
        injected = time.monotonic()
        stats = os.statvfs(self.service.snapshots)
        subprocess.run(["fallocate", "-l", str(max(stats.f_bavail * stats.f_frsize - NEARLY_FULL_LEFT, 0)), str(filler)], check=True)
        with self.misbehaving("disk nearly full"):
            self.probes()
            time.sleep(max(self.plan.cull_timeout, 5 * self.plan.hold))  # sessions are culled and saved meanwhile
        filler.unlink()
        return injected, time.monotonic()

    def disk_filler(self):
        """One participant writes past TMPNB_DISK_LIMIT in two steps: warned, then ended with the work saved."""
        path_id, _ = eventually(self.land, HEAL_BOUND)
        work, limit = self.write_work(path_id), self.plan.disk_limit_mb
        injected = time.monotonic()
        with self.misbehaving("a participant fills their disk"):
            self.run_code(path_id, f"dd if=/dev/zero of=/work/big1.bin bs=1M count={round(0.85 * limit)}")
            warned = eventually(lambda: self.service.query(WARNED, (path_id,)), 30)
            self.run_code(path_id, f"dd if=/dev/zero of=/work/big2.bin bs=1M count={round(0.3 * limit)}")
            self.probes()
            row = self.finish(path_id, work, reason="disk-full")
        return injected, time.monotonic(), {"warned": bool(warned), "ended": row["end_reason"]}

    def busy_looper(self):
        """One participant busy-loops on every core; the CPU quota holds them to one."""
        path_id, _ = eventually(self.land, HEAL_BOUND)
        work = self.write_work(path_id)
        loops = " ".join(["(while :; do :; done) &"] * (os.cpu_count() or 2))
        injected = time.monotonic()
        self.run_code(path_id, f"{loops} wait", detach=True)
        with self.misbehaving("a participant busy-loops on every core"):
            cores = container_cores(self.service.row(path_id)["backend_id"])
            self.probes()
            self.finish(path_id, work, kill=True)
        return injected, time.monotonic(), cores

    def faults_in_turn(self, started):
        """Each fault at its time, spread over the soak, then its heal measured."""
        faults = [
            ("Celery worker killed (SIGKILL)", lambda: self.process_fault("worker", signal.SIGKILL)),
            ("dockerd restarted", self.dockerd_restart),
            ("Redis restarted", lambda: self.process_fault("redis")),
            ("proxy restarted", lambda: self.process_fault("proxy")),
            ("gunicorn restarted", lambda: self.process_fault("web")),
            ("disk nearly full", self.disk_nearly_full),
            ("a participant fills their disk", self.disk_filler),
            ("a participant busy-loops on every core", self.busy_looper),
        ]
        total = self.plan.minutes * 60
        warm_up = min(60, 0.1 * total)
        spacing = (0.8 * total - warm_up) / len(faults)
        for n, (name, inject) in enumerate(faults):
            time.sleep(max(0, started + warm_up + n * spacing - time.monotonic()))
            log(f"fault {n + 1}/{len(faults)}: {name}")
            self.fault = name
            try:
                injected, cleared, *details = inject()
                self.heal(name, injected, cleared, **(details[0] if details else {}))
            finally:
                self.fault = None

    def run(self):
        started = time.monotonic()
        arrivals = threading.Thread(target=self.arrivals, daemon=True)
        arrivals.start()
        try:
            self.faults_in_turn(started)
            time.sleep(max(0, started + self.plan.minutes * 60 - time.monotonic()))
        finally:
            self.stopping.set()
            arrivals.join()
        log(f"churn over: waiting for the {sum(t.is_alive() for t in self.threads)} participants still there")
        for thread in self.threads:
            thread.join(self.plan.cull_timeout + 3 * HEAL_BOUND)
        self.tally_the_record()
        return self.report(time.monotonic() - started)

    def tally_the_record(self):
        """Every session in the service's record, the probes' too, once the
        live ones have been culled: an end that is not one of FINE_ENDS loses it."""
        eventually(lambda: not self.service.query("SELECT 1 FROM pool_session WHERE ended_at IS NULL"), self.plan.cull_timeout + HEAL_BOUND)
        sql = "SELECT c.path_id, s.end_reason FROM pool_session s JOIN pool_container c ON s.container_id = c.id"
        self.sessions = self.service.query(sql)
        for path_id, reason in self.sessions:
            if reason not in FINE_ENDS:
                self.lose(path_id, f"ended {reason or 'never'}")

    def report(self, seconds):
        times = [round(landed, 3) for landed, _ in self.landings]
        while_ = {}
        for landed, during in sorted(self.landings, key=lambda landing: landing[0]):
            while_.setdefault(during or "nobody misbehaving", []).append(round(landed, 3))
        return {
            "minutes": self.plan.minutes,
            "plan": asdict(self.plan),
            "wall_seconds": round(seconds, 1),
            "visitors": self.visitors,
            "outcomes": dict(self.outcomes),
            "sessions": len(self.sessions),
            "sessions_lost": len(self.lost),
            "lost": self.lost,
            "work_saved": self.work_saved,
            "work_lost": len(self.work_lost),
            "work_lost_detail": self.work_lost,
            "faults": self.faults,
            "answers": dict(self.answers),
            "failed_landings": dict(self.failed_landings),
            "ended_on_their_own": self.service.exits,
            "soak_errors": self.errors,
            "landing": {"n": len(times), **spread(times, "p50", "p99", "max")},
            "landing_while": {what: {"n": len(t), **spread(t, "p50", "p99")} for what, t in while_.items()},
        }


def soak(minutes=45, keep_state=False, seed=None):
    """The whole soak: a private dockerd, the service on it, the churn and the faults."""
    random.seed(seed)
    plan = Plan.for_minutes(minutes)
    engine_folder = Path(mkdtemp(prefix="tmpnb-soak-dockerd-", dir="/var/tmp"))
    # This process's Docker calls (the benchmark's docker_client) go to the private engine too.
    with private_dockerd(engine_folder, [TINY_IMAGE]) as engine, mock.patch.dict(os.environ, DOCKER_HOST=engine.socket):
        service = SoakService(plan=plan, docker_host=engine.socket)
        service.keep_state = keep_state
        with service:
            eventually(lambda: service.ready() >= READY_TARGET, HEAL_BOUND)
            log(f"soak: {minutes} minutes of churn, {plan}")
            return Soak(service, engine, plan).run()


TITLE = "\nsoak (deploy/benchmark/soak.py; sessions lost and work lost must be 0)"


def show(result, out):
    print(TITLE, file=out)
    print(
        f"  {result['minutes']} min: {result['visitors']} visitors ({result['outcomes']}), {result['sessions']} sessions;"
        f" sessions lost {result['sessions_lost']}, work lost {result['work_lost']} (saved {result['work_saved']})",
        file=out,
    )
    print(f"  5xx answers: {result['answers'] or 'none'}", file=out)
    print(f"  visitors not served: {result['failed_landings'] or 'none'}", file=out)
    for end in result["ended_on_their_own"]:
        print(f"  {end['role']} ended on its own (exit status {end['exit_status']}), started again: {end['last_error']}", file=out)
    for fault in result["faults"]:
        extra = {k: v for k, v in fault.items() if k not in ("fault", "seconds", "healed", "landed_after", "refilled_after")}
        print(
            f"  {fault['fault']:<40} {'healed' if fault['healed'] else 'NOT HEALED':<10} lasted {fault['seconds']} s,"
            f" then landed {fault['landed_after']} s, refilled {fault['refilled_after']} s {extra or ''}",
            file=out,
        )
    for what, landing in result["landing_while"].items():
        print(f"  landing while {what}: p50 {landing['p50']} s, p99 {landing['p99']} s ({landing['n']} visitors)", file=out)
    for path_id, why in {**result["lost"], **result["work_lost_detail"]}.items():
        print(f"  {path_id}: {why}", file=out)


CASE = Case(
    run=lambda bench: soak(bench.args.minutes, keep_state=bench.args.keep_state),
    show=show,
    title=TITLE.strip(),
    images=lambda args: [TINY_IMAGE],
    named_only=True,
)
