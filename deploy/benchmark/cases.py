"""The cases of deploy/bench, in the report's order: each a ``Case``
(deploy/benchmark/__init__.py) of its own module."""

from deploy.benchmark import admissions, bursts, costs, files, refill, room, route, soak, sweep

CASES = {
    **bursts.CASES,
    "route": route.CASE,
    "cpu": costs.CPU,
    "instructions": admissions.CASE,
    "refill": refill.CASE,
    "footprint": costs.FOOTPRINT,
    "sweep": sweep.CASE,
    "room": room.CASE,
    "soak": soak.CASE,
    "files": files.CASE,
}
ALL_CASES = [name for name, case in CASES.items() if not case.named_only]
# Cases run only when named: the soak takes 45 minutes by default, files
# fills a pool of 145 for its room of 100.
NAMED_ONLY = [name for name, case in CASES.items() if case.named_only]
# The order they run in: refill first, whose raw Docker rates case c reuses.
RUN_ORDER = ["refill", "a", "b", "c", "route", "cpu", "instructions", "footprint", "sweep", "room", "soak", "files"]
