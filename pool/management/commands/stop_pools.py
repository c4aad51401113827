from typing import Any

from pool.management.base import ServiceCommand
from pool.services import ending


class Command(ServiceCommand):
    help = "End every session and remove every notebook container (deploy/down runs it)."

    def handle(self, *args: Any, **options: Any) -> None:
        removed, proxy_answered = ending.stop_all_containers()
        if not proxy_answered:
            self.stderr.write("The proxy is not running: the routes went with it; only the containers were removed.")
        self.stdout.write(f"{removed} notebook containers removed.")
