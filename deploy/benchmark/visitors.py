"""Simulated visitors: each a browser of its own (cookies, redirects, the
cookie step), doing what the service's pages do while it waits, timed from
its first request until its own notebook page answers."""

import contextlib
import html
import re
import threading
import time
from urllib.parse import urljoin

import requests

from deploy.benchmark import percentile
from deploy.benchmark.images import LANDING_MARKERS
from tests.stack import CONTINUES, TINY_IMAGE

# What the waiting room's script asks (templates/pool/waiting.html): a long
# poll, whose JSON answer says when to ask again (poll_seconds).
WAITING_STATUS = "/waiting/status?wait=1"
JSON = "application/json"
LANDED = re.compile(r"^https?://[^/]+/user/([A-Za-z0-9_-]+)/(tree|lab)(\?|$)")


class FromAddress(requests.adapters.HTTPAdapter):
    """Connections from a given local address. Every visitor comes from its own
    loopback address (127.1.x.y; all of 127/8 is local on Linux), as workshop
    participants come from their own machines, so the service's per-address
    limits (TMPNB_MAX_PER_IP, TMPNB_SPAWN_RATE) apply to each as they would."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def visitor_address(i):
    return f"127.1.{i // 250}.{i % 250 + 1}"


def new_browser(address=None):
    """A browser's session: its own cookie jar, from ``address`` if given."""
    browser = requests.Session()
    prepare(browser, address)
    return browser


def prepare(browser, address):
    # The service is on this machine: never a forward proxy from the
    # environment (HTTP_PROXY), whose lookup also cost the visitor a
    # quarter of its CPU per request, on the cores the service uses.
    browser.trust_env = False
    if address:
        browser.mount("http://", FromAddress(address))


def visit(url, barrier, *, image, bound, retry_interval=None, address=None, on_response=None, browser=None):
    """One new visitor with its own cookie jar, following redirects, doing what
    the service's pages do while it waits, timed from its first request until
    its own notebook page answers 200. Returns what happened (``Visit``).
    ``retry_interval`` (seconds) caps every wait, to poll faster than the pages.
    ``on_response`` is given every answer (the soak counts the 5xx ones).
    ``browser``: a requests.Session to visit with, kept open with its cookies.
    """
    with contextlib.ExitStack() as closing:
        if browser is None:
            browser = closing.enter_context(requests.Session())
        prepare(browser, address)
        return Visit(url, image=image, bound=bound, retry_interval=retry_interval, on_response=on_response).run(browser, barrier)


class Visit:
    """A visitor's way from ``url`` to its own notebook page:

    - The cookie step (a 200 page that goes on by itself): go on at once, as a browser does.
    - 302 to /user/<id>/tree (or /lab): served once that page is the visitor's own.
    - The waiting room (a 200 page with Retry-After): ask its status as its
      script does, again after the ``poll_seconds`` each answer gives, then
      follow the URL it gives once ready; "unknown" reloads /spawn/.
    - A "nothing ready" 503, or 429 "full" as JSON: reload after Retry-After.
    - The reconnecting page under /user/<id>/: reload it after Retry-After.
    - A 429 page (the service's abuse limits): refused.

    Each step answers the next request to make, (URL, Accept), or None once
    the visit is over (``result`` says how).
    """

    def __init__(self, url, *, image, bound, retry_interval, on_response):
        self.url, self.image, self.bound, self.retry_interval, self.on_response = url, image, bound, retry_interval, on_response
        self.result = {
            "outcome": "failed",
            "seconds": None,
            "waits": 0,
            "polls": 0,
            "path_id": None,
            "error": None,
            "redirect_seconds": None,
            "landed_url": None,
        }

    def run(self, browser, barrier):
        barrier.wait()
        self.started = time.perf_counter()
        self.deadline = self.started + self.bound
        step = (self.url, "text/html")
        while step:
            target, accept = step
            try:
                response = browser.get(target, headers={"Accept": accept}, timeout=max(self.deadline - time.perf_counter(), 0.5))
            except requests.RequestException as error:
                if time.perf_counter() >= self.deadline:
                    self.result["outcome"] = "turned away"
                self.result["error"] = f"{type(error).__name__}: {error}"[:300]
                return self.result
            if self.on_response:
                self.on_response(response)
            now = time.perf_counter()
            step = self.status(response) if accept == JSON else self.page(response, now)
        return self.result

    def pause(self, seconds):
        """Wait ``seconds`` (at most the retry interval); False, the visitor
        turned away, if the bound would pass first."""
        seconds = min(seconds, self.retry_interval) if self.retry_interval else seconds
        if time.perf_counter() + seconds >= self.deadline:
            self.result["outcome"] = "turned away"
            self.result["error"] = f"not served within {self.bound:.0f} s"
            return False
        time.sleep(seconds)
        return True

    def wait_then(self, seconds, step):
        self.result["waits"] += 1
        return step if self.pause(seconds) else None

    def fail(self, error, outcome="failed"):
        self.result["outcome"], self.result["error"] = outcome, error

    def status(self, response):
        """The waiting room's status poll."""
        ok = response.status_code == 200 and "json" in response.headers.get("Content-Type", "")
        status = response.json() if ok else {}
        if status.get("status") == "ready":
            return urljoin(self.url, status["url"]), "text/html"
        if status.get("status") == "waiting":
            self.result["polls"] += 1
            return (urljoin(self.url, WAITING_STATUS), JSON) if self.pause(status["poll_seconds"]) else None
        return self.url, "text/html"  # our place was lost: queue again, as the page does

    def page(self, response, now):
        landed = LANDED.match(response.url)
        if response.status_code == 200 and landed:
            return self.notebook(response, landed.group(1), now)
        if response.status_code == 429 and "json" not in response.headers.get("Content-Type", ""):
            text = re.sub(r"<[^>]+>|\s+", " ", response.text).strip()
            return self.fail(f"refused (HTTP 429): {text[-300:]}", "refused")
        if response.status_code in (429, 503):  # "nothing ready": the page reloads itself
            return self.wait_then(retry_after(response), (self.url, "text/html"))
        step = CONTINUES.search(response.text) if response.status_code == 200 else None
        if step:  # the cookie step: the visitor cookie is set, go on to the same URL
            return urljoin(response.url, html.unescape(step.group(1))), "text/html"
        if response.status_code == 200 and "Retry-After" in response.headers:  # the waiting room
            self.result["waits"] += 1
            return urljoin(self.url, WAITING_STATUS), JSON  # the page asks at once; each answer says when to ask again
        return self.fail(f"HTTP {response.status_code} at {response.url}: {response.text[:200]!r}")

    def notebook(self, response, path_id, now):
        """A page under /user/<id>/: served if it is the visitor's own notebook."""
        if self.image == TINY_IMAGE:
            own = response.text.strip() == f"tree /user/{path_id}/"
        else:
            own = LANDING_MARKERS[self.image] in response.text and f"/user/{path_id}/" in response.text
        if own:
            self.result.update(outcome="served", seconds=now - self.started, path_id=path_id, landed_url=response.url)
            first = response.history[0] if response.history else None
            if first is not None and first.url.startswith(self.url):  # the landing page, past the cookie step
                self.result["redirect_seconds"] = first.elapsed.total_seconds()
            return None
        if "Reconnecting" in response.text:  # the service's page while a route is restored
            return self.wait_then(retry_after(response, 2), (response.url, "text/html"))
        return self.fail(f"not its own page at {response.url}: {response.text[:200]!r}")


