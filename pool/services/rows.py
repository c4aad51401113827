"""New rows on the admission's path, written with one prepared INSERT.

Model.save() on a new row goes through the ORM's general insert compiler,
which builds the same statement again each time. An assignment writes two
rows (its session and its event), and by valgrind's count this takes 0.62
million instructions off an admission's 6.86 (docs/performance-history.md). The
values are prepared as save() prepares them (each field's pre_save and
database preparation), so defaults, conversions and database errors are
the ORM's.
"""

import functools
from typing import Any, TypeVar

from django.db import connections, router
from django.db.models import Field, Model, signals

M = TypeVar("M", bound=Model)


def insert(instance: M) -> M:
    """Write ``instance`` as a new row and set its primary key. With anything
    listening to its model's save signals, it is Model.save() itself."""
    model = type(instance)
    if signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model):
        instance.save(force_insert=True)
        return instance
    alias = router.db_for_write(model, instance=instance)
    connection = connections[alias]
    statement, fields = _statement(model, alias)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding, instance._state.db = False, alias
    return instance


@functools.cache
def _statement(model: type[Model], alias: str) -> tuple[str, list["Field[Any, Any]"]]:
    """The INSERT of ``model``'s columns but its generated key, and the fields
    in their order."""
    quote = connections[alias].ops.quote_name
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.generated and field is not meta.auto_field]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) RETURNING {quote(meta.pk.column)}", fields
