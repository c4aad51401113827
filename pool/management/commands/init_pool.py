from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from pool.management.base import ServiceCommand, refusal_message
from pool.services import pools


class Command(ServiceCommand):
    help = "Create the default pool from the TMPNB_* settings, or apply the ones set in the environment."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pool, created = pools.init_default_pool()
        except ValidationError as error:
            raise CommandError(f"the TMPNB_* settings do not make a valid pool: {refusal_message(error)}") from None
        verb = "created" if created else "kept"
        self.stdout.write(f"Pool {pool.name} {verb}: image {pool.image}, size {pool.capacity}, ready target {pool.effective_ready_target}.")
