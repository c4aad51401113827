import functools
import hashlib
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from pool import origins
from pool.command import check_command_template, runs_jupyter_server
from pool.materials_files import check_source
from pool.options import DEFAULT_CPU_QUOTA, parse_extra_hosts, parse_host_directories

if TYPE_CHECKING:
    from pool.backends.base import StartedContainer

# Conditions stated by more than one query: the QuerySets, the partial indexes
# and constraints that serve them, and the admission's raw SQL (where_sql) all
# take them from here.
WAITING_PLACE = Q(served_at__isnull=True, left_at__isnull=True)  # a QueueEntry not served, not left
LIVE_SESSION = Q(ended_at__isnull=True)


def where_sql(model: type[models.Model], condition: Q) -> tuple[str, tuple[Any, ...]]:
    """``condition`` (a Q over ``model``'s fields) as SQL and its parameters,
    for raw statements on the admission's hot path, so that they state a
    condition as the QuerySets do. Compiled once per process: building the
    ORM's query costs more than running it there."""
    return _compiled_where(model, condition, connection.vendor)


@functools.cache
def _compiled_where(model: type[models.Model], condition: Q, vendor: str) -> tuple[str, tuple[Any, ...]]:
    query = model._default_manager.filter(condition).query
    sql, params = query.get_compiler(connection=connection).compile(query.where)
    return sql, tuple(params)


def _as_validation_error(check: Callable[..., object], *args: Any) -> None:
    try:
        check(*args)
    except ValueError as error:
        raise ValidationError(str(error)) from None


# Module-level functions, as migrations need to name them.
def validate_command(value: str) -> None:
    _as_validation_error(check_command_template, value)


def validate_host_directories(value: str) -> None:
    _as_validation_error(parse_host_directories, value, settings.TMPNB_PROTECTED_PATHS)


def validate_extra_hosts(value: str) -> None:
    _as_validation_error(parse_extra_hosts, value)


def validate_materials_source(value: str) -> None:
    _as_validation_error(check_source, value, settings.TMPNB_PROTECTED_PATHS)


