from typing import Any

from django.core.management.base import BaseCommand

from pool.services.retention import prune_all_history


class Command(BaseCommand):
    help = "Delete ended containers, sessions, queue places and events older than TMPNB_HISTORY_DAYS, now."

    def handle(self, **options: Any) -> None:
        pruned = prune_all_history()
        self.stdout.write(", ".join(f"{kind}: {count}" for kind, count in pruned.items()))
