"""The Celery worker deploy/up runs, with beat inside it (worker --beat),
stops without leaving its beat process behind."""

import subprocess
import sys

from tests.stack import BIN, ROOT

# Run as a child subreaper: a process the worker leaves behind when it exits is
# then handed to this script rather than to init, which sees it for certain
# (init reaps orphans at its own pace, so a check from outside would race it).
WATCH_THE_WORKER = r"""
import ctypes, os, signal, subprocess, sys, time
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
log = open(sys.argv[1], "wb")
worker = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
deadline = time.monotonic() + 60
while b"beat: Starting" not in open(sys.argv[1], "rb").read():
    assert worker.poll() is None and time.monotonic() < deadline, "the worker did not start beat"
    time.sleep(0.2)
worker.send_signal(signal.SIGTERM)
worker.wait(60)
deadline = time.monotonic() + 15
while True:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        print("nothing left behind")
        sys.exit(0)
    if pid:
        print(f"the worker exited before its child {pid}, which it left to be reaped by init")
        sys.exit(1)
    if time.monotonic() > deadline:
        print("a child of the worker still runs after it exited")
        sys.exit(1)
    time.sleep(0.1)
"""


def test_a_worker_with_beat_inside_reaps_beat_before_it_exits(redis_server, tmp_path):
    worker = [BIN / "celery", "-A", "tmpnb_site", "worker", "--beat", "--schedule", tmp_path / "beat-schedule", "--loglevel", "INFO"]
    env = {
        "PATH": "/usr/bin:/bin",
        "C_FORCE_ROOT": "1",
        "REDIS_URL": redis_server.url,
        "TMPNB_VAR_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": "test-" + "k" * 50,
        "CONFIGPROXY_AUTH_TOKEN": "test-token",
        "TMPNB_HEARTBEAT": "3600",
    }
    watched = subprocess.run(
        [sys.executable, "-c", WATCH_THE_WORKER, tmp_path / "worker.log", *worker],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr + (tmp_path / "worker.log").read_text()[-2000:]
