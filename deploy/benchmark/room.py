"""Case room (issue 32): is the room usable at 9:00, not just landed?

N participants click at once on a pool prefilled with N JupyterLab notebooks.
Each one lands (the visitors of the other cases), fetches what JupyterLab
fetched before its launcher showed in a real Chromium (ROOM_REQUESTS, six
connections at a time, compression accepted), opens a notebook (a session,
so a kernel) and runs ``6*7`` over the kernel's websocket. Each phase is
timed per participant; CPU is counted for the containers (their cgroups)
and the service's processes. Two variants in one run: the image as it is
(a kernel waiting, JupyterLab's files served once, by the proxy) and
today's behaviour (neither), by the command's flags.

Refresh the recorded requests (a real Chromium, one participant):
    .venv/bin/python -m deploy.benchmark.room --record
"""

import argparse
import asyncio
import concurrent.futures
import json
import re
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests
import websocket

from deploy.benchmark import Case, log, print_table, spread
from deploy.benchmark.images import COMMANDS, JUPYTER_IMAGE, docker_client, ensure_image
from deploy.benchmark.machine import container_cpu_seconds, service_cpu_seconds, wait_quiet
from deploy.benchmark.service import Service
from deploy.benchmark.visitors import visit

ROOM_REQUESTS = Path(__file__).with_name("jupyterlab-startup.json")
CONNECTIONS = 6  # a browser's connections to one origin (HTTP/1.1)
ACCEPT_ENCODING = "gzip, deflate, br, zstd"  # what Chromium sends
# Today's behaviour: jupyter-server's own kernel manager (no kernel waits) and
# JupyterLab's files from each server, compressed as they are sent.
TODAY_FLAGS = " --ServerApp.kernel_manager_class=jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager --LabApp.override_static_url="
VARIANTS = {"today": COMMANDS[JUPYTER_IMAGE] + TODAY_FLAGS, "room": COMMANDS[JUPYTER_IMAGE]}
PHASES = ("landed", "files", "kernel", "usable")
BASE = re.compile(r"^/user/[A-Za-z0-9]+/")
LAB_STATIC = re.compile(r"^/lab-static/[0-9a-f]{16}/")


def replay_url(entry, base_url, static_url):
    return entry["url"].replace("{base}", base_url).replace("{static}", static_url)


def fetch_startup(browser, base_url, static_url, requests_):
    """JupyterLab's recorded requests, ``CONNECTIONS`` at a time, in their order."""
    xsrf = browser.cookies.get("_xsrf", "")

    def one(entry):
        headers = {"Accept-Encoding": ACCEPT_ENCODING, "X-XSRFToken": xsrf}
        response = browser.request(entry["method"], replay_url(entry, base_url, static_url), data=entry.get("body"), headers=headers, stream=True, timeout=120)
        for _ in response.raw.stream(64 * 1024, decode_content=False):
            pass
        # As in the recording: JupyterLab asks for some that are not there (lsp/status, the LSP extension being off).
        return None if (response.status_code >= 400) == (entry.get("status", 200) >= 400) else f"{response.status_code} {entry['url']}"

    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as connections:
        return list(connections.map(one, requests_))


def run_code(browser, base_url, code="6*7"):
    """Open a notebook (a session: its kernel) and run ``code`` over the kernel's websocket."""
    xsrf = browser.cookies.get("_xsrf", "")
    name = f"room-{uuid.uuid4().hex[:8]}.ipynb"
    session = browser.post(
        f"{base_url}api/sessions",
        json={"path": name, "name": name, "type": "notebook", "kernel": {"name": "python3"}},
        headers={"X-XSRFToken": xsrf},
        timeout=120,
    )
    session.raise_for_status()
    kernel = session.json()["kernel"]["id"]
    ws_url = re.sub(r"^http", "ws", f"{base_url}api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    ws = websocket.create_connection(ws_url, cookie=cookie, timeout=120)
    try:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "username": "room", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"}
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [], "content": content}))
        while True:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
    finally:
        ws.close()


def participant(url, barrier, startup, static_for, bound):
    result = {"outcome": "failed", "error": None}
    with requests.Session() as browser:
        landing = visit(url, barrier, image=JUPYTER_IMAGE, bound=bound, browser=browser)
        if landing["outcome"] != "served":
            return {**result, "error": landing["error"]}
        landed = time.perf_counter()
        parts = urlsplit(landing["landed_url"])
        origin = f"{parts.scheme}://{parts.netloc}"
        base_url = origin + BASE.match(parts.path).group(0)
        try:
            statuses = fetch_startup(browser, base_url, origin + static_for(base_url, origin), startup)
            files = time.perf_counter()
            answer = run_code(browser, base_url)
        except Exception as error:  # counted, not hidden
            return {**result, "error": repr(error)[:300]}
        done = time.perf_counter()
    failed = [status for status in statuses if status]
    return {
        "outcome": "usable" if answer == "42" and not failed else "failed",
        "error": f"{len(failed)} start-up requests answered otherwise than recorded: {failed[:3]}" if failed else None,
        "landed": landing["seconds"],
        "files": files - landed,
        "kernel": done - files,
        "usable": landing["seconds"] + done - landed,
    }


