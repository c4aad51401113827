"""A file or folder an organiser sends to every live notebook of a pool, or
of every pool of a workshop (each pool by these rules, as if sent to it).

What is sent is checked and kept as materials are (pool/materials_files.py:
no links, no special files, within TMPNB_MATERIALS_MAX_MB), beside the
pool's current materials version, so that notebooks started later get it
too; preparing new materials replaces the ready notebooks as always, and the
new version starts without the broadcasts of the old one. Nothing is
restarted or replaced by a broadcast.

The worker puts it into every ready and in-use notebook's root folder,
TMPNB_COPIES_AT_ONCE at a time, each Docker call within TMPNB_DOCKER_TIMEOUT,
owned by the notebook's user. It never overwrites: a name that exists becomes
``name (from organiser).ext``, then ``name (from organiser 2).ext`` and so
on; a folder is renamed as a whole, never merged into one of the same name.

Each notebook records the last broadcast it was handed (Container.
broadcasts_through), claimed by a conditional update before the copy, so
that a broadcast and a spawn finishing at the same moment hand it once.
"""

import logging
import posixpath
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TypeVar

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from pool import materials_files
from pool.backends import get_backend
from pool.backends.base import BackendError
from pool.materials_files import MaterialsError
from pool.models import Broadcast, Container, Event, Pool, Session
from pool.options import check_host_path
from pool.services import worker
from pool.services.events import record_event
from pool.services.materials import broadcast_folder, materials_root
from pool.services.snapshots import notebook_root

log = logging.getLogger(__name__)

T = TypeVar("T")

FROM_ORGANISER = "from organiser"
MOST_CLASHES = 100  # names tried before one is given up on
# Extensions of two parts, kept whole when a name is changed.
DOUBLE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz")
ERRORS_NAMED = 5
# How long a participant's page says that a broadcast arrived: its banner asks
# every 30 s, so a page open at the time (or opened soon after) says it.
ARRIVAL_NOTICE = timedelta(minutes=10)


@dataclass(frozen=True)
class Item:
    """A broadcast as a copy thread needs it (they read no row)."""

    broadcast_id: int
    name: str
    is_folder: bool
    tree: Path  # the folder whose one entry is what was sent


@dataclass(frozen=True)
class Handed:
    broadcast_id: int
    name: str = ""  # the name it got in the notebook; empty if it failed
    error: str = ""


def free_name(name: str, *, is_folder: bool, taken: Callable[[str], bool]) -> str:
    """``name``, or the first of ``stem (from organiser)suffix``, ``stem
    (from organiser 2)suffix``, ... that is not ``taken``. A folder keeps no
    suffix apart (``data.v2 (from organiser)``); a file keeps its extension,
    ``.tar.gz`` as one (``notes (from organiser).txt``)."""
    if not taken(name):
        return name
    stem, suffix = (name, "") if is_folder else _split_suffix(name)
    for number in range(1, MOST_CLASHES + 1):
        label = FROM_ORGANISER if number == 1 else f"{FROM_ORGANISER} {number}"
        candidate = f"{stem} ({label}){suffix}"
        if not taken(candidate):
            return candidate
    raise MaterialsError(f"{name} and {MOST_CLASHES} names made from it are all taken")


def _split_suffix(name: str) -> tuple[str, str]:
    double = next((suffix for suffix in DOUBLE_SUFFIXES if name.lower().endswith(suffix) and len(name) > len(suffix)), "")
    if double:
        return name[: -len(double)], name[-len(double) :]
    suffix = PurePosixPath(name).suffix  # "" for ".bashrc"
    return name[: len(name) - len(suffix)], suffix


def broadcast_path(*, pool: Pool, path: str, by: str, unpack: bool = False) -> Broadcast:
    """Send the host's file or folder ``path`` (one notebooks may see, as
    materials: pool/options.py's check_host_path). Raises MaterialsError."""
    return broadcast_path_to([pool], path=path, by=by, unpack=unpack)[0]


