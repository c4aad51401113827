"""The event log's date drill-down: Django's own, with the dates it lists
found by pool.services.events.periods_with_events instead of by truncating
every event's time."""

import copy
from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.contrib.admin.views.main import ChangeList

from pool.services import events

register = template.Library()


class _ProbedDates:
    """The changelist's events, answering the two questions Django's
    drill-down asks of them."""

    def __init__(self, queryset: Any) -> None:
        self.queryset = queryset

    def aggregate(self, **_: Any) -> dict[str, Any]:
        return events.time_range(self.queryset)  # it asks for first=Min(time), last=Max(time)

    def datetimes(self, field_name: str, kind: str) -> list[Any]:
        return events.periods_with_events(self.queryset, kind)


@register.inclusion_tag("admin/date_hierarchy.html")
def event_date_hierarchy(cl: ChangeList) -> dict[str, Any] | None:
    probed = copy.copy(cl)
    probed.queryset = _ProbedDates(cl.queryset)
    return date_hierarchy(probed)