class Pool(models.Model):
    """A set of interchangeable notebook containers of one image and options."""

    name = models.SlugField(max_length=40, unique=True, help_text="Used in container names and labels.")
    image = models.CharField(max_length=200, help_text="Docker image; must already be on the host.")
    command = models.TextField(
        validators=[validate_command],
        help_text="Placeholders: {base_path} (required), {port}, {ip}, {token}.",
    )
    capacity = models.PositiveIntegerField(validators=[MaxValueValidator(10000)], help_text="pool_size: containers this pool may run at once.")
    ready_target = models.PositiveIntegerField(null=True, blank=True, help_text="Ready containers to keep waiting; empty means the whole capacity.")
    mem_limit = models.CharField(
        max_length=20,
        blank=True,
        validators=[RegexValidator(r"^\d+[bkmgBKMG]?$", "A size such as 512m or 2g.")],
    )
    cpu_shares = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(2)])
    container_ip = models.GenericIPAddressField(default="127.0.0.1", help_text="Host address ports are published on.")
    container_port = models.PositiveIntegerField(default=8888, help_text="Port the server listens on inside.")
    redirect_uri = models.CharField(max_length=200, default="/lab", help_text="Where a new visitor lands.")
    cull_timeout = models.PositiveIntegerField(default=3600, help_text="Seconds idle before a session is culled.")
    cull_max = models.PositiveIntegerField(default=14400, help_text="Seconds after which a session is culled even if active.")
    cpu_quota = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_CPU_QUOTA,
        validators=[MinValueValidator(1000)],
        help_text="CPU microseconds per 100 ms period (100000: one core); empty: no cap.",
    )
    container_user = models.CharField(max_length=100, blank=True, help_text="User to run as; empty: the image's.")
    host_network = models.BooleanField(default=False, help_text="Share the host's network (each gets a host port).")
    docker_network = models.CharField(max_length=100, blank=True, help_text="Docker network to attach containers to.")
    internal_network = models.BooleanField(default=False, help_text="Cut notebooks off from every network but the proxy's (an internal Docker network).")
    host_directories = models.TextField(blank=True, validators=[validate_host_directories], help_text="/host:/container[:ro|rw], comma-separated.")
    extra_hosts = models.TextField(blank=True, validators=[validate_extra_hosts], help_text="name:address, comma-separated.")
    use_tokens = models.BooleanField(default=True, help_text="Give every notebook server its own token.")
    user_length = models.PositiveIntegerField(default=12, validators=[MinValueValidator(8), MaxValueValidator(64)], help_text="Length of the /user/<id>/ id.")
    access_code = models.CharField(max_length=100, blank=True, help_text="Code visitors enter once before they get a notebook; empty: none asked.")
    live_help = models.BooleanField(
        default=False,
        help_text="Helpers may ask to join a participant's JupyterLab live (real-time collaboration on); needs the JupyterLab image.",
    )
    materials_source = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_materials_source],
        help_text="Workshop files copied into every new notebook: a git URL, or the absolute path of a folder or a zip/tar.gz archive on this host.",
    )
    materials_branch = models.CharField(max_length=200, blank=True, help_text="The git branch or tag; empty: the repository's default.")
    materials_version = models.PositiveIntegerField(default=0, editable=False, help_text="Counts the materials prepared; 0: never.")
    materials_prepared_at = models.DateTimeField(null=True, blank=True, editable=False)
    materials_summary = models.CharField(max_length=700, blank=True, editable=False, help_text="What the prepared version holds.")
    materials_error = models.TextField(blank=True, editable=False, help_text="Why the last materials asked for were refused.")
    materials_tried = models.CharField(max_length=710, blank=True, editable=False, help_text="The source and branch last prepared or refused.")
    materials_preparing_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A worker took the materials to prepare then; empty once done."
    )
    failure_streak = models.PositiveIntegerField(default=0, editable=False, help_text="Failed spawns in a row.")
    next_spawn_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Backing off until then.")
    paused_reason = models.TextField(blank=True, editable=False, help_text="Why spawning is paused; empty when it is not.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.ready_target is not None and self.ready_target > self.capacity:
            raise ValidationError({"ready_target": "The ready target cannot exceed the capacity."})
        if self.internal_network and (self.host_network or self.docker_network):
            raise ValidationError({"internal_network": "An internal network excludes the host network and another Docker network."})
        if settings.TMPNB_BACKEND == "swarm":
            # The proxy reaches a Swarm's notebooks at their node's published
            # ports, and only the guard cuts an internal network off (README "Backends").
            if self.host_network:
                raise ValidationError({"host_network": "Notebooks on a Swarm cannot use the host network: the proxy could not reach them on another node."})
            if self.internal_network and not settings.TMPNB_NETWORK_GUARD:
                raise ValidationError({"internal_network": "On a Swarm an internal network needs the network guard (TMPNB_NETWORK_GUARD)."})
        if self.live_help and not runs_jupyter_server(self.command):
            raise ValidationError({"live_help": "Live help needs JupyterLab on jupyter-server 2 (a `jupyter lab` command and the JupyterLab image)."})

    def spawning_blocked(self, now: datetime) -> bool:
        return bool(self.paused_reason) or (self.next_spawn_at is not None and self.next_spawn_at > now)

    @property
    def materials_wanted(self) -> str:
        """The materials asked for, as materials_tried records them: a pool
        whose two differ has materials to prepare."""
        return f"{self.materials_source}#{self.materials_branch}" if self.materials_source else ""

    def materials_stalled(self, now: datetime) -> bool:
        """Materials taken to prepare long ago and never done: their worker died."""
        limit = timedelta(seconds=settings.TMPNB_MATERIALS_GIT_TIMEOUT + 300)
        return self.materials_preparing_since is not None and self.materials_preparing_since < now - limit

    @property
    def awaiting_materials(self) -> bool:
        """Materials are asked for and none were prepared or refused yet: a
        container started now would have none, so none is started."""
        return bool(self.materials_source) and not self.materials_version and not self.materials_error

    @property
    def effective_ready_target(self) -> int:
        return self.capacity if self.ready_target is None else min(self.ready_target, self.capacity)

    @property
    def landing_path(self) -> str:
        """Where a visitor starts a notebook of this pool: / for the default pool
        (which answers at /p/<name>/ as well)."""
        return "/" if self.name == settings.TMPNB_DEFAULT_POOL["name"] else f"/p/{self.name}/"


class ContainerQuerySet(models.QuerySet["Container"]):
    def live(self) -> "ContainerQuerySet":
        """Containers that hold a place in their pool."""
        return self.filter(Container.LIVE)

    def ready(self) -> "ContainerQuerySet":
        return self.filter(state=Container.State.READY)

    def spawning(self) -> "ContainerQuerySet":
        return self.filter(state=Container.State.SPAWNING)

    def assigned(self) -> "ContainerQuerySet":
        return self.filter(state=Container.State.ASSIGNED)

    def spread(self) -> "models.QuerySet[Container, tuple[str, int]]":
        """(node, count) pairs: how the containers are spread over the machines."""
        return self.order_by("node").values_list("node").annotate(n=models.Count("pk"))

    def move_to(self, state: str, *, only_from: Iterable[str] | None = None, **fields: Any) -> int:
        """Move the rows that may go to ``state`` there (the rows of
        ``only_from`` only, if given, a subset of those allowed) and stamp the
        time; the one way any writer changes a container's state. It is one
        conditional UPDATE: of concurrent callers moving the same row, only
        one changes it. Returns the number of rows moved."""
        allowed: Iterable[str] = Container.sources_of(state)
        if only_from is not None:
            if not set(only_from) <= set(allowed):
                raise ValueError(f"a container cannot go from {sorted(set(only_from) - set(allowed))} to {state}")
            allowed = only_from
        return self.filter(state__in=allowed).update(state=state, **{Container.ENTERED_AT[state]: timezone.now()}, **fields)

    def claim_longest_ready(self, pool_id: int, *, only_if_nobody_waits: bool = False) -> "Container | None":
        """The ready container of the pool that has waited longest, moved to
        ASSIGNED and returned; None if none is ready (or, with
        ``only_if_nobody_waits``, if a visitor waits for the pool).

        The admission's hot path, so one statement picks and moves the row
        (move_to would need a read first): of concurrent claimers only one can
        win a row, and on PostgreSQL they skip each other's locked rows instead
        of queueing on them. It moves along the same arrow as move_to would.
        """
        target = Container.State.ASSIGNED
        (source,) = Container.sources_of(target)
        table, queue_table = Container._meta.db_table, QueueEntry._meta.db_table
        now = timezone.now()
        skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        waiting, waiting_params = where_sql(QueueEntry, WAITING_PLACE)
        nobody_waits = f" AND NOT EXISTS (SELECT 1 FROM {queue_table} WHERE pool_id = %s AND {waiting})" if only_if_nobody_waits else ""
        # What a redirect and the end of a session need; other fields load on first use.
        columns = [f.attname for f in Container._meta.concrete_fields if f.attname in Container.CLAIM_RETURNS]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET state = %s, {Container.ENTERED_AT[target]} = %s"
                f" WHERE state = %s AND id = (SELECT id FROM {table} WHERE pool_id = %s AND state = %s"
                f" ORDER BY ready_at, id LIMIT 1{skip_locked}){nobody_waits}"
                f" RETURNING {', '.join(columns)}",
                [target, connection.ops.adapt_datetimefield_value(now), source, pool_id, source] + ([pool_id, *waiting_params] if only_if_nobody_waits else []),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        container = Container.from_db(connection.alias, columns, row)  # from_db wants the model's field order
        container.state, container.assigned_at = target, now
        return container


class Container(models.Model):
    class State(models.TextChoices):
        SPAWNING = "spawning"
        READY = "ready"
        ASSIGNED = "assigned"
        STOPPING = "stopping"
        GONE = "gone"
        FAILED = "failed"

    LIVE_STATES = (State.SPAWNING, State.READY, State.ASSIGNED, State.STOPPING)
    LIVE = Q(state__in=LIVE_STATES)  # containers that hold a place in their pool

    # The whole state machine: every state change goes through move_to (a
    # conditional update), and only along these arrows. A spawning row drained
    # or killed goes to STOPPING (a cancellation); FAILED is for spawns that
    # went wrong on their own.
    TRANSITIONS = {
        State.SPAWNING: (State.READY, State.STOPPING, State.FAILED),
        State.READY: (State.ASSIGNED, State.STOPPING),
        State.ASSIGNED: (State.STOPPING,),
        State.STOPPING: (State.GONE,),
        State.GONE: (),
        State.FAILED: (),
    }
    # What ContainerQuerySet.claim_longest_ready reads back.
    CLAIM_RETURNS = {"id", "pool_id", "name", "path_id", "token", "backend_id", "host_ip", "host_port", "node"}
    # The time a state is entered is stamped on this field.
    ENTERED_AT: dict[str, str] = {
        State.READY: "ready_at",
        State.ASSIGNED: "assigned_at",
        State.STOPPING: "ended_at",
        State.GONE: "ended_at",
        State.FAILED: "ended_at",
    }

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="containers")
    name = models.CharField(max_length=200, unique=True)
    path_id = models.CharField(max_length=64, unique=True, help_text="The <id> of /user/<id>/.")
    token = models.CharField(max_length=100, blank=True)
    backend_id = models.CharField(max_length=64, blank=True, db_index=True)
    host_ip = models.GenericIPAddressField(null=True, blank=True)
    host_port = models.PositiveIntegerField(null=True, blank=True)
    node = models.CharField(max_length=200, blank=True, help_text="The machine it runs on (Swarm backend).")
    materials_version = models.PositiveIntegerField(null=True, blank=True, help_text="The pool's materials copied in.")
    broadcasts_through = models.PositiveIntegerField(default=0, help_text="The id of the last broadcast of its pool handed to it (or due to it).")
    state = models.CharField(max_length=10, choices=State.choices, default=State.SPAWNING)
    error = models.TextField(blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A spawn in progress renews this; past it, its worker is taken for dead.")
    disk_used = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes it had written at the last disk check (TMPNB_DISK_LIMIT).")
    disk_at_landing = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Bytes it had written when its participant landed (the last disk check before, else the first after): "
        "what they saved since is disk_used less this.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = ContainerQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        # A pool's rows are nearly all history (gone, kept TMPNB_HISTORY_DAYS):
        # its live rows of a state are found, and the longest ready claimed,
        # without reading the history or sorting (a claim read every row of
        # its pool: 12 ms an admission with 20,000 ended containers).
        # The heartbeat's prune finds the old ended rows the same way.
        indexes = [
            models.Index(fields=["pool", "state", "ready_at", "id"], name="containers_by_pool_state"),
            models.Index(fields=["state", "ended_at"], name="containers_by_state_end"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def base_path(self) -> str:
        return f"/user/{self.path_id}/"

    @property
    def route_path(self) -> str:
        return origins.route_path(self.path_id)

    @property
    def target(self) -> str:
        return f"http://{self.host_ip}:{self.host_port}"

    def url_for(self, path: str) -> str:
        """The visitor's path inside this container, with the notebook token
        (on the notebook's own origin: pool.origins.notebook_url)."""
        url = f"{self.base_path}{path.lstrip('/')}"
        return f"{url}?token={self.token}" if self.token else url

    def mark_started(self, started: "StartedContainer") -> None:
        """Record where a started container runs (a backend's StartedContainer)
        and the address the proxy reaches it at (TMPNB_ROUTE_TO)."""
        self.backend_id = started.backend_id
        address = started.address(settings.TMPNB_ROUTE_TO)
        if address is None:
            raise ValueError(f"{started.backend_id} answers on no address")
        self.host_ip, self.host_port = address
        self.node = started.node
        self.save(update_fields=["backend_id", "host_ip", "host_port", "node"])

    @classmethod
    def sources_of(cls, state: str) -> list[str]:
        return [source for source, targets in cls.TRANSITIONS.items() if state in targets]

    def move_to(self, state: str, *, only_from: Iterable[str] | None = None, **fields: Any) -> bool:
        """This row's state change (see ContainerQuerySet.move_to); False if
        the row was not in a state it may leave for ``state`` (another caller
        moved it first). On success the instance is refreshed."""
        if not Container.objects.filter(pk=self.pk).move_to(state, only_from=only_from, **fields):
            return False
        self.refresh_from_db()
        return True

    def mark_failed(self, error: str) -> bool:
        """A spawn that went wrong on its own; False if it was no longer
        spawning (drained or killed meanwhile: cancelled, not failed)."""
        return self.move_to(self.State.FAILED, error=error[:2000])

    def mark_gone(self) -> bool:
        return self.move_to(self.State.GONE)

    def claim_spawn(self, lease: timedelta) -> bool:
        """Take the first lease of a spawning row: of two workers handed the
        same row (a task delivered twice), only one starts it."""
        return self._lease(lease, lease_until__isnull=True)

    def renew_lease(self, lease: timedelta) -> bool:
        """Tell the reconciler this spawn is alive; False if it is no longer
        spawning (drained, killed, or taken for dead)."""
        return self._lease(lease)

    def _lease(self, lease: timedelta, **condition: Any) -> bool:
        until = timezone.now() + lease
        if not Container.objects.filter(pk=self.pk, state=self.State.SPAWNING, **condition).update(lease_until=until):
            return False
        self.lease_until = until
        return True


class QueueEntryQuerySet(models.QuerySet["QueueEntry"]):
    def waiting(self) -> "QueueEntryQuerySet":
        return self.filter(WAITING_PLACE)

    def in_order(self) -> "QueueEntryQuerySet":
        return self.order_by("joined_at", "pk")


class QueueEntry(models.Model):
    """A visitor waiting for a container of a pool, in arrival order."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="queue")
    visitor = models.CharField(max_length=64, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    next_path = models.CharField(max_length=500, blank=True, help_text="Where in the notebook they asked to land.")
    display_name = models.CharField(max_length=60, blank=True, help_text="The name they typed while waiting, if any: their session takes it.")
    joined_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now, help_text="The waiting page checks in while it is open.")
    served_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True, help_text="Set when they stopped waiting (page closed).")

    objects = QueueEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "queue entries"
        constraints = [
            # Reloading keeps one's place: a visitor waits once.
            models.UniqueConstraint(fields=["visitor"], condition=WAITING_PLACE, name="one_place_per_visitor"),
        ]
        # The address limit counts the places of an address at every admission;
        # a claim asks whether anyone waits for the pool, and a place its
        # position, among the waiting places only (not the pool's history).
        indexes = [
            models.Index(fields=["client_ip"], condition=WAITING_PLACE, name="places_by_address"),
            models.Index(fields=["pool", "joined_at", "id"], condition=WAITING_PLACE, name="waiting_places_by_pool"),
        ]

    def __str__(self) -> str:
        return f"{self.visitor} waiting for {self.pool}"


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    def due(self, now: datetime) -> "ScheduleQuerySet":
        return self.filter(applied_at__isnull=True, at__lte=now)

    def upcoming(self) -> "ScheduleQuerySet":
        return self.filter(applied_at__isnull=True)


class Schedule(models.Model):
    """A pool size planned ahead; Celery beat applies it once, at its time."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="schedules")
    at = models.DateTimeField(db_index=True, help_text="When to apply it.")
    capacity = models.PositiveIntegerField(help_text="The pool's size from then on.")
    ready_target = models.PositiveIntegerField(
        null=True, blank=True, help_text="Ready containers to keep waiting; empty keeps the pool's (within the new size)."
    )
    applied_at = models.DateTimeField(null=True, blank=True, editable=False)
    workshop = models.ForeignKey(
        "Workshop",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        editable=False,
        related_name="schedules",
        help_text="The workshop that planned it, if one did.",
    )

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.pool}: size {self.capacity} at {self.at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.ready_target is not None and self.capacity is not None and self.ready_target > self.capacity:
            raise ValidationError({"ready_target": "The ready target cannot exceed the size."})


def visitor_tag(visitor: str) -> str:
    """A short, stable name for a visitor that can be shown and logged: the
    cookie's value itself would let whoever reads it act as the visitor."""
    return hashlib.sha256(visitor.encode()).hexdigest()[:10]


class SessionQuerySet(models.QuerySet["Session"]):
    def active(self) -> "SessionQuerySet":
        return self.filter(LIVE_SESSION)

    def end(self, reason: str, by: str = "") -> int:
        return self.update(ended_at=timezone.now(), end_reason=reason, ended_by=by)


class Session(models.Model):
    """One visitor holding one container, from assignment to its end."""

    class EndReason(models.TextChoices):
        KILLED = "killed", "killed by an organiser"
        CULLED_IDLE = "culled-idle", "idle too long"
        CULLED_AGE = "culled-age", "open too long"
        CONTAINER_GONE = "container-gone", "container stopped"
        NODE_LOST = "node-lost", "node lost"
        SERVICE_STOPPED = "service-stopped", "service stopped"
        DISK_FULL = "disk-full", "wrote past its disk limit"

    visitor = models.CharField(max_length=64, db_index=True)
    container = models.OneToOneField(Container, on_delete=models.PROTECT, related_name="session")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    ended_by = models.CharField(max_length=150, blank=True, help_text="The organiser who ended it, if any.")
    waited = models.DurationField(null=True, blank=True, help_text="How long the visitor waited in the queue.")
    # The resume code (pool/services/resume.py), made when first shown: as the
    # holder reads it, and the keyed hash a typed code is looked up by. Not
    # shown in the admin: it reaches only the holder's own pages.
    resume_code = models.CharField(max_length=60, unique=True, null=True, blank=True, editable=False)
    resume_key = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    resume_made_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the participant typed from inside their notebook (pool/services/room.py):
    # untrusted text, escaped wherever it is shown.
    display_name = models.CharField(max_length=60, blank=True, help_text="The name the participant typed, if any.")
    hand_raised_at = models.DateTimeField(null=True, blank=True, help_text="When the participant raised a hand; empty when it is down.")
    hand_text = models.CharField(max_length=300, blank=True, help_text="What the participant asks help with, if they said.")
    # A helper's read-only look (pool/services/look.py): the participant is told until then.
    helper_looking_until = models.DateTimeField(null=True, blank=True, editable=False)

    objects = SessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One visitor holds one container: a second, concurrent claim by the
            # same visitor fails here and is rolled back.
            models.UniqueConstraint(fields=["visitor"], condition=LIVE_SESSION, name="one_live_session_per_visitor"),
        ]
        # The address limit counts the live sessions of an address at every
        # admission; ended ones pile up for TMPNB_HISTORY_DAYS, and the
        # heartbeat's prune looks for those ended long ago. The dashboard,
        # which refreshes itself during a workshop, counts today's sessions and
        # visitors; the admin lists the newest sessions first.
        indexes = [
            models.Index(fields=["client_ip"], condition=LIVE_SESSION, name="live_sessions_by_address"),
            models.Index(fields=["ended_at"], name="sessions_by_end"),
            models.Index(fields=["started_at", "visitor"], name="sessions_by_start"),
        ]

    def __str__(self) -> str:
        return f"{visitor_tag(self.visitor)} on {self.container}"

    @property
    def visitor_tag(self) -> str:
        return visitor_tag(self.visitor)

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    def describe_end(self) -> str:
        if self.end_reason == self.EndReason.KILLED and self.ended_by:
            return f"killed by {self.ended_by}"
        return self.get_end_reason_display()


class SnapshotQuerySet(models.QuerySet["Snapshot"]):
    def kept(self, now: datetime) -> "SnapshotQuerySet":
        """Snapshots whose zip is on disk, to be had until they expire."""
        return self.exclude(file_name="").filter(expires_at__gt=now)

    def expired(self, now: datetime) -> "SnapshotQuerySet":
        return self.exclude(file_name="").filter(expires_at__lte=now)


class Snapshot(models.Model):
    """The files of a session, saved as a zip before its container was
    removed; the row is made when the copy starts, so only one is taken."""

    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="snapshot")
    started_at = models.DateTimeField(default=timezone.now)
    taken_at = models.DateTimeField(null=True, blank=True, help_text="When the copy ended; empty while it runs.")
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    file_name = models.CharField(max_length=200, blank=True, help_text="The zip under TMPNB_VAR_DIR/snapshots; empty when none is kept.")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes of the zip.")
    file_count = models.PositiveIntegerField(default=0)
    left_out = models.JSONField(default=list, blank=True, help_text="The first files that did not fit under TMPNB_SNAPSHOT_MAX_MB or MAX_FILES.")
    left_out_count = models.PositiveIntegerField(default=0, help_text="How many files did not fit, named or not.")
    error = models.CharField(max_length=500, blank=True, help_text="Why the copy stopped or failed, if it did.")
    restore_asked_at = models.DateTimeField(
        null=True, blank=True, help_text="When its visitor asked for the files in a new notebook: once per snapshot, again only if that failed."
    )
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A copy in progress renews this; past it, its worker is taken for dead.")
    restore_into = models.ForeignKey(
        "Container", null=True, blank=True, on_delete=models.SET_NULL, related_name="restores", help_text="The notebook its files were last asked into."
    )
    restore_error = models.CharField(max_length=500, blank=True, help_text="Why the files could not be put back, told inside that notebook.")
    # The owner of the notebook's folder, so that restored files belong to the notebook's user.
    owner_uid = models.PositiveIntegerField(null=True, blank=True)
    owner_gid = models.PositiveIntegerField(null=True, blank=True)

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"work of {self.session}"

    def is_kept(self, now: datetime) -> bool:
        return bool(self.file_name) and self.expires_at is not None and self.expires_at > now

    def renew_lease(self, lease: timedelta) -> bool:
        """Tell the heartbeat this copy is alive; False once it is over
        (finished, or given up for dead)."""
        until = timezone.now() + lease
        if not Snapshot.objects.filter(pk=self.pk, taken_at__isnull=True).update(lease_until=until):
            return False
        self.lease_until = until
        return True

    def close(self, **condition: Any) -> bool:
        """Mark the copy over, if it is not yet (and ``condition`` holds: the
        lease the heartbeat judged stale); False if another caller closed it."""
        now = timezone.now()
        if not Snapshot.objects.filter(pk=self.pk, taken_at__isnull=True, **condition).update(taken_at=now):
            return False
        self.taken_at = now
        return True


class Broadcast(models.Model):
    """A file or folder an organiser sent to every live notebook of a pool.
    It joins the pool's materials version of the moment: notebooks started
    later get it too, until the materials are prepared anew."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="broadcasts")
    name = models.CharField(max_length=255, help_text="The file or folder's name, as sent.")
    is_folder = models.BooleanField(default=False)
    files = models.PositiveIntegerField(default=0)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes of its files.")
    materials_version = models.PositiveIntegerField(help_text="The pool's materials version it joined.")
    sent_by = models.CharField(max_length=150, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    handed_at = models.DateTimeField(null=True, blank=True, help_text="When the live notebooks had been handed it; empty while they are.")
    reached = models.PositiveIntegerField(default=0, help_text="Live notebooks that have it.")
    failed = models.PositiveIntegerField(default=0, help_text="Live notebooks it could not be put into (the event log says why).")
    renamed = models.PositiveIntegerField(default=0, help_text="Of those reached, the ones that held that name already and got it as '(from organiser)'.")

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return f"{self.name} to {self.pool}"


class CollectionQuerySet(models.QuerySet["Collection"]):
    def kept(self, now: datetime) -> "CollectionQuerySet":
        """Collections whose zip is on disk, to be had until they expire."""
        return self.exclude(file_name="").filter(expires_at__gt=now)

    def expired(self, now: datetime) -> "CollectionQuerySet":
        return self.exclude(file_name="").filter(expires_at__lte=now)


class Collection(models.Model):
    """The work of everyone holding a notebook of a pool at one moment,
    copied into one zip (a folder per participant) while their sessions go
    on. Kept like a snapshot, then its zip is pruned."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="collections")
    workshop = models.ForeignKey(
        "Workshop",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Set: it holds every pool of this workshop, not only its pool.",
    )
    by = models.CharField(max_length=150, blank=True, help_text="The organiser (or the part of tmpnb) who asked for it.")
    started_at = models.DateTimeField(default=timezone.now)
    taken_at = models.DateTimeField(null=True, blank=True, help_text="When the zip was complete; empty while it is collected.")
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    file_name = models.CharField(max_length=200, blank=True, help_text="The zip under TMPNB_VAR_DIR/collections; empty when none is kept.")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes of the zip.")
    participants = models.PositiveIntegerField(default=0, help_text="Live sessions whose work was copied.")
    incomplete = models.PositiveIntegerField(default=0, help_text="Of them, those whose copy failed, stopped early or left files out (README.txt says why).")
    error = models.CharField(max_length=500, blank=True, help_text="Why no zip was made, if none was.")

    objects = CollectionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"work of {self.pool} at {self.started_at:%Y-%m-%d %H:%M}"

    def is_kept(self, now: datetime) -> bool:
        return bool(self.file_name) and self.expires_at is not None and self.expires_at > now


class Event(models.Model):
    """One row of the event log: something that happened to a pool, a
    container or a session, written by the services as it happens."""

    class Kind(models.TextChoices):
        SPAWN = "spawn", "spawned"
        ASSIGNMENT = "assignment", "assigned"
        TURNED_AWAY = "turned_away", "turned away"
        CULL = "cull", "culled"
        KILL = "kill", "killed"
        DRAIN = "drain", "drained"
        RESIZE = "resize", "resized"
        SCHEDULE = "schedule", "schedule applied"
        FAILURE = "failure", "failure"
        LOCKOUT = "lockout", "admin login locked"
        MATERIALS = "materials", "materials prepared or refused"
        SNAPSHOT = "snapshot", "work saved"
        DISK = "disk", "disk limit"
        RESUME = "resume", "resumed with a code"
        COLLECTION = "collection", "work collected"
        BROADCAST = "broadcast", "files broadcast"
        LOOK = "look", "looked at by a helper"
        WORKSHOP = "workshop", "workshop planned, opened, ended or closed"
        LIVE = "live", "live help"

    time = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # SET_NULL: the log outlives the rows it mentions, and never stops one being deleted.
    pool = models.ForeignKey(Pool, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    container = models.ForeignKey(Container, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    actor = models.CharField(max_length=150, blank=True, help_text="Organiser, visitor tag, or the part of tmpnb that acted.")
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-pk"]
        indexes = [models.Index(fields=["kind", "time"])]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message}"


class LiveInvitation(models.Model):
    """A helper's ask to join a participant's JupyterLab live (pool/services/live.py)."""

    class State(models.TextChoices):
        ASKED = "asked", "asked"
        ACCEPTED = "accepted", "accepted"
        DECLINED = "declined", "declined"
        LAPSED = "lapsed", "not answered"
        ENDED = "ended", "ended"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="live_invitations")
    helper = models.CharField(max_length=150, help_text="The organiser who asked, as the participant sees them.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.ASKED)
    asked_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True, help_text="The time limit, from the participant's yes.")
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True, help_text="The participant, the helper, or the time limit.")

    class Meta:
        ordering = ["-asked_at"]
        indexes = [models.Index(fields=["session", "state"], name="live_invitation_open")]

    def __str__(self) -> str:
        return f"{self.helper} → {self.session_id} ({self.state})"


