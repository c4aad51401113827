from typing import Any

from django.core.management.base import CommandParser

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import pools


class Command(PoolCommand):
    help = "Set a pool's size (pool_size); the next heartbeat starts or removes containers."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("size", type=int, help="the new capacity")
        parser.add_argument("--ready-target", type=int, help="ready containers to keep waiting (default: all)")

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        size, ready_target = options["size"], options["ready_target"]  # both always given by the parser
        assert pool is not None  # not every_pool_by_default: the default pool, or the one named
        pools.resize_pool(pool, size, ready_target=ready_target, by=self.actor)
        self.stdout.write(f"Pool {pool.name}: size {pool.capacity}, ready target {pool.effective_ready_target}.")
