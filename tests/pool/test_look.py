"""A helper's read-only look (pool/services/look.py): the renderer keeps
nothing from a notebook that could run or link, a hostile server gets a clear
error, each look is an event and the participant's banner says so; the look
page carries no script. tests/integration/test_room_view.py shows it on the
real stack."""

import base64
import re
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone

from pool.models import Event
from pool.services import look
from tests.factories import PoolFactory, SessionFactory, from_the_banner

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
SCRIPT = "<script>document.title='ran'</script>"
SVG = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


def notebook(*cells):
    return {"type": "notebook", "format": "json", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}}


def code(source, *outputs, count=1):
    return {"cell_type": "code", "source": source, "execution_count": count, "metadata": {}, "outputs": list(outputs)}


def result(data, kind="execute_result"):
    return {"output_type": kind, "data": data, "metadata": {}, "execution_count": 1}


HOSTILE = notebook(
    code("print(1)", {"output_type": "stream", "name": "stdout", "text": ["1\n", SCRIPT]}),
    code("html", result({"text/html": SCRIPT + '<img src=x onerror="alert(3)">'})),
    code("both", result({"text/html": SCRIPT, "text/plain": "<IPython.core.display.HTML object>"})),
    code("svg", result({"image/svg+xml": SVG}, "display_data")),
    code("js", result({"application/javascript": "alert(4)"}, "display_data")),
    code("fake png", result({"image/png": base64.b64encode(SVG.encode()).decode()}, "display_data")),
    code("png url", result({"image/png": "javascript:alert(5)"}, "display_data")),
    code("png", result({"image/png": base64.b64encode(PNG).decode(), "text/plain": "<Figure>"}, "display_data")),
    code("boom", {"output_type": "error", "ename": "ValueError", "evalue": "x", "traceback": ["\x1b[0;31mValueError\x1b[0m: <b>x</b>"]}),
    {
        "cell_type": "markdown",
        "source": "[click](javascript:alert(6)) <a href='javascript:alert(7)'>a</a> ![i](data:text/html,<script>alert(8)</script>)",
        "metadata": {},
    },
    {"cell_type": "markdown", "source": 42, "metadata": {}},
    "not a cell",
    code({"not": "text"}, "not an output", {"output_type": "weird"}, count=True),
)


@pytest.fixture
def pool():
    return PoolFactory(capacity=10, cull_timeout=600, cull_max=3600)


def holding(servers, pool, files):
    """A session whose server answers the contents API as ``files`` say (path: answer)."""
    session = servers.holding(pool, sessions=[{"id": "s", "path": "work/b.ipynb", "type": "notebook"}])
    servers.answers[session.container.path_id] |= {f"api/contents/{path}": answer for path, answer in files.items()}
    return session


def test_the_renderer_keeps_text_and_checked_images_and_names_the_rest():
    shown = look.render("a.ipynb", HOSTILE["content"])

    outputs = [cell.outputs for cell in shown.cells]
    assert outputs[0] == [look.Output(text="1\n" + SCRIPT)]  # text, escaped by the page
    assert "text/html" in outputs[1][0].note and not outputs[1][0].text
    # The plain text of an HTML output, never its HTML.
    assert outputs[2] == [look.Output(text="<IPython.core.display.HTML object>", note="Also as text/html: not shown here.")]
    assert "image/svg+xml" in outputs[3][0].note and "application/javascript" in outputs[4][0].note
    assert "image/png" in outputs[5][0].note and "image/png" in outputs[6][0].note  # not what they claim: not shown
    assert outputs[7] == [look.Output(image_url="data:image/png;base64," + base64.b64encode(PNG).decode(), text="<Figure>")]
    assert outputs[8] == [look.Output(text="ValueError: <b>x</b>", error=True)]  # colour codes out
    assert shown.cells[9].kind == "markdown" and "javascript:alert(6)" in shown.cells[9].source  # as text, never a link
    assert shown.cells[10].source == "" and len(shown.cells) == 12  # the string that is no cell is left out
    assert shown.cells[11] == look.Cell(kind="code", source="", prompt="", outputs=[look.Output(note="An output of a kind this view does not show.")])


def test_the_renderer_cuts_long_text_and_counts_the_cells_it_leaves_out():
    shown = look.render("big.ipynb", {"cells": [code("x" * (look.MAX_TEXT + 10))] * (look.MAX_CELLS + 3)})
    assert len(shown.cells) == look.MAX_CELLS and shown.cells_left_out == 3
    assert shown.cells[0].source.endswith("(10 more characters not shown)")
    with pytest.raises(look.LookError, match="not a notebook that can be read"):
        look.render("x.ipynb", {"cells": "none"})


