from pool import services
from pool.management.base import PoolCommand


class Command(PoolCommand):
    help = "Replace every container not in use (after changing the image); containers in use keep running."

    def handle_pool(self, pool, **options):
        drained = services.drain_pool(pool, by=self.actor)
        self.stdout.write(f"Pool {pool.name}: replacing {drained} container(s); containers in use keep running.")
