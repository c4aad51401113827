"""JupyterLab's files of an image build, served by the proxy itself from
TMPNB_VAR_DIR/lab_static/<recipe>/ (deploy/proxy/lab-static.mjs): compressed
at image build, cached for good, on the notebooks' origins only, and never
outside the build's folder."""

import gzip
import re
import shutil

import pytest
import requests

from pool.command import DEFAULT_COMMAND
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_hostile_http import raw_status
from tests.integration.test_pool_lifecycle import ready_count, wait_until
from tests.stack import Browser

IMMUTABLE = "public, max-age=31536000, immutable"
FAKE_RECIPE = "00000000deadbeef"


def test_a_builds_files_come_from_the_proxy_compressed_for_good_without_the_app(live_stack, log_dir):
    PoolFactory(capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, redirect_uri="/lab", mem_limit="256m")
    live_stack.start()
    wait_until(lambda: ready_count() == 1, timeout=120, what="a ready JupyterLab container")
    with Browser() as participant:
        page = participant.get(f"{live_stack.url}/spawn/", timeout=30)
        assert page.status_code == 200 and "<title>JupyterLab</title>" in page.text
        origin = re.match(r"^https?://[^/]+", page.url).group(0)
        main = re.search(r'src="(/lab-static/([0-9a-f]{16})/(main\.[0-9a-f]+\.js))', page.text)
    source = log_dir / "lab_static" / main.group(2) / main.group(3)
    # The app has no part in it: gunicorn is stopped from here on.
    live_stack.web.stop()

    def fetch(encoding, **headers):
        return requests.get(f"{origin}{main.group(1)}", headers={"Accept-Encoding": encoding, **headers}, stream=True, timeout=10)

    for accept, encoding, expected in [
        ("gzip, deflate, br, zstd", "br", source.with_name(source.name + ".br").read_bytes()),
        ("gzip", "gzip", source.with_name(source.name + ".gz").read_bytes()),
        ("identity", None, source.read_bytes()),
        ("br;q=0, gzip", "gzip", source.with_name(source.name + ".gz").read_bytes()),
    ]:
        answer = fetch(accept)
        assert answer.status_code == 200, accept
        assert answer.headers.get("Content-Encoding") == encoding, accept
        assert answer.raw.read() == expected, accept  # the bytes as sent, not decoded
        assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert answer.headers["Cache-Control"] == IMMUTABLE
        assert answer.headers["Vary"] == "Accept-Encoding"
        assert int(answer.headers["Content-Length"]) == len(expected)
    assert gzip.decompress(source.with_name(source.name + ".gz").read_bytes()) == source.read_bytes()
    # A browser that has it asks again with its ETag: nothing is sent.
    tag = fetch("br").headers["ETag"]
    again = fetch("br", **{"If-None-Match": tag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", tag)
    assert fetch("gzip", **{"If-None-Match": tag}).status_code == 200  # another encoding, other bytes
    head = requests.head(f"{origin}{main.group(1)}", headers={"Accept-Encoding": "br"}, timeout=10)
    assert (head.status_code, head.content, head.headers["Content-Encoding"]) == (200, b"", "br")
    assert requests.post(f"{origin}{main.group(1)}", timeout=10).status_code == 405
    # Never on the service's own origin.
    assert requests.get(f"{live_stack.url}{main.group(1)}", timeout=10).status_code == 404


@pytest.fixture
def fake_build(proxy, tmp_path):
    """A build's folder in the proxy's TMPNB_VAR_DIR, with a secret next to
    it and a link that leads out to that secret."""
    builds = proxy.var_dir / "lab_static"
    folder = builds / FAKE_RECIPE
    (folder / "sub").mkdir(parents=True)
    (folder / "main.js").write_bytes(b"console.log(42)")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (builds / "secret.txt").write_text("secret")
    (folder / "leak.js").symlink_to(secret)
    (folder / "sub" / "up").symlink_to(builds)
    yield folder
    shutil.rmtree(folder)
    (builds / "secret.txt").unlink()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (b"../secret.txt", 400),
        (b"sub/../../secret.txt", 400),
        (b"%2e%2e/secret.txt", 400),
        (b"sub%2f..%2f..%2fsecret.txt", 400),
        (b"..%5csecret.txt", 400),
        (b"main.js%00", 400),
        (b"main.js%00.png", 400),
        (b"./main.js", 400),
        (b"sub//main.js", 400),
        (b"%ff", 400),
        (b"leak.js", 404),  # a link out of the folder
        (b"sub/up/secret.txt", 404),  # a linked folder out of it
        (b"missing.js", 404),
    ],
)
def test_no_path_leads_out_of_a_builds_folder(proxy, fake_build, path, status):
    request = b"GET /lab-static/" + FAKE_RECIPE.encode() + b"/" + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer_status, answer = raw_status(proxy.notebook_port, request)
    assert answer_status == status, answer[:300]
    assert b"secret" not in answer


def test_a_build_is_named_by_its_recipe_only(proxy, fake_build):
    served = requests.get(f"{proxy.notebook_url}/lab-static/{FAKE_RECIPE}/main.js", timeout=10)
    assert (served.status_code, served.content) == (200, b"console.log(42)")
    for other in ("..", "00000000DEADBEEF", "nothex", "00000000deadbeef0"):
        status, answer = raw_status(proxy.notebook_port, f"GET /lab-static/{other}/secret.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert status in (400, 404) and b"secret" not in answer.split(b"\r\n\r\n", 1)[1], other
