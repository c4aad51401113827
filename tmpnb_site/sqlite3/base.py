"""Django's SQLite backend, with the threads of one process taking turns for
the write lock in a queue of their own.

SQLite lets one connection write at a time; a connection that finds the lock
taken sleeps in SQLite's busy handler (1, 2, 5, 10, … 100 ms) and tries again.
In a burst of admissions the web process's threads spent their time asleep
there while the lock was free. Here a thread waits for the others of its
process on a lock that wakes it the moment the one before commits; SQLite's
busy handler is then left to the few writes of other processes.
"""

import threading
from typing import Any

from django.db.backends.sqlite3 import base

_writer = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    holds_writer = False

    def _start_transaction_under_autocommit(self) -> None:
        # A thread that waited the whole timeout goes on to SQLite's own wait
        # rather than failing: the lock is a courtesy, SQLite's is the rule.
        self.holds_writer = _writer.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5))
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private: django-stubs leaves it out
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        if self.holds_writer:
            self.holds_writer = False
            _writer.release()

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]  # private: django-stubs leaves it out
        finally:
            self._release_writer()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]  # private: django-stubs leaves it out
        finally:
            self._release_writer()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]  # private: django-stubs leaves it out
        finally:
            self._release_writer()