def test_a_helper_looks_at_a_folder_and_a_notebook_the_look_is_an_event_and_the_participant_is_told(pool, servers, settings, fake_proxy):
    session = holding(
        servers,
        pool,
        {
            "": {
                "type": "directory",
                "content": [
                    {"name": "b", "path": "work", "type": "directory"},
                    {"name": "a", "path": "a.ipynb", "type": "notebook"},
                    {"name": "t", "path": "t.txt", "type": "file"},
                    {"name": "x", "path": "../x.ipynb", "type": "notebook"},
                ],
            },
            "work/b.ipynb": notebook(code("1 + 1", result({"text/plain": "2"}))),
        },
    )
    assert "helper" not in from_the_banner("GET", session, "time-left", settings=settings).json()["message"]

    home = look.look(session, "", by="helper")
    assert [(entry.path, entry.is_folder) for entry in home.entries] == [("work", True), ("a.ipynb", False)]  # files and climbing paths left out
    assert home.open_notebooks == ["work/b.ipynb"]
    shown = look.look(session, "/work/b.ipynb", by="helper")
    assert shown.cells[0].outputs == [look.Output(text="2")] and shown.cells[0].prompt == "[1]"

    events = Event.objects.filter(kind=Event.Kind.LOOK).order_by("pk")
    assert [(e.actor, e.session, e.details["path"]) for e in events] == [("helper", session, ""), ("helper", session, "work/b.ipynb")]
    banner = from_the_banner("GET", session, "time-left", settings=settings, HTTP_ACCEPT_LANGUAGE="de").json()
    assert banner["warn"] and banner["reason"] == "looking" and "Helfer" in banner["message"]
    session.refresh_from_db()
    assert look.is_looked_at(session) and not look.is_looked_at(session, now=timezone.now() + timedelta(seconds=look.LOOK_SECONDS + 1))


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"{not json", "Expecting property name"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep|over"),
        (b'{"type": "file", "content": "x"}', "not a notebook or a folder"),
        (b'"a string"', "not a notebook or a folder"),
        (b" " * (look.MAX_NOTEBOOK_BYTES + 1), "over"),
        (2.5, None),  # answered within the read timeout each time
    ],
)
def test_a_hostile_server_gets_the_helper_a_clear_error(pool, servers, answer, error, monkeypatch):
    monkeypatch.setattr(look, "READ_SECONDS", 1.0)
    monkeypatch.setattr(look.notebook_api, "TIMEOUT", (1.0, 3.0))
    session = holding(servers, pool, {"a.ipynb": answer})
    with pytest.raises(look.LookError, match=error or "no answer within|did not give"):
        look.look(session, "a.ipynb", by="helper")


@pytest.fixture(params=["body", "headers"])
def dripping_server(request):
    """A server that answers every request one byte at a time (of its body,
    or of its headers), each well within the read timeout, until the test ends."""
    ended = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self):
            if request.param == "body":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            try:
                while not ended.wait(0.2):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass  # the look hung up

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    ended.set()  # the reader the look left behind on dripping headers then ends too
    server.shutdown()
    server.server_close()


def test_a_server_that_drips_its_answer_is_cut_off_at_the_deadline(pool, dripping_server, monkeypatch):
    monkeypatch.setattr(look, "READ_SECONDS", 1.0)
    session = SessionFactory(container__pool=pool, container__host_port=dripping_server)
    started = time.monotonic()
    with pytest.raises(look.LookError, match="no answer within"):
        look.look(session, "a.ipynb", by="helper")
    assert time.monotonic() - started < 5  # not the 5 hours of its whole answer


@pytest.mark.parametrize("path", ["../etc", "a/../../b", "a\\b", "a\x00b", "a//b"])
def test_a_path_that_could_leave_the_contents_api_is_refused(pool, servers, path):
    session = holding(servers, pool, {})
    with pytest.raises(look.LookError, match="not a path in the notebook"):
        look.look(session, path, by="helper")
    assert servers.requests == 0


def test_the_look_page_shows_the_notebook_escaped_without_any_script_and_beats(pool, servers, admin_client):
    session = holding(servers, pool, {"a.ipynb": HOSTILE})
    response = admin_client.get(f"/admin/room/{pool.pk}/look/{session.pk}/", {"path": "a.ipynb"})

    page = response.content.decode().split('<div id="tmpnb-look">', 1)[1].split("<footer", 1)[0]  # not the admin's own icons
    policy = response["Content-Security-Policy"]
    assert "script-src" not in policy and "default-src 'none'" in policy and "img-src data:" in policy
    assert "no-store" in response["Cache-Control"]
    assert not re.search(r"<script|<svg|<img src=x|href=.javascript|src=.javascript|on(load|error)=", page, re.IGNORECASE)
    assert "&lt;script&gt;document.title=&#x27;ran&#x27;&lt;/script&gt;" in page
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    beat = admin_client.get(f"/admin/room/{pool.pk}/look/{session.pk}/beat")
    assert beat["X-Frame-Options"] == "SAMEORIGIN" and f'content="{look.BEAT_SECONDS}"' in beat.content.decode()
    assert "frame-ancestors 'self'" in beat["Content-Security-Policy"]


def test_the_look_page_is_for_staff_who_may_view_sessions_and_for_live_sessions_of_that_pool(pool, servers, admin_client, django_user_model):
    session = holding(servers, pool, {"": {"type": "directory", "content": []}})
    url = f"/admin/room/{pool.pk}/look/{session.pk}/"
    assert Client().get(url).status_code == 302  # to the login page
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(url).status_code == 403 and client.get(url + "beat").status_code == 403
    assert admin_client.get(f"/admin/room/{PoolFactory(name='other').pk}/look/{session.pk}/").status_code == 404
    assert admin_client.get(url).status_code == 200
    session.ended_at = timezone.now()
    session.save()
    assert admin_client.get(url).status_code == 404
    assert not Event.objects.filter(kind=Event.Kind.LOOK).exclude(actor="admin").exists()
    assert "Look" in admin_client.get(f"/admin/room/{pool.pk}/").content.decode()


def test_the_banner_puts_a_helpers_look_before_a_warning_that_is_due(pool, settings, fake_proxy):
    session = SessionFactory(container__pool=pool, started_at=timezone.now() - timedelta(minutes=58))
    look.beat(session)
    banner = from_the_banner("GET", session, "time-left", settings=settings).json()
    assert banner["reason"] == "culled-age+looking"
    assert banner["message"].startswith("A helper is looking at your notebooks (read-only). This notebook reaches its time limit")
