import shutil
from typing import Any

from django.core.management.base import CommandError, CommandParser

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import collecting


class Command(PoolCommand):
    help = (
        "Copy the work of everyone holding a notebook of POOL into one zip (a folder per participant), "
        "without ending anything; it is also kept for the admin like saved work."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pool", help="pool name")
        parser.add_argument("--out", required=True, help="the zip to write")

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        out = options["out"]  # required by the parser
        assert pool is not None  # named on the command line
        collection = collecting.collect_now(pool=pool, by=self.actor)
        if not collection.file_name:
            raise CommandError(f"nothing collected: {collection.error}")
        try:
            shutil.copyfile(collecting.collection_path(collection), out)
        except OSError as error:
            raise CommandError(f"cannot write {out}: {error.strerror}") from None
        incomplete = f"; {collection.incomplete} not copied whole (see README.txt in the zip)" if collection.incomplete else ""
        self.stdout.write(f"Pool {pool.name}: the work of {collection.participants} participant(s) written to {out}{incomplete}.")
