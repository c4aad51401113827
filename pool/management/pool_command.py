from django.core.management.base import BaseCommand, CommandError

from pool import services
from pool.models import Pool


class PoolCommand(BaseCommand):
    """A command about one pool, chosen with --pool. Without it: the default
    pool, or every pool when ``every_pool_by_default`` (handle_pool gets None)."""

    actor = "manage.py"  # who acted, in the event log
    every_pool_by_default = False

    def add_arguments(self, parser):
        every = "every pool" if self.every_pool_by_default else "the default pool"
        parser.add_argument("--pool", help=f"pool name (default: {every})")

    def handle(self, *args, pool=None, **options):
        if pool is None:
            target = None if self.every_pool_by_default else services.get_default_pool()
        else:
            target = Pool.objects.filter(name=pool).first()
            if target is None:
                names = ", ".join(Pool.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"no pool named {pool!r}; pools: {names}")
        self.handle_pool(target, **options)

    def handle_pool(self, pool, **options):
        raise NotImplementedError
