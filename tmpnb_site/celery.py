import os
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps, signals
from click import Option

if TYPE_CHECKING:
    from celery.beat import _Process, _Threaded
    from celery.worker import WorkController

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tmpnb_site.settings")

app = Celery("tmpnb_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class BeatThread(bootsteps.StartStopStep):
    """``celery worker --beat-thread``: the periodic tasks (heartbeat, cull,
    usage, schedules) sent from a thread of the worker. Celery's own
    ``--beat`` forks a second process, about 70 MiB more on one machine."""

    label = "BeatThread"
    conditional = True

    def __init__(self, worker: "WorkController", beat_thread: bool = False, **kwargs: Any) -> None:
        self.enabled = beat_thread
        super().__init__(worker, **kwargs)

    # celery-types gives Step.create no result; StartStopStep starts and stops the one it returns.
    def create(self, worker: "WorkController") -> "_Threaded | _Process":  # type: ignore[override]
        # Imported here: celery.beat is only needed where the beat runs.
        from celery.beat import EmbeddedService

        # Set from the command line by WorkController.setup_defaults; celery-types leaves them out.
        schedule_filename, scheduler = worker.schedule_filename, worker.scheduler  # type: ignore[attr-defined]
        return EmbeddedService(worker.app, schedule_filename=schedule_filename, scheduler_cls=scheduler, thread=True)


app.user_options["worker"].add(Option(["--beat-thread"], is_flag=True, default=False, help="Send the periodic tasks from a thread of this worker."))
app.steps["worker"].add(BeatThread)


@app.on_after_finalize.connect
def schedule_heartbeat(sender: Celery, **kwargs: Any) -> None:
    # Imported here: the settings are only ready once the app is finalized.
    from django.conf import settings

    from pool.services import worker

    sender.add_periodic_task(settings.TMPNB_HEARTBEAT, sender.signature(worker.HEARTBEAT), name="heartbeat")
    sender.add_periodic_task(settings.TMPNB_CULL_PERIOD, sender.signature(worker.CULL), name="cull")
    sender.add_periodic_task(settings.TMPNB_DISK_PERIOD, sender.signature(worker.CHECK_DISK), name="disk")
    sender.add_periodic_task(settings.TMPNB_SAMPLE_PERIOD, sender.signature(worker.SAMPLE_USAGE), name="usage")
    # Planned pool sizes are due to the minute: look every heartbeat.
    sender.add_periodic_task(settings.TMPNB_HEARTBEAT, sender.signature(worker.APPLY_SCHEDULES), name="schedules")
    # A workshop's end is due to the minute too (its warming is one of the schedules).
    sender.add_periodic_task(settings.TMPNB_HEARTBEAT, sender.signature(worker.ADVANCE_WORKSHOPS), name="workshops")


@signals.worker_ready.connect
def guard_notebook_network(sender: object, **kwargs: Any) -> None:
    """Every way of running a worker (deploy/up, the systemd units, a second
    machine) puts the network guard in place before its first spawn; the
    heartbeat puts it back if a firewall reload takes it away later."""
    from pool.services.network import guard_network

    guard_network()


@signals.worker_shutdown.connect
def reap_embedded_beat(sender: "WorkController", **kwargs: Any) -> None:
    """Wait for the beat process of ``worker --beat`` (deploy/up runs beat so).

    Celery stops an embedded beat by sending it SIGTERM but does not wait for
    it, so the worker can exit first: beat is then left to init, which shows
    it as ``[celery] <defunct>`` until it gets round to reaping it. This signal
    comes after the worker stopped its parts, beat included.
    """
    beat = getattr(sender, "beat", None)
    if beat is not None and hasattr(beat, "join"):
        beat.join(timeout=10)