def room(service, n, startup, static_for, bound):
    barrier = threading.Barrier(n)
    containers_before, service_before = container_cpu_seconds(service.installation), service_cpu_seconds(service)
    with concurrent.futures.ThreadPoolExecutor(n) as participants:
        results = list(participants.map(lambda _: participant(f"{service.url}/spawn/", barrier, startup, static_for, bound), range(n)))
    containers = container_cpu_seconds(service.installation) - containers_before
    service_cpu = service_cpu_seconds(service) - service_before
    usable = [r for r in results if r["outcome"] == "usable"]
    summary = {"participants": n, "usable_count": len(usable), "errors": sorted({r["error"] for r in results if r["error"]})[:5]}
    for phase in PHASES:
        summary[phase] = spread([r[phase] for r in usable], "p50", "p90", "max")
    summary["cpu_per_participant"] = {"containers": round(containers / n, 3), "service": round(service_cpu / n, 3)}
    return summary


def static_url_of(variant):
    if variant == "today":
        return lambda base_url, origin: base_url[len(origin) :] + "static/lab/"
    return lambda base_url, origin: "/lab-static/" + _recipe() + "/"


def _recipe():
    client = docker_client()
    try:
        return client.images.get(JUPYTER_IMAGE).labels["tmpnb.recipe"]
    finally:
        client.close()


def case_room(bench):
    """Each size, both variants side by side."""
    startup = json.loads(ROOM_REQUESTS.read_text())["requests"]
    out = {"requests": len(startup), "sizes": {}}
    for n in bench.args.room_sizes:
        for variant, command in VARIANTS.items():
            wait_quiet(bench.args.wait_quiet)
            with bench.service(image=JUPYTER_IMAGE, pool_size=n, ready_target=n, name=f"room-{variant}-{n}", command=command) as service:
                service.wait_ready(n, live=n)
                fill = service.refill_rate()
                log(f"case room, {variant}: {n} participants at once")
                summary = room(service, n, startup, static_url_of(variant), bench.args.bound)
            summary["fill"] = fill
            log(f"case room, {variant}, {n}: {json.dumps(summary)}")
            out["sizes"].setdefault(str(n), {})[variant] = summary
    return out


def show(result, out):
    print(f"\nroom: N participants at once, each landing, {result['requests']} JupyterLab start-up requests, a kernel, 6*7 (seconds)", file=out)
    header = (
        f"{'N':>4} {'variant':<6} {'usable':>6} "
        + " ".join(f"{phase + ' p50/p90/max':>22}" for phase in PHASES)
        + f" {'CPU s/participant: containers, service':>40}"
    )
    print_table(header, [], out)
    for n, variants in result["sizes"].items():
        for variant, r in variants.items():
            phases = " ".join(f"{'/'.join('-' if r[phase][q] is None else f'{r[phase][q]:.2f}' for q in ('p50', 'p90', 'max')):>22}" for phase in PHASES)
            cpu = r["cpu_per_participant"]
            print(f"{n:>4} {variant:<6} {r['usable_count']:>6} {phases} {cpu['containers']:>31.3f}, {cpu['service']:.3f}", file=out)
            for error in r["errors"]:
                print(f"       {error}", file=out)


CASE = Case(run=case_room, show=show, title="room", images=lambda args: [JUPYTER_IMAGE])


async def _record(url):
    from playwright.async_api import async_playwright

    from tests.stack import CHROMIUM, CHROMIUM_FLAGS

    seen = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        page.on("response", lambda response: seen.append((response.request.method, response.url, response.request.post_data, response.status)))
        await page.goto(url)
        await page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
        await page.wait_for_load_state("networkidle")
        await browser.close()
    recorded = []
    for method, address, body, status in seen:
        parts = urlsplit(address)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if BASE.match(path):
            path = BASE.sub("{base}", path)
        elif LAB_STATIC.match(path):
            path = LAB_STATIC.sub("{static}", path)
        else:
            continue  # the service's own pages: the landing phase
        recorded.append({"method": method, "url": path, **({"body": body} if body else {}), **({"status": status} if status >= 400 else {})})
    return recorded


def record():
    ensure_image(JUPYTER_IMAGE)
    with Service(image=JUPYTER_IMAGE, pool_size=1, name="room-record") as service:
        service.wait_ready(1)
        recorded = asyncio.run(_record(f"{service.url}/spawn/"))
    # The landing page itself (the visitor's phase) is not replayed.
    recorded = [entry for entry in recorded if not re.match(r"^\{base\}lab(\?|$)", entry["url"])]
    ROOM_REQUESTS.write_text(
        json.dumps(
            {
                "refresh": "deploy/bench's venv: python -m deploy.benchmark.room --record",
                "image": "tmpnb/jupyterlab (deploy/images/build-jupyter)",
                "requests": recorded,
            },
            indent=1,
        )
        + "\n"
    )
    log(f"recorded {len(recorded)} requests into {ROOM_REQUESTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record JupyterLab's start-up requests from Chromium into " + ROOM_REQUESTS.name)
    if parser.parse_args().record:
        record()
