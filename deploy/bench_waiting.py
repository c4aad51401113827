"""The waiting room's estimate against the real wait (issue 7).

Brings deploy/up up on loopback with a small pool of the tiny image whose
sessions are culled a fixed time after assignment (TMPNB_CULL_MAX), so places
free up at a steady rate; fills it, then lets visitors arrive one after
another. Each visitor records the estimate its waiting page first showed and
how long it really waited. Prints both and the error. Run with the project's
venv: .venv/bin/python deploy/bench_waiting.py
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import html
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from bench import COOKIE_STEP

ROOT = Path(__file__).resolve().parent.parent
TINY_COMMAND = (
    "sh -c 'mkdir -p /www{base_path} && echo tree {base_path} > /www{base_path}tree"
    " && echo up > /www{base_path}index.html && exec httpd -f -p {port} -h /www'"
)
CAPACITY, HOLD_SECONDS, VISITORS, ARRIVAL_GAP = 4, 24, 8, 3


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def visitor(url, n, results):
    browser = requests.Session()
    arrived = time.monotonic()
    page = browser.get(f"{url}/", timeout=30)
    step = COOKIE_STEP.search(page.text)
    if step:  # the cookie step's page goes on by itself in a browser
        page = browser.get(urljoin(page.url, html.unescape(step.group(1))), timeout=30)
    if "/user/" in page.url:
        results.append({"visitor": n, "estimate": 0, "waited": round(time.monotonic() - arrived, 2)})
        return
    # The first estimate the page shows that is a number: "unknown yet" until
    # the pool has seen a place free up. Its error is against the wait left then.
    first = None
    while True:
        status = browser.get(f"{url}/waiting/status", timeout=10).json()
        if status["status"] == "ready":
            break
        if first is None and status.get("estimate_seconds") is not None:
            first = (time.monotonic(), status)
        time.sleep(0.5)
    ready = time.monotonic()
    seen_at, shown = first if first else (arrived, {})
    results.append({"visitor": n, "position": shown.get("position"), "estimate": shown.get("estimate_seconds"),
                    "waited": round(ready - seen_at, 2), "waited_in_all": round(ready - arrived, 2)})


def main():
    state = tempfile.mkdtemp(prefix="tmpnb-bench-waiting.")
    ports = {name: str(free_port()) for name in ("TMPNB_PUBLIC_PORT", "TMPNB_PROXY_API_PORT", "TMPNB_PORT", "TMPNB_REDIS_PORT")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CONFIGPROXY", "TMPNB_", "REDIS_URL", "DATABASE_URL"))}
    env.update(ports, TMPNB_PUBLIC_IP="127.0.0.1", TMPNB_STATE=state, TMPNB_INSTALLATION=f"benchwait{os.getpid()}",
               TMPNB_POOL_SIZE=str(CAPACITY), TMPNB_IMAGE="tmpnb/tiny:latest", TMPNB_COMMAND=TINY_COMMAND,
               TMPNB_MEM_LIMIT="64m", TMPNB_CULL_MAX=str(HOLD_SECONDS), TMPNB_CULL_PERIOD="1", TMPNB_HEARTBEAT="1",
               TMPNB_VENV=str(Path(sys.executable).parent.parent))
    url = f"http://127.0.0.1:{ports['TMPNB_PUBLIC_PORT']}"
    service = subprocess.Popen(["bash", ROOT / "deploy/up"], env=env, stdout=open(f"{state}/up.log", "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while "tmpnb is up" not in Path(f"{state}/up.log").read_text():
            time.sleep(0.5)
        results, threads = [], []
        # The first visitors hold every place; later ones wait for culls to free them.
        for n in range(CAPACITY + VISITORS):
            thread = threading.Thread(target=visitor, args=(url, n, results))
            thread.start()
            threads.append(thread)
            time.sleep(ARRIVAL_GAP if n >= CAPACITY else 0.5)
        for thread in threads:
            thread.join(300)
        waited = [r for r in sorted(results, key=lambda r: r["visitor"]) if "waited_in_all" in r]
        for r in waited:
            error = None if r["estimate"] is None else round(r["estimate"] - r["waited"], 1)
            r["error"] = error
            print(f"visitor {r['visitor']:>2}: position {r['position']}, estimate {r['estimate']} s, "
                  f"then waited {r['waited']} s ({r['waited_in_all']} s in all), error {error}")
        errors = [abs(r["error"]) for r in waited if r["error"] is not None]
        if errors:
            print(f"mean absolute error {sum(errors) / len(errors):.1f} s over {len(errors)} estimates; "
                  f"{len(waited) - len(errors)} visitors never saw a number (served before a place had freed up)")
        print(json.dumps(waited))
    finally:
        os.kill(service.pid, signal.SIGTERM)
        service.wait(60)
        subprocess.run(["bash", ROOT / "deploy/down"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