def broadcast_path_to(pools: Sequence[Pool], *, path: str, by: str, unpack: bool = False) -> list[Broadcast]:
    """broadcast_path to each of ``pools`` (a workshop's), by each one's rules. Raises MaterialsError."""
    try:
        real = check_host_path(path, settings.TMPNB_PROTECTED_PATHS)
    except ValueError as error:
        raise MaterialsError(str(error)) from None
    if not Path(real).exists():
        raise MaterialsError(f"{path} does not exist on this host")
    return _send_to(pools, source=Path(real), by=by, unpack=unpack)


def broadcast_upload(*, pool: Pool, upload: UploadedFile, by: str, unpack: bool) -> Broadcast:
    """Send a file uploaded in the admin (a zip of a folder with ``unpack``). Raises MaterialsError."""
    return broadcast_upload_to([pool], upload=upload, by=by, unpack=unpack)[0]


def broadcast_upload_to(pools: Sequence[Pool], *, upload: UploadedFile, by: str, unpack: bool) -> list[Broadcast]:
    """broadcast_upload to each of ``pools`` (a workshop's), by each one's rules. Raises MaterialsError."""
    scratch_root = materials_root()
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="upload-") as scratch:
        # An upload's name is a file's name already (Django keeps no folder of it).
        stored = Path(scratch) / (upload.name or "upload")
        with open(stored, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        return _send_to(pools, source=stored, by=by, unpack=unpack)


def _send_to(pools: Sequence[Pool], *, source: Path, by: str, unpack: bool) -> list[Broadcast]:
    """One broadcast per pool, each prepared beside that pool's materials. The
    first pool's checks (caps, links, archive) refuse bad input before any
    pool has it; the others' are the same on the same source."""
    if not pools:
        raise MaterialsError("there is no pool to send it to")
    return [_send(pool=pool, source=source, by=by, unpack=unpack) for pool in pools]


def _send(*, pool: Pool, source: Path, by: str, unpack: bool) -> Broadcast:
    """Prepare what was sent beside the pool's materials, record it, and
    have the worker hand it to the live notebooks once that is committed."""
    incoming = materials_root() / f"pool-{pool.pk}"
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=incoming, prefix="incoming-") as scratch:
        tree = Path(scratch) / "tree"
        name, prepared = materials_files.prepare_broadcast(source, tree, unpack=unpack, max_bytes=settings.TMPNB_MATERIALS_MAX_MB * 1_000_000)
        with transaction.atomic():
            # Locked: materials being published meanwhile wait, so the broadcast joins the version it names.
            version = Pool.objects.select_for_update().values_list("materials_version", flat=True).get(pk=pool.pk)
            broadcast = Broadcast.objects.create(
                pool=pool,
                name=name,
                is_folder=(tree / name).is_dir(),
                files=prepared.files,
                size=prepared.size,
                materials_version=version,
                sent_by=by,
            )
            tree.rename(broadcast_folder(pool.pk, version, broadcast.pk))
            worker.send_on_commit(worker.HAND_OUT_BROADCAST, broadcast.pk)
    return broadcast


def wait_until_handed(sent: Sequence[Broadcast], *, timeout: float, poll: float = 0.5) -> list[Broadcast]:
    """``sent`` as they are once the worker has handed them all out, or as
    they are after ``timeout`` seconds (those not handed yet have no
    handed_at)."""
    deadline = time.monotonic() + timeout
    while True:
        now = list(Broadcast.objects.select_related("pool").filter(pk__in=[b.pk for b in sent]).order_by("pool__name", "pk"))
        if all(b.handed_at is not None for b in now) or time.monotonic() > deadline:
            return now
        time.sleep(poll)


def how_far(broadcast: Broadcast) -> str:
    """How far ``broadcast`` reached, for the organiser who sent it: one sentence."""
    pool = broadcast.pool.name
    if broadcast.handed_at is None:
        return f"Pool {pool}: {broadcast.name} sent to the worker, which has not handed it out yet; the event log will say how it went."
    renamed = f"; {broadcast.renamed} held that name and got it as '({FROM_ORGANISER})'" if broadcast.renamed else ""
    return f"Pool {pool}: {broadcast.name} reached {broadcast.reached} notebook(s), {broadcast.failed} failed{renamed}."