class UsageSample(models.Model):
    """One pool's numbers at one moment, taken every TMPNB_SAMPLE_PERIOD."""

    time = models.DateTimeField()
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="usage_samples")
    in_use = models.PositiveIntegerField()
    ready = models.PositiveIntegerField()
    starting = models.PositiveIntegerField()
    waiting = models.PositiveIntegerField(help_text="Visitors who found nothing ready since the sample before.")

    class Meta:
        ordering = ["time"]
        indexes = [models.Index(fields=["time", "pool"])]


class HistoryTotal(models.Model):
    """What pruned history added to a /metrics counter of a pool, carried
    forward so that the counters never go down when old rows are deleted."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="history_totals")
    counter = models.CharField(max_length=40, help_text="assignments, culls, turned_away, failures or spawns.")
    label = models.CharField(max_length=40, blank=True, help_text="The cull reason, or the spawn histogram's part.")
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "counter", "label"], name="one_total_per_counter")]

    def __str__(self) -> str:
        return f"{self.pool}: {self.counter} {self.label} {self.value:g}"


class GuardCheck(models.Model):
    """The network guard (pool/netguard.py) as the worker last found it on one
    machine: installed as the worker starts, checked at every heartbeat."""

    host = models.CharField(max_length=200, unique=True, help_text="The machine whose firewall holds the rules.")
    checked_at = models.DateTimeField()
    problem = models.TextField(blank=True, help_text="Why its notebooks are not guarded; empty when they are.")
    put_back_at = models.DateTimeField(null=True, blank=True, help_text="When a heartbeat last found the rules gone and put them back.")

    def __str__(self) -> str:
        return f"{self.host}: {self.problem or 'guarded'}"


def default_time_zone() -> str:
    return settings.TIME_ZONE


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a time zone (write one such as Europe/Paris or America/New_York).") from None


class WorkshopQuerySet(models.QuerySet["Workshop"]):
    def unfinished(self) -> "WorkshopQuerySet":
        return self.filter(finished_at__isnull=True)

    def closing_at(self, pool_id: int, now: datetime) -> datetime | None:
        """When the notebooks of ``pool_id`` end for a workshop under way at
        ``now`` (its end plus the minutes it keeps them), if one is."""
        workshop = self.unfinished().filter(pools=pool_id, starts_at__lte=now).order_by("ends_at").first()
        return workshop.closes_at if workshop else None


class Workshop(models.Model):
    """A session an organiser runs on a pool from a start to an end; its rules
    are in pool/services/workshops.py."""

    class State(models.TextChoices):
        UPCOMING = "upcoming"
        WARMING = "warming"
        OPEN = "open"
        ENDING = "ending"
        ENDED = "ended"

    name = models.CharField(max_length=100)
    pools: "models.ManyToManyField[Pool, WorkshopPool]" = models.ManyToManyField(Pool, through="WorkshopPool", related_name="workshops")
    starts_at = models.DateTimeField(help_text="When the landing opens.")
    ends_at = models.DateTimeField(help_text="When the participants are warned that their notebooks end.")
    time_zone = models.CharField(max_length=64, default=default_time_zone, validators=[validate_time_zone], help_text="The organiser's: times are shown in it.")
    keep_minutes = models.PositiveIntegerField(
        default=10,
        validators=[MaxValueValidator(24 * 60)],
        help_text="Minutes the notebooks are kept after the end, under the cull warning, before the work is collected and the pool drained.",
    )
    materials_source = models.CharField(
        max_length=500, blank=True, validators=[validate_materials_source], help_text="Given to the pool as its materials; empty: the pool's own."
    )
    access_code = models.CharField(max_length=100, blank=True, help_text="Given to the pool as its access code; empty: the pool's own.")
    language = models.CharField(
        max_length=10, blank=True, choices=settings.LANGUAGES, help_text="The participants' pages' language unless they chose one; empty: their browser's."
    )
    lead_seconds = models.PositiveIntegerField(default=0, editable=False, help_text="How long before the start the pool warms, from its measured fill.")
    finished_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="When the work was collected and the notebooks ended.")
    told = models.CharField(
        max_length=10, blank=True, editable=False, choices=State.choices, help_text="The last state the event log was told it reached (open or ending)."
    )
    collection = models.ForeignKey("Collection", null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WorkshopQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def warms_at(self) -> datetime:
        return self.starts_at - timedelta(seconds=self.lead_seconds)

    @property
    def closes_at(self) -> datetime:
        return self.ends_at + timedelta(minutes=self.keep_minutes)

    def state(self, now: datetime) -> str:
        if now < self.warms_at:
            return self.State.UPCOMING
        if now < self.starts_at:
            return self.State.WARMING
        if now < self.ends_at:
            return self.State.OPEN
        if now < self.closes_at or self.finished_at is None:
            return self.State.ENDING
        return self.State.ENDED

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(zoneinfo.ZoneInfo(self.time_zone))

    def seats_by_pool(self) -> list["WorkshopPool"]:
        return list(self.seats.select_related("pool").order_by("pool__name"))

    @property
    def headcount(self) -> int:
        """Participants expected, over all its pools."""
        return sum(seat.headcount for seat in self.seats.all())


class WorkshopPool(models.Model):
    """One pool of a workshop, with the participants expected on it: as many
    of its notebooks are ready at the start (a Python pool and an R pool,
    say)."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="seats")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="workshop_seats")
    headcount = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="Participants expected on this pool.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workshop", "pool"], name="one_headcount_per_pool_of_a_workshop")]

    def __str__(self) -> str:
        return f"{self.pool} for {self.headcount}"
