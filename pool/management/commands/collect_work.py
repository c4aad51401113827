import shutil
from typing import Any

from django.core.management.base import CommandError, CommandParser

from pool.management.base import PoolOrWorkshopCommand
from pool.models import Collection, Pool, Workshop
from pool.services import collecting


class Command(PoolOrWorkshopCommand):
    help = (
        "Copy the work of everyone holding a notebook of POOL, or of every pool of a --workshop, into one zip "
        "(a folder per participant), without ending anything; it is also kept for the admin like saved work."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--out", required=True, help="the zip to write")

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        assert pool is not None  # named on the command line
        self.write(collecting.collect_now(pool=pool, by=self.actor), f"Pool {pool.name}", out=options["out"])

    def handle_workshop(self, workshop: Workshop, **options: Any) -> None:
        pools = ", ".join(workshop.pools.order_by("name").values_list("name", flat=True))
        collection = collecting.collect_now(workshop=workshop, by=self.actor)
        self.write(collection, f"Workshop {workshop.name} (pools {pools})", out=options["out"])

    def write(self, collection: Collection, source: str, *, out: str) -> None:
        if not collection.file_name:
            raise CommandError(f"nothing collected: {collection.error}")
        try:
            shutil.copyfile(collecting.collection_path(collection), out)
        except OSError as error:
            raise CommandError(f"cannot write {out}: {error.strerror}") from None
        incomplete = f"; {collection.incomplete} not copied whole (see README.txt in the zip)" if collection.incomplete else ""
        self.stdout.write(f"{source}: the work of {collection.participants} participant(s) written to {out}{incomplete}.")
