"""The proxy keeps its connections to gunicorn alive between requests; a
client asking again just as an idle one is closed must still get its answer.

gunicorn closes a kept-alive connection after ``--keep-alive`` idle seconds
(2 by default). A proxy that reused it at that moment got "socket hang up"
and answered 503 Proxy Target Missing: 6 to 9 times in 25 for a client asking
/api/stats every 2.0 s, as the waiting room does. Each request here is made
on a new connection to the proxy, so only the proxy's own connection to
gunicorn can be reused, after exactly the gap asked for.
"""

import time

import requests

from tests.stack import WEB_KEEP_ALIVE

# Sequential by nature (each gap is the idle time of one upstream
# connection), so the counts are kept small. 6 to 9 failures in 25 at 2.0 s
# made 14 tries fail the old proxy in all but about 2% of runs.
GAPS = [
    (2.0, 10),  # the waiting room's poll
    (1.0, 6),  # how long the proxy keeps an idle connection (UPSTREAM_IDLE_MS)
    (WEB_KEEP_ALIVE, 3),  # the keep-alive the service runs gunicorn with
]


def poll(url, *, gap, times):
    """Ask ``url`` ``times`` times, each ``gap`` seconds after the answer
    before it (nothing waits out a gap no ask follows); returns what went wrong."""
    failures = []
    for attempt in range(times):
        time.sleep(gap)
        try:
            # A new session each time: no connection to the proxy is kept.
            response = requests.get(url, timeout=10)
            if response.status_code >= 500:
                failures.append(f"#{attempt}: {response.status_code} {response.text[:80]!r}")
        except requests.RequestException as error:
            failures.append(f"#{attempt}: {error}")
    return failures


def test_a_client_asking_at_the_keep_alive_gaps_never_gets_a_5xx(live_stack):
    stack = live_stack.start(worker=False, beat=False)
    url = f"{stack.url}/api/stats"
    assert requests.get(url, timeout=10).status_code == 200
    failures = {gap: poll(url, gap=gap, times=times) for gap, times in GAPS}
    assert failures == {gap: [] for gap, _ in GAPS}


def test_the_proxy_alone_ends_the_race_even_at_gunicorns_default_keep_alive(live_stack):
    # An app server run without the service's --keep-alive (gunicorn's own
    # 2 s): the proxy still closes its idle connection first.
    stack = live_stack.start(worker=False, beat=False, web_keep_alive=None)
    url = f"{stack.url}/api/stats"
    assert requests.get(url, timeout=10).status_code == 200
    assert poll(url, gap=2.0, times=14) == []
