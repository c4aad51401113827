from django.core.management.base import BaseCommand

from pool import services


class Command(BaseCommand):
    help = "End every session and remove every notebook container (deploy/up runs it as it stops)."

    def handle(self, *args, **options):
        services.stop_all_containers()
        self.stdout.write("All notebook containers removed.")
