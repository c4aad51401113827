"""The waiting room's estimate against the real wait (issue 7).

Brings deploy/up up on loopback with a small pool of the tiny image whose
sessions are culled a fixed time after assignment (TMPNB_CULL_MAX), so places
free up at a steady rate; fills it, then lets visitors arrive one after
another. Each visitor records the estimate its waiting page first showed and
how long it really waited. Prints both and the error. Run with the project's
venv: .venv/bin/python -m deploy.benchmark.waiting
"""

import json
import threading
import time

from deploy.benchmark.images import TINY_IMAGE
from deploy.benchmark.service import Service
from tests.stack import Browser

CAPACITY, HOLD_SECONDS, VISITORS, ARRIVAL_GAP = 4, 24, 8, 3


def visitor(url, n, results):
    browser = Browser()
    arrived = time.monotonic()
    page = browser.get(f"{url}/", timeout=30)
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
    results.append(
        {
            "visitor": n,
            "position": shown.get("position"),
            "estimate": shown.get("estimate_seconds"),
            "waited": round(ready - seen_at, 2),
            "waited_in_all": round(ready - arrived, 2),
        }
    )


def main():
    settings = {"TMPNB_MEM_LIMIT": "64m", "TMPNB_CULL_MAX": HOLD_SECONDS, "TMPNB_CULL_PERIOD": 1}
    with Service(image=TINY_IMAGE, pool_size=CAPACITY, heartbeat=1, name="waiting", env={k: str(v) for k, v in settings.items()}) as service:
        results, threads = [], []
        # The first visitors hold every place; later ones wait for culls to free them.
        for n in range(CAPACITY + VISITORS):
            thread = threading.Thread(target=visitor, args=(service.url, n, results))
            thread.start()
            threads.append(thread)
            time.sleep(ARRIVAL_GAP if n >= CAPACITY else 0.5)
        for thread in threads:
            thread.join(300)
    waited = [r for r in sorted(results, key=lambda r: r["visitor"]) if "waited_in_all" in r]
    for r in waited:
        error = None if r["estimate"] is None else round(r["estimate"] - r["waited"], 1)
        r["error"] = error
        print(
            f"visitor {r['visitor']:>2}: position {r['position']}, estimate {r['estimate']} s, "
            f"then waited {r['waited']} s ({r['waited_in_all']} s in all), error {error}"
        )
    errors = [abs(r["error"]) for r in waited if r["error"] is not None]
    if errors:
        print(
            f"mean absolute error {sum(errors) / len(errors):.1f} s over {len(errors)} estimates; "
            f"{len(waited) - len(errors)} visitors never saw a number (served before a place had freed up)"
        )
    print(json.dumps(waited))


if __name__ == "__main__":
    main()
