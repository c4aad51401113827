"""The web process's limit on requests that run at once
(tmpnb_site/concurrency.py), with the WSGI application it wraps."""

import contextlib
import threading

import pytest
from django.db import connection, transaction

from pool.backends.client import docker_work
from pool.services import turns
from tmpnb_site import concurrency
from tmpnb_site.concurrency import LARGE_BODY, RunningLimit, turn_set_aside


@pytest.fixture
def limit_of(settings, monkeypatch):
    def limit_of(n):
        settings.TMPNB_WEB_CONCURRENCY = n
        monkeypatch.setattr(concurrency, "_running", None)  # made again with n turns

    return limit_of


class Requests:
    """A WSGI app whose requests block until let go, counting how many run at once."""

    def __init__(self, inside=None):
        self.running = self.most = 0
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.inside = inside

    def __call__(self, environ, start_response):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if self.inside and environ.get("inside"):
                with self.inside():
                    self.go.wait(10)
            else:
                self.go.wait(10)
        finally:
            with self.lock:
                self.running -= 1
        start_response("200 OK", [])
        return [b"ok"]

    def wait_for(self, running):
        for _ in range(200):
            if self.running == running:
                return True
            threading.Event().wait(0.01)
        return False


def send(application, environs):
    answers = []
    threads = [threading.Thread(target=lambda e=e: answers.append(b"".join(application(e, lambda *a: None)))) for e in environs]
    for thread in threads:
        thread.start()
    return threads, answers


def test_no_more_requests_run_at_once_than_the_limit(limit_of):
    limit_of(2)
    app = Requests()
    threads, answers = send(RunningLimit(app), [{} for _ in range(6)])
    assert app.wait_for(2)
    threading.Event().wait(0.2)
    assert app.running == 2  # the four others wait for a turn
    app.go.set()
    for thread in threads:
        thread.join(10)
    assert answers == [b"ok"] * 6 and app.most == 2


def test_a_request_that_blocks_sets_its_turn_aside(limit_of):
    limit_of(1)
    app = Requests(inside=turn_set_aside)
    threads, answers = send(RunningLimit(app), [{"inside": True}, {}])
    assert app.wait_for(2)  # the second ran while the first blocked
    app.go.set()
    for thread in threads:
        thread.join(10)
    assert answers == [b"ok"] * 2


@pytest.mark.django_db(transaction=True)
def test_a_request_in_a_transaction_keeps_its_turn(limit_of):
    # It may hold the database's write lock, which the request given its turn would wait for.
    limit_of(1)

    def in_transaction():
        try:
            with transaction.atomic(), turn_set_aside():
                yield
        finally:
            connection.close()

    app = Requests(inside=contextlib.contextmanager(in_transaction))
    threads, answers = send(RunningLimit(app), [{"inside": True}, {}])
    assert app.wait_for(1)
    threading.Event().wait(0.2)
    assert app.running == 1  # the second waits for the first's turn
    app.go.set()
    for thread in threads:
        thread.join(10)
    assert answers == [b"ok"] * 2


def test_a_docker_call_sets_the_turn_aside(limit_of):
    limit_of(1)
    app = Requests(inside=docker_work)
    threads, _ = send(RunningLimit(app), [{"inside": True}, {}])
    assert app.wait_for(2)
    app.go.set()
    for thread in threads:
        thread.join(10)


def test_a_large_upload_takes_no_turn(limit_of):
    limit_of(1)
    app = Requests()
    threads, _ = send(RunningLimit(app), [{}, {"CONTENT_LENGTH": str(LARGE_BODY + 1)}, {"CONTENT_LENGTH": "not a number"}])
    assert app.wait_for(2)  # the small one and the upload; the bad length waits its turn
    threading.Event().wait(0.2)
    assert app.running == 2
    app.go.set()
    for thread in threads:
        thread.join(10)


def test_outside_a_request_there_is_no_turn_to_set_aside(limit_of):
    limit_of(1)
    with turn_set_aside():
        with turn_set_aside():
            pass
    application = RunningLimit(lambda environ, start_response: [b"still one turn"])
    assert b"".join(application({}, None)) == b"still one turn"


def test_the_web_process_application_takes_turns():
    from tmpnb_site.wsgi import application

    assert isinstance(application, RunningLimit)


class SlowSettings:
    """Settings whose limit takes a while to read, as a first request's might."""

    def __getattr__(self, name):
        threading.Event().wait(0.1)
        return 1


@pytest.mark.parametrize(("module", "made", "kept"), [(concurrency, "_semaphore", "_running"), (turns, "_long_poll_slots", "_long_polls")])
def test_the_first_requests_of_a_process_share_one_semaphore(module, made, kept, monkeypatch):
    monkeypatch.setattr(module, kept, None)
    monkeypatch.setattr(module, "settings", SlowSettings())
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(getattr(module, made)())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 2 and seen[0] is seen[1]
