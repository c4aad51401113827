"""Case refill: how fast the service makes containers ready, next to what
Docker itself can do on this machine (deploy/benchmark/raw.py)."""

from deploy.benchmark import Case, log, print_table
from deploy.benchmark.images import IMAGES
from deploy.benchmark.visitors import burst

RATIO = 0.8  # target of issue 6: the service's rate at least this share of raw Docker's
TITLE = "\nrefill (containers made ready per second)"


def case_refill(bench):
    """Per image: the raw rate, then the service's: prefill of R rows at
    start-up and refill of R after R visitors took the ready ones."""
    out = {}
    for kind in bench.args.refill_images:
        image = IMAGES[kind]
        r = bench.args.refill_n if kind == "tiny" else min(bench.args.refill_n, 20)
        raw = bench.raw_for(image, r)
        with bench.service(image=image, pool_size=2 * r, ready_target=r, name=f"refill-{kind}") as service:
            service.wait_ready(r)
            prefill = service.refill_rate()
            log(f"refill {kind}: {r} visitors take the ready containers")
            started, summary, _ = burst([f"{service.url}/spawn/"] * r, image=image, bound=bench.args.bound, retry_interval=bench.args.retry_interval)
            service.wait_ready(r, live=2 * r)
            refill = service.refill_rate(since=started, start=started)
        out[kind] = {
            "raw": raw,
            "prefill": prefill,
            "refill": refill,
            "burst_served": summary["served"],
            "ratio_prefill": round(prefill["per_second"] / raw["per_second"], 2),
            "ratio_refill": round(refill["per_second"] / raw["per_second"], 2),
            "leftovers": service.leftovers,
        }
    return out


def measured(refill):
    """(image kind, its figures) of each image measured."""
    return [(kind, r) for kind, r in refill.items() if isinstance(r, dict) and "raw" in r]


def show(refill, out):
    print(TITLE, file=out)
    print_table(
        f"{'image':<8} {'n':>3} {'raw/s':>7} {'prefill/s':>10} {'ratio':>6} {'refill/s':>9} {'ratio':>6}",
        [
            f"{kind:<8} {r['raw']['containers']:>3} {r['raw']['per_second']:>7} {r['prefill']['per_second']:>10} {r['ratio_prefill']:>6} "
            f"{r['refill']['per_second']:>9} {r['ratio_refill']:>6}   raw runs {r['raw'].get('runs_per_second')}"
            for kind, r in measured(refill)
        ],
        out,
    )
    raw = next((r["raw"] for _, r in measured(refill)), None)
    slots = f"{raw['docker_slots']} Docker calls at once, {raw['threads']} in flight" if raw else ""
    print(
        f"  raw: docker create + start + poll until it answers, {slots}, mean of 2 runs;"
        f" service: the same TMPNB_MAX_DOCK_WORKERS; prefill = pool filled at start-up,"
        f" refill = the same number started after visitors took every ready one",
        file=out,
    )


def targets(refill):
    if "error" in refill:
        return []
    out = []
    for kind, r in measured(refill):
        for step in ("refill", "prefill"):
            figure = f"{r[step]['per_second']}/s vs raw {r['raw']['per_second']}/s = {r[f'ratio_{step}']}"
            out.append((f"{kind}: {step} >= {RATIO} x raw", figure, r[f"ratio_{step}"] >= RATIO))
    return out


CASE = Case(run=case_refill, show=show, title=TITLE.strip(), targets=targets, images=lambda args: [IMAGES[kind] for kind in args.refill_images])
