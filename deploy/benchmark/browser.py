"""How long until JupyterLab is usable in a participant's browser (issue 12).

Brings deploy/up up on loopback (deploy/bench.py's Service) with a prefilled
pool of N notebooks, then N participants, each a fresh headless Chromium
context (Debian's /usr/bin/chromium through Playwright), open the landing page
at the same moment. A participant's time runs from its first request until
JupyterLab shows its launcher (the classic image: its file list); the bytes
are what crossed the wire (compressed sizes). Figures only, no assertion.

Run with the project's venv, as root:
    .venv/bin/python -m deploy.benchmark.browser [-n 1 -n 10] [--image classic] [--uncompressed]
"""

import argparse
import asyncio
import statistics
import time

from playwright.async_api import TimeoutError as PlaywrightTimeout, async_playwright

from deploy.benchmark import log
from deploy.benchmark.images import COMMANDS, IMAGES, ensure_image
from deploy.benchmark.service import Service

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USABLE = {"jupyter": ".jp-LauncherCard", "classic": "#notebook_list"}
BOUND = 180  # seconds a participant waits before the run counts it as not served


async def participant(browser, url, selector, start):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    received = []

    async def count(request):
        sizes = await request.sizes()
        received.append(sizes["responseBodySize"] + sizes["responseHeadersSize"])

    context.on("requestfinished", lambda request: asyncio.ensure_future(count(request)))
    page = await context.new_page()
    await start.wait()
    started = time.perf_counter()
    try:
        await page.goto(url, timeout=BOUND * 1000)
        await page.wait_for_selector(selector, timeout=BOUND * 1000)
        seconds = time.perf_counter() - started
    except PlaywrightTimeout:
        text = " ".join((await page.inner_text("body")).split())[:200]
        log(f"not usable within {BOUND} s at {page.url}: {text!r}")
        seconds = None
    await asyncio.sleep(0.5)  # let the size callbacks of the last requests finish
    await context.close()
    return seconds, len(received), sum(received)


async def burst(url, n, selector):
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            start = asyncio.Event()
            tasks = [asyncio.ensure_future(participant(browser, url, selector, start)) for _ in range(n)]
            await asyncio.sleep(1)  # every context made before anyone starts
            start.set()
            return await asyncio.gather(*tasks)
        finally:
            await browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, action="append", help="participants arriving at once (repeatable; default 1 and 10)")
    parser.add_argument("--image", choices=sorted(USABLE), default="jupyter", help="jupyter (JupyterLab, the default) or classic")
    parser.add_argument("--uncompressed", action="store_true", help="turn the image's response compression off, for comparison")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per size (default 2)")
    args = parser.parse_args(argv)
    image = IMAGES[args.image]
    ensure_image(image)
    command = COMMANDS[image]
    if args.uncompressed:
        command += " --ServerApp.tornado_settings=\"{{'compress_response': False}}\""
    for n in args.n or [1, 10]:
        for round_ in range(args.rounds):
            with Service(image=image, pool_size=n, name=f"browser-{n}", command=command) as service:
                service.wait_ready(n)
                results = asyncio.run(burst(f"{service.url}/", n, USABLE[args.image]))
            seconds = sorted(s for s, _, _ in results if s is not None) or [float("nan")]
            files, sizes = [f for _, f, _ in results], [b for _, _, b in results]
            log(
                f"{args.image}{' uncompressed' if args.uncompressed else ''}, {n} at once (round {round_ + 1}): "
                f"{sum(s is not None for s, _, _ in results)} of {n} usable, after "
                f"median {statistics.median(seconds):.2f} s, max {seconds[-1]:.2f} s "
                f"[{', '.join(f'{s:.2f}' for s in seconds)}]; each loaded {statistics.median(files):.0f} files, "
                f"{statistics.median(sizes) / 1e6:.2f} MB"
            )


if __name__ == "__main__":
    main()
