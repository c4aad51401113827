from typing import Any

from django.core.management.base import CommandParser

from pool.management.base import PoolOrWorkshopCommand
from pool.models import Pool, Workshop
from pool.services import broadcasts


class Command(PoolOrWorkshopCommand):
    help = (
        "Send a file or folder of this host to every live notebook of POOL, or of every pool of a --workshop "
        "(never over a file of theirs: a name they hold becomes 'name (from organiser)'); notebooks started later get it too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("path", help="the file or folder to send")
        parser.add_argument("--unpack", action="store_true", help="PATH is a zip or tar archive of a folder: send the folder")
        parser.add_argument("--wait", type=int, default=600, help="seconds to wait for the worker to hand it out (default: 600)")

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        assert pool is not None  # named on the command line
        self.send([pool], **options)

    def handle_workshop(self, workshop: Workshop, **options: Any) -> None:
        self.send(list(workshop.pools.order_by("name")), **options)

    def send(self, pools: list[Pool], *, path: str, unpack: bool, wait: int, **options: Any) -> None:
        sent = broadcasts.broadcast_path_to(pools, path=path, by=self.actor, unpack=unpack)
        for each in broadcasts.wait_until_handed(sent, timeout=wait):
            self.stdout.write(broadcasts.how_far(each))