def retry_after(response, default=5.0):
    try:
        return float(response.headers.get("Retry-After", default))
    except ValueError:
        return default


def burst(urls, *, image, bound=60.0, retry_interval=None, own_addresses=True):
    """One new visitor per URL, all at once (a barrier releases them together).
    Returns the start time, the summary and the URLs the served ones landed on."""
    n = len(urls)
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            results[i] = visit(urls[i], barrier, image=image, bound=bound, retry_interval=retry_interval, address=visitor_address(i) if own_addresses else None)
        except Exception as error:  # a bug in the visitor itself: count it, do not hide it
            results[i] = {"outcome": "failed", "seconds": None, "waits": 0, "path_id": None, "error": repr(error)}

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join in slices so Ctrl-C gets through
            thread.join(0.2)
    return started, summarize(results, n), [r["landed_url"] for r in results if r["outcome"] == "served"]


def one_after_another(url, n, *, image, bound):
    """N new visitors, each arriving once the one before is served."""
    return summarize([visit(url, threading.Barrier(1), image=image, bound=bound, address=visitor_address(i)) for i in range(n)], n)


def to_floor(summary, floor):
    """Each percentile of a burst as a multiple of the same percentile of its floor."""
    return {q: round(summary[q] / floor[q], 2) if summary[q] and floor[q] else None for q in ("p50", "p90", "p99", "max")}


def summarize(results, n):
    served = [r for r in results if r["outcome"] == "served"]
    times = sorted(r["seconds"] for r in served)
    ids = [r["path_id"] for r in served]
    redirects = sorted(r["redirect_seconds"] for r in served if r.get("redirect_seconds") is not None)
    summary = {
        "visitors": n,
        "served": len(served),
        "served_at_once": sum(1 for r in served if r["waits"] == 0),
        "waited": sum(1 for r in served if r["waits"] > 0),
        "turned_away": sum(1 for r in results if r["outcome"] == "turned away"),
        "refused": sum(1 for r in results if r["outcome"] == "refused"),
        "failed": sum(1 for r in results if r["outcome"] == "failed"),
        "duplicates": len(ids) - len(set(ids)),
        "p50": percentile(times, 50),
        "p90": percentile(times, 90),
        "p99": percentile(times, 99),
        "max": times[-1] if times else None,
        "min": times[0] if times else None,
        "redirect_p50": percentile(redirects, 50),
        "redirect_max": redirects[-1] if redirects else None,
        "errors": sorted({r["error"] for r in results if r["outcome"] != "served" and r["error"]})[:10],
        "times": [round(t, 4) for t in times],
    }
    return summary