def hand_out(broadcast_id: int) -> Broadcast:
    """The worker's half of a broadcast: put it into every ready and in-use
    notebook of its pool that does not have it yet (with any earlier
    broadcast one missed), then record who sent what to how many."""
    broadcast = Broadcast.objects.select_related("pool").get(pk=broadcast_id)
    pool = broadcast.pool
    live = Container.objects.filter(pool=pool, state__in=(Container.State.READY, Container.State.ASSIGNED)).exclude(backend_id="")
    deliveries, had_it = [], 0
    for container in live:
        due = _claim(container)
        if any(item.broadcast_id == broadcast.pk for item in due):
            deliveries.append((container, due))
        elif container.broadcasts_through >= broadcast.pk and (container.materials_version or 0) <= broadcast.materials_version:
            had_it += 1  # handed by a spawn that finished meanwhile
            if due:
                deliveries.append((container, due))
    root = notebook_root(pool)
    with _Packs() as packs, ThreadPoolExecutor(max_workers=settings.TMPNB_COPIES_AT_ONCE, thread_name_prefix="broadcast") as copies:
        results = list(copies.map(lambda delivery: _put_in(delivery[0].backend_id, root, delivery[1], packs), deliveries))
    outcomes = [next((h for h in handed if h.broadcast_id == broadcast.pk), None) for handed in results]
    for (container, _), handed in zip(deliveries, results):
        for failure in (h for h in handed if h.error):
            log.warning("broadcast %s could not be put into %s: %s", failure.broadcast_id, container.name, failure.error)
    reached = [o for o in outcomes if o is not None and not o.error]
    errors = [o.error for o in outcomes if o is not None and o.error]
    broadcast.reached = len(reached) + had_it
    broadcast.failed = len(errors)
    broadcast.renamed = sum(o.name != broadcast.name for o in reached)
    broadcast.handed_at = timezone.now()
    broadcast.save(update_fields=["reached", "failed", "renamed", "handed_at"])
    _record(broadcast, errors)
    return broadcast


def latest_arrival(session: Session, now: datetime | None = None) -> Broadcast | None:
    """The newest broadcast put into ``session``'s notebook while they held
    it, handed out within ARRIVAL_NOTICE: their page says that it arrived."""
    now = now or timezone.now()
    container = session.container
    return (
        Broadcast.objects.filter(pool_id=container.pool_id, pk__lte=container.broadcasts_through, sent_at__gte=session.started_at)
        .filter(handed_at__gte=now - ARRIVAL_NOTICE)
        .order_by("-pk")
        .first()
    )


def _record(broadcast: Broadcast, errors: list[str]) -> None:
    what = "folder" if broadcast.is_folder else "file"
    total = broadcast.reached + broadcast.failed
    message = f"{broadcast.sent_by} sent the {what} {broadcast.name} to {total} notebook(s) of pool {broadcast.pool.name}: {broadcast.reached} reached"
    message += f", {broadcast.failed} failed ({errors[0]})" if errors else ", none failed"
    if broadcast.renamed:
        message += f"; {broadcast.renamed} held that name and got it as '({FROM_ORGANISER})'"
    record_event(
        Event.Kind.BROADCAST,
        message,
        pool=broadcast.pool,
        actor=broadcast.sent_by,
        name=broadcast.name,
        files=broadcast.files,
        size=broadcast.size,
        reached=broadcast.reached,
        failed=broadcast.failed,
        renamed=broadcast.renamed,
        errors=errors[:ERRORS_NAMED],
    )


