from dataclasses import asdict

from pool import services
from pool.management.base import PoolCommand


class Command(PoolCommand):
    help = "Compare the database with Docker and the proxy and repair both, now."
    every_pool_by_default = True

    def handle_pool(self, pool, **options):
        report = services.reconcile(pool=pool)
        self.stdout.write(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in asdict(report).items()))
