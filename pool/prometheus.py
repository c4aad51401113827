"""/metrics in Prometheus' text format, with the official prometheus-client.

A custom collector turns pool.services.metrics.metric_values(), read from the database at
each scrape, into metric families: correct across several gunicorn and
Celery processes, which in-process counters would not be.
"""

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from pool.models import Container
from pool.services import metrics

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

LIVE_STATES = [str(state) for state in Container.LIVE_STATES]


class DatabaseCollector:
    def collect(self) -> Iterator[Metric]:
        values = metrics.metric_values()

        capacity = GaugeMetricFamily("tmpnb_pool_capacity", "Containers the pool may run at once (pool_size).", labels=["pool"])
        target = GaugeMetricFamily("tmpnb_pool_ready_target", "Ready containers the pool keeps waiting.", labels=["pool"])
        containers = GaugeMetricFamily("tmpnb_containers", "Live containers by pool and state.", labels=["pool", "state"])
        assignments = CounterMetricFamily("tmpnb_assignments", "Notebooks handed to visitors.", labels=["pool"])
        turned_away = CounterMetricFamily("tmpnb_turned_away", "Visitors who found nothing ready, once per sample period while they wait.", labels=["pool"])
        culls = CounterMetricFamily("tmpnb_culls", "Sessions culled, by reason.", labels=["pool", "reason"])
        failures = CounterMetricFamily("tmpnb_failures", "Containers that failed to start, or died while running.", labels=["pool"])
        spawns = HistogramMetricFamily("tmpnb_spawn_duration_seconds", "Seconds from a container being asked for to its server answering.", labels=["pool"])
        # Every pool gets every series, zeros included, so that rates start from the first scrape.
        for name, pool in sorted(values["pools"].items()):
            capacity.add_metric([name], pool.capacity)
            target.add_metric([name], pool.effective_ready_target)
            for state in LIVE_STATES:
                containers.add_metric([name, state], values["containers"].get((name, state), 0))
            assignments.add_metric([name], values["assignments"].get((name,), 0))
            turned_away.add_metric([name], values["turned_away"].get((name,), 0))
            for reason in metrics.CULL_REASONS:
                culls.add_metric([name, reason], values["culls"].get((name, reason), 0))
            failures.add_metric([name], values["failures"].get((name,), 0))
            spawn = values["spawn_durations"].get(name, {"buckets": [(b, 0) for b in metrics.SPAWN_BUCKETS], "count": 0, "sum": 0.0})
            buckets = [(str(float(bound)), count) for bound, count in spawn["buckets"]] + [("+Inf", spawn["count"])]
            spawns.add_metric([name], buckets, spawn["sum"])
        yield from (capacity, target, containers, assignments, turned_away, culls, failures, spawns)


# auto_describe=False: registering must not query the database (at import time).
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def exposition() -> bytes:
    return generate_latest(REGISTRY)
