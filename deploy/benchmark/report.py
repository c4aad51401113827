"""The results as tables, each case's by its own printer, then each target
met or missed."""

import sys

from deploy.benchmark import bursts
from deploy.benchmark.cases import CASES


def print_report(results, out=None):
    out = out or sys.stdout
    machine_info = results["machine"]
    print(
        f"\nmachine: {machine_info['nproc']} cores {machine_info['cpu']}, {machine_info['memory_gib']} GiB, "
        f"Docker {machine_info['docker']}, kernel {machine_info['kernel']}",
        file=out,
    )
    bursts.print_bursts(results["cases"], out)  # their table first, then what each burst adds
    for name, case in CASES.items():
        figures = results["cases"].get(name)
        if not figures:
            continue
        if "error" not in figures:
            case.show(figures, out)
        elif case.title is not None:
            print(f"\n{case.title}\n  error: {figures['error'][:300]}", file=out)
    print("\ntargets (issues 6 and 11)", file=out)
    for t in results["targets"]:
        print(f"  [{t['status']:>12}] {t['case']:<9} {t['target']:<62} {t['figure']}", file=out)


def check_targets(cases):
    """Each target of issues 6 and 11 with the figure measured, met or missed."""
    return [
        {"case": name, "target": target, "figure": figure, "status": "not measured" if ok is None else "met" if ok else "MISSED"}
        for name, case in CASES.items()
        if cases.get(name)
        for target, figure, ok in case.targets(cases[name])
    ]