def _claim(container: Container) -> list[Item]:
    """The broadcasts due to ``container`` (sent since the last it was handed,
    of its materials version or later), taken for this caller by a
    conditional update: of two callers, one gets each."""
    while True:
        through = Container.objects.filter(pk=container.pk).values_list("broadcasts_through", flat=True).get()
        latest = Broadcast.objects.filter(pool_id=container.pool_id).aggregate(latest=Max("pk"))["latest"] or 0
        if latest <= through:
            container.broadcasts_through = through
            return []
        if Container.objects.filter(pk=container.pk, broadcasts_through=through).update(broadcasts_through=latest):
            container.broadcasts_through = latest
            due = Broadcast.objects.filter(
                pool_id=container.pool_id, pk__gt=through, pk__lte=latest, materials_version__gte=container.materials_version or 0
            ).order_by("pk")
            return [Item(b.pk, b.name, b.is_folder, broadcast_folder(b.pool_id, b.materials_version, b.pk)) for b in due]


def put_broadcasts_in(container: Container, *, running: Callable[[Callable[[], list[Handed]]], list[Handed]]) -> None:
    """For a spawn, once the materials are in: the broadcasts due to the new
    notebook, copied by ``running`` (which keeps the spawn's lease). Raises
    MaterialsError if one could not be put in: the spawn fails, as it does
    without its materials."""
    due = _claim(container)
    if not due:
        return
    root = notebook_root(container.pool)
    with _Packs() as packs:
        handed = running(lambda: _put_in(container.backend_id, root, due, packs))
    failed = next((h for h in handed if h.error), None)
    if failed:
        raise MaterialsError(f"a broadcast could not be put in: {failed.error}")


def catch_up(container: Container) -> None:
    """For a notebook that just became ready: the broadcasts sent while it
    started, which the worker's hand-out did not count it for. A failure is
    in the event log; the notebook stays."""
    due = _claim(container)
    if not due:
        return
    with _Packs() as packs:
        handed = _put_in(container.backend_id, notebook_root(container.pool), due, packs)
    for failure in (h for h in handed if h.error):
        record_event(Event.Kind.BROADCAST, f"broadcast {failure.broadcast_id} could not be put into {container.name}: {failure.error}", container=container)


def _put_in(backend_id: str, root: str, items: list[Item], packs: "_Packs") -> list[Handed]:
    """Copy ``items`` into one notebook's root folder under free names, owned
    by its user. Touches no rows: it runs in the copy threads."""
    backend = get_backend()
    try:
        user = backend.notebook_user(backend_id)
    except BackendError as error:
        return [Handed(item.broadcast_id, error=str(error)) for item in items]
    folder = posixpath.normpath(posixpath.join(user.folder, root))
    handed = []
    for item in items:
        try:
            name = free_name(item.name, is_folder=item.is_folder, taken=lambda n: backend.path_exists(backend_id, f"{folder}/{n}"))
            # The name was free a moment ago: a file the participant saves under it just now would be replaced.
            backend.copy_in(backend_id, tar_path=str(packs.tar(item, user.uid, user.gid, name)), destination=folder)
            handed.append(Handed(item.broadcast_id, name=name))
        except (BackendError, MaterialsError, OSError) as error:
            handed.append(Handed(item.broadcast_id, error=str(error)[:300] or type(error).__name__))
    return handed


class _Packs:
    """The tars of one hand-out, one per broadcast, owner and name, made once
    and shared by the copy threads; deleted with the hand-out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.made: dict[tuple[int, int, int, str], Path] = {}

    def __enter__(self) -> "_Packs":
        root = materials_root()
        root.mkdir(parents=True, exist_ok=True)
        self.scratch = tempfile.TemporaryDirectory(dir=root, prefix="packs-")
        return self

    def __exit__(self, *exc: object) -> None:
        self.scratch.cleanup()

    def tar(self, item: Item, uid: int, gid: int, name: str) -> Path:
        key = (item.broadcast_id, uid, gid, name)
        with self.lock:
            if key not in self.made:
                tar_path = Path(self.scratch.name) / f"{secrets.token_hex(8)}.tar"
                materials_files.pack_for_user(item.tree, tar_path, uid, gid, arcnames={item.name: name})
                self.made[key] = tar_path
            return self.made[key]
