import json
from typing import Any

from django.core.management.base import CommandParser

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import dashboard
from pool.services.dashboard import PoolOverview
from pool.services.network import guard_warnings

COLUMNS = [
    # (heading, key of the JSON row)
    ("POOL", "name"),
    ("IMAGE", "image"),
    ("SIZE", "capacity"),
    ("READY TARGET", "ready_target"),
    ("READY", "ready"),
    ("IN USE", "in_use"),
    ("STARTING", "starting"),
    ("FAILED TODAY", "failed_today"),
    ("NEXT SIZE", "next_schedule"),
    ("SAVED WORK", "saved_work"),
    ("URL", "landing"),
]


def row_data(row: PoolOverview) -> dict[str, Any]:
    pool, schedule = row["pool"], row["next_schedule"]
    return {
        "name": pool.name,
        "image": pool.image,
        "capacity": pool.capacity,
        "ready_target": pool.effective_ready_target,
        "ready": row["available"],
        "in_use": row["in_use"],
        "starting": row["starting"],
        "failed_today": row["failed_today"],
        "next_schedule": schedule and {"at": schedule.at.isoformat(), "capacity": schedule.capacity, "ready_target": schedule.ready_target},
        "saved_work": row["saved_work"],
        "landing": pool.landing_path,
    }


def cell(value: object) -> str:
    if isinstance(value, dict) and "bytes" in value:  # the snapshots kept
        return f"{value['snapshots']} ({value['bytes'] / 1024 / 1024:.1f} MB)" if value["snapshots"] else "0"
    if isinstance(value, dict):  # the next schedule
        return f"{value['capacity']} at {value['at'][:16].replace('T', ' ')}"
    return "-" if value is None else str(value)


class Command(PoolCommand):
    help = (
        "Show each pool's size and containers (ready, in use, starting, failed today) and the saved work it keeps, as a table or --json; "
        "a network guard that is not in place is a warning on stderr."
    )
    every_pool_by_default = True

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON instead of a table")

    def handle_pool(self, pool: Pool | None, *, as_json: bool = False, **options: Any) -> None:
        pools = Pool.objects.all() if pool is None else Pool.objects.filter(pk=pool.pk)
        rows = [row_data(row) for row in dashboard.pool_overview(pools)]
        for warning in guard_warnings():  # on stderr: the table and the JSON stay as they are
            self.stderr.write(f"WARNING: {warning}")
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        table = [[heading for heading, _ in COLUMNS]] + [[cell(row[key]) for _, key in COLUMNS] for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            self.stdout.write("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip())
