"""What the tests of the room view and of the look share: notebook servers
that answer as a test tells them (tests/integration has the real ones)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.factories import SessionFactory


class FakeNotebookServer:
    """Answers /user/<id>/api/kernels and /api/sessions as each path id's
    ``answers`` say: a JSON value, raw bytes, or a number of seconds to stall.
    Only with the right token; counts the requests. PUT and DELETE (the
    invitations of pool/services/live.py) are kept in ``changes`` and
    answered ``change_status`` (201 for a PUT, 204 for a DELETE)."""

    def __init__(self):
        self.answers = {}
        self.tokens = {}
        self.requests = 0
        self.changes = []
        self.change_status = {"PUT": 201, "DELETE": 204}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _change(self):
                _, _, path_id, what = self.path.split("/", 3)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"token {server.tokens.get(path_id)}":
                    self.send_error(403)
                    return
                server.changes.append((self.command, what, json.loads(body) if body else None))
                self.send_response(server.change_status[self.command])
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_DELETE = _change

            def do_GET(self):
                server.requests += 1
                _, _, path_id, what = self.path.split("/", 3)
                if self.headers.get("Authorization") != f"token {server.tokens.get(path_id)}":
                    self.send_error(403)
                    return
                answer = server.answers.get(path_id, {}).get(what, [])
                if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                    time.sleep(answer)
                    answer = []
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the room stopped reading a body over its cap

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def holding(self, pool, *, kernels=(), sessions=(), **fields):
        """A session of ``pool`` whose notebook server is this one."""
        session = SessionFactory(container__pool=pool, container__host_port=self.port, **fields)
        self.tokens[session.container.path_id] = session.container.token
        self.answers[session.container.path_id] = {"api/kernels": kernels, "api/sessions": sessions}
        return session


@pytest.fixture
def servers():
    fake = FakeNotebookServer()
    yield fake
    fake.http.shutdown()
    fake.http.server_close()
