"""HTTPS end to end, with a certificate authority the test makes itself
(trustme): the proxy serves the service and every notebook's origin with one
wildcard certificate, plain HTTP is redirected to HTTPS on the same port, the
service's cookies are __Host- cookies (Secure, host-only), and a participant
runs a cell in JupyterLab on <id>.nb.test over HTTPS and a secure websocket,
in headless Chromium that trusts only that certificate."""

import base64
import hashlib
import re
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pool.command import DEFAULT_COMMAND
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.integration.test_browser import CHROMIUM, log_in_as_organiser, open_browser, run_cell, workshop_folder  # noqa: F401 (fixtures)
from tests.integration.test_pool_lifecycle import ready_count, wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="deploy/test installs Debian's chromium")

DOMAIN = "nb.test"


@pytest.fixture
def certificates(tmp_path):
    """(CA file, certificate file, key file, Chromium's pin of the certificate's key)."""
    authority = trustme.CA()
    issued = authority.issue_cert(DOMAIN, f"*.{DOMAIN}", "127.0.0.1")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    public_key = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ca, cert, key, base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_the_service_and_its_notebooks_speak_https_only(stack_with_own_proxy, certificates, open_browser, workshop_folder, admin_user):  # noqa: F811
    ca, cert, key, pin = certificates
    stack = stack_with_own_proxy(notebook_domain=DOMAIN, tls=(cert, key))
    PoolFactory(
        capacity=1,
        image=JUPYTER_IMAGE,
        command=DEFAULT_COMMAND,
        redirect_uri="/lab",
        mem_limit="256m",
        host_directories=f"{workshop_folder}:/home/jovyan/work:rw",
    )
    stack.start(TMPNB_SPAWN_TIMEOUT=120)
    port = stack.proxy.public_port
    service = f"https://{DOMAIN}:{port}"

    # Verified against the test's own authority; plain HTTP on the same port is redirected.
    assert requests.get(f"https://127.0.0.1:{port}/api/stats", verify=ca, timeout=10).json()["capacity"] == 1
    plain = requests.get(f"http://127.0.0.1:{port}/spawn/?x=1", headers={"Host": f"{DOMAIN}:{port}"}, allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"] == f"{service}/spawn/?x=1"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{port}/", timeout=10)  # no certificate of a known authority
    wait_until(lambda: ready_count() == 1, timeout=180, what="a ready JupyterLab")

    flags = [f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1, MAP {DOMAIN} 127.0.0.1", f"--ignore-certificate-errors-spki-list={pin}"]
    participant = open_browser("participant", args=flags)
    failed = []
    # Docker adding the refill's network interface while the page loads makes
    # Chromium cancel what is in flight (ERR_NETWORK_CHANGED) and ask again:
    # that is the host, not the service. Any other failure (a certificate, mixed
    # content, a refused wss://) is the service's.
    participant.on(
        "requestfailed",
        lambda request: request.failure == "net::ERR_NETWORK_CHANGED" or failed.append((request.url, request.failure)),
    )
    participant.goto(f"http://{DOMAIN}:{port}/spawn/lab/tree/work/intro.ipynb")
    assert not failed, failed
    assert re.match(rf"https://[0-9a-f]+\.{DOMAIN}:{port}/user/[0-9a-f]+/lab/tree/work/intro\.ipynb", participant.url), participant.url
    cell = participant.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    run_cell(cell, participant)
    output = cell.locator(".jp-OutputArea-output")
    output.wait_for(timeout=120_000)  # the kernel answers over wss:// on the notebook's origin
    assert output.text_content().strip() == "42"
    [visitor] = [c for c in participant.context.cookies() if c["name"] == "__Host-tmpnb_visitor"]
    assert visitor["secure"] and visitor["httpOnly"] and visitor["domain"] == DOMAIN

    organiser = log_in_as_organiser(open_browser("organiser", args=flags), service, admin_user)
    cookies = {c["name"]: c for c in organiser.context.cookies()}
    session, csrf = cookies["__Host-tmpnb_session"], cookies["__Host-tmpnb_csrf"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    assert csrf["secure"] and csrf["httpOnly"]
    assert not [name for name in cookies if name.startswith("tmpnb_")]  # nothing without the prefix
