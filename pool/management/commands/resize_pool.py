from pool.management.base import PoolCommand
from pool.services import pools


class Command(PoolCommand):
    help = "Set a pool's size (pool_size); the next heartbeat starts or removes containers."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("size", type=int, help="the new capacity")
        parser.add_argument("--ready-target", type=int, help="ready containers to keep waiting (default: all)")

    def handle_pool(self, pool, *, size, ready_target, **options):
        pools.resize_pool(pool, size, ready_target=ready_target, by=self.actor)
        self.stdout.write(f"Pool {pool.name}: size {pool.capacity}, ready target {pool.effective_ready_target}.")
