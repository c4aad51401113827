from dataclasses import asdict

from django.core.management.base import BaseCommand

from pool import services


class Command(BaseCommand):
    help = "Compare the database with Docker and the proxy and repair both, now."

    def handle(self, *args, **options):
        report = services.reconcile()
        self.stdout.write(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in asdict(report).items()))
