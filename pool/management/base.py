from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pool.backends.base import BackendError
from pool.materials_files import MaterialsError
from pool.models import Pool, Workshop
from pool.services import pools
from pool.services.collecting import CollectionError
from proxyapi import ProxyError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

# What the service refuses or cannot reach, each with a message for people.
REFUSALS = (pools.PoolError, ValidationError, BackendError, ProxyError, MaterialsError, CollectionError)


def refusal_message(error: Exception) -> str:
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)


def _no_usage(file: "SupportsWrite[str] | None" = None) -> None:
    pass


class ServiceCommand(BaseCommand):
    """An operator's command: a bad argument, or a refusal from the service,
    is one line on stderr and a non-zero exit, never a traceback."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # argparse prints the whole usage (many lines) before its one-line
        # error; the error says what is wrong and --help says the rest.
        parser.print_usage = _no_usage  # type: ignore[method-assign]  # argparse has no setting for this
        return parser

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except REFUSALS as error:
            raise CommandError(refusal_message(error)) from None


class PoolCommand(ServiceCommand):
    """A command about one pool, chosen with --pool. Without it: the default
    pool, or every pool when ``every_pool_by_default`` (handle_pool gets None)."""

    actor = "manage.py"  # who acted, in the event log
    every_pool_by_default = False

    def add_arguments(self, parser: CommandParser) -> None:
        every = "every pool" if self.every_pool_by_default else "the default pool"
        parser.add_argument("--pool", help=f"pool name (default: {every})")

    def handle(self, *args: Any, pool: str | None = None, **options: Any) -> None:
        if pool is None:
            target = None if self.every_pool_by_default else pools.get_default_pool()
        else:
            target = Pool.objects.filter(name=pool).first()
            if target is None:
                names = ", ".join(Pool.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"no pool named {pool!r}; pools: {names}")
        self.handle_pool(target, **options)

    def handle_pool(self, pool: Pool | None, **options: Any) -> None:
        raise NotImplementedError


class PoolOrWorkshopCommand(PoolCommand):
    """A command about one pool, named first, or about every pool of a
    workshop, named with --workshop: one of the two."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pool", nargs="?", help="pool name (or --workshop)")
        parser.add_argument("--workshop", help="a workshop's name: all its pools, instead of POOL")

    def handle(self, *args: Any, pool: str | None = None, workshop: str | None = None, **options: Any) -> None:
        if (pool is None) == (workshop is None):
            raise CommandError("name a POOL or a --workshop, one of the two")
        if workshop is None:
            super().handle(*args, pool=pool, **options)
        else:
            self.handle_workshop(workshop_named(workshop), **options)

    def handle_workshop(self, workshop: Workshop, **options: Any) -> None:
        raise NotImplementedError


def workshop_named(name: str) -> Workshop:
    """The workshop called ``name``; a CommandError that lists them if there is none, or several."""
    named = list(Workshop.objects.filter(name=name))
    if not named:
        names = ", ".join(sorted(set(Workshop.objects.values_list("name", flat=True)))) or "none"
        raise CommandError(f"no workshop named {name!r}; workshops: {names}")
    if len(named) > 1:
        starts = ", ".join(f"{w.local(w.starts_at):%Y-%m-%d %H:%M}" for w in named)
        raise CommandError(f"{len(named)} workshops are named {name!r} (starting {starts}); rename one in the admin")
    return named[0]
