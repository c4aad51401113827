from django.core.management.base import BaseCommand

from pool import services


class Command(BaseCommand):
    help = "End sessions idle longer than cull_timeout or open longer than cull_max, now."

    def handle(self, *args, **options):
        culled = services.cull_sessions()
        self.stdout.write(", ".join(f"{reason}: {count}" for reason, count in culled.items()))
