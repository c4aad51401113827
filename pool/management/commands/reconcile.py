from dataclasses import asdict
from typing import Any

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import upkeep


class Command(PoolCommand):
    help = "Compare the database with Docker and the proxy and repair both, now."
    every_pool_by_default = True

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        report = upkeep.reconcile(pool=pool)
        self.stdout.write(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in asdict(report).items()))
