from django.core.management.base import BaseCommand, CommandError

from pool import services
from pool.models import Pool


class PoolCommand(BaseCommand):
    """A command about one pool, chosen with --pool (default: the default pool)."""

    actor = "manage.py"  # who acted, in the event log

    def add_arguments(self, parser):
        parser.add_argument("--pool", help="pool name (default: the default pool)")

    def handle(self, *args, pool=None, **options):
        target = services.get_default_pool() if pool is None else Pool.objects.filter(name=pool).first()
        if target is None:
            names = ", ".join(Pool.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no pool named {pool!r}; pools: {names}")
        self.handle_pool(target, **options)

    def handle_pool(self, pool, **options):
        raise NotImplementedError
