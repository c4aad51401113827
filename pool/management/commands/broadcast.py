from typing import Any

from django.core.management.base import CommandParser

from pool.management.base import PoolCommand
from pool.models import Pool
from pool.services import broadcasts


class Command(PoolCommand):
    help = (
        "Send a file or folder of this host to every live notebook of POOL (never over a file of theirs: "
        "a name they hold becomes 'name (from organiser)'); notebooks started later get it too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pool", help="pool name")
        parser.add_argument("path", help="the file or folder to send")
        parser.add_argument("--unpack", action="store_true", help="PATH is a zip or tar archive of a folder: send the folder")
        parser.add_argument("--wait", type=int, default=600, help="seconds to wait for the worker to hand it out (default: 600)")

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        path, unpack, wait = options["path"], options["unpack"], options["wait"]  # given by the parser
        assert pool is not None  # named on the command line
        sent = broadcasts.broadcast_path(pool=pool, path=path, by=self.actor, unpack=unpack)
        handed = broadcasts.wait_until_handed(sent, timeout=wait)
        if handed is not None:
            renamed = f"; {handed.renamed} held that name and got it as '(from organiser)'" if handed.renamed else ""
            self.stdout.write(f"Pool {pool.name}: {handed.name} reached {handed.reached} notebook(s), {handed.failed} failed{renamed}.")
            return
        self.stdout.write(f"Pool {pool.name}: {sent.name} sent to the worker, which has not handed it out yet; the event log will say how it went.")
