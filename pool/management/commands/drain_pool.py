from typing import Any

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import pools


class Command(PoolCommand):
    help = "Replace every container not in use (after changing the image); containers in use keep running."

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        assert pool is not None  # not every_pool_by_default: the default pool, or the one named
        drained = pools.drain_pool(pool, by=self.actor)
        self.stdout.write(f"Pool {pool.name}: replacing {drained} container(s); containers in use keep running.")
