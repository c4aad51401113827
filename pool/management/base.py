from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pool.backends.base import BackendError
from pool.materials_files import MaterialsError
from pool.models import Pool
from pool.services import pools
from proxyapi import ProxyError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

# What the service refuses or cannot reach, each with a message for people.
REFUSALS = (pools.PoolError, ValidationError, BackendError, ProxyError, MaterialsError)


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
