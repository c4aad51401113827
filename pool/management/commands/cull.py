from typing import Any

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import upkeep


class Command(PoolCommand):
    help = "End sessions idle longer than cull_timeout or open longer than cull_max, now."
    every_pool_by_default = True

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        culled = upkeep.cull_sessions(pool=pool)
        self.stdout.write(", ".join(f"{reason}: {count}" for reason, count in culled.items()))
