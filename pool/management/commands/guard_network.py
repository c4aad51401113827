from typing import Any

from django.core.management.base import CommandParser

from pool.management.base import ServiceCommand
from pool.services import network


class Command(ServiceCommand):
    help = "Install the notebook network's firewall rules (deploy/up runs it), or remove them with --remove."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--remove", action="store_true", help="remove the rules instead")

    def handle(self, *args: Any, remove: bool = False, **options: Any) -> None:
        if remove:
            network.unguard_network()
        elif network.guard_network():
            self.stdout.write("Notebook network guarded.")
        elif network.guard_applies():
            self.stderr.write("Notebook network NOT guarded: see the event log.")
