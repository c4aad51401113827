from django.core.management.base import BaseCommand, CommandError

from pool import services
from pool.models import Pool


class Command(BaseCommand):
    help = "Set a pool's size (pool_size); the next heartbeat starts or removes containers."

    def add_arguments(self, parser):
        parser.add_argument("size", type=int, help="the new capacity")
        parser.add_argument("--ready-target", type=int, help="ready containers to keep waiting (default: all)")
        parser.add_argument("--pool", help="pool name (default: the default pool)")

    def handle(self, *args, size, ready_target, pool, **options):
        target = services.get_default_pool() if pool is None else Pool.objects.filter(name=pool).first()
        if target is None:
            raise CommandError(f"no pool named {pool!r}; pools: {', '.join(Pool.objects.values_list('name', flat=True))}")
        try:
            services.resize_pool(target, size, ready_target=ready_target)
        except services.PoolError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Pool {target.name}: size {target.capacity}, ready target {target.effective_ready_target}.")
