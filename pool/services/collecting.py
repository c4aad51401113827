"""Everyone's work in a pool, collected at any time without ending anything.

The root folder of every notebook held in a live session of the pool (of
every pool of a workshop, for one asked for a workshop and for the one at
its close) is copied out as
a snapshot is (snapshots.copy_folder_into_zip: its caps and timeout per
notebook), TMPNB_COPIES_AT_ONCE notebooks at a time, into one zip
under TMPNB_VAR_DIR/collections that holds a folder per participant and a
README.txt naming what is missing and why. A notebook that fails is listed
there and never fails the whole collection. Collections are kept for
TMPNB_SNAPSHOT_HOURS (one hour when it is 0), then the heartbeat deletes them.
"""

import logging
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from pool.models import Collection, Container, Event, Pool, Session, Workshop
from pool.services import worker
from pool.services.events import record_event
from pool.services.snapshots import CopiedWork, copy_folder_into_zip, notebook_root

log = logging.getLogger(__name__)


class CollectionError(Exception):
    """A collection that cannot be asked for, with a message for people."""


PRUNE_BATCH = 500
FOLDER_NAME_MAX = 40  # characters of a participant's name in their folder's
README = "README.txt"


@dataclass(frozen=True)
class Participant:
    """One live session, as the copy threads need it (they read no row)."""

    folder: str  # their folder in the zip
    backend_id: str
    root: str  # the folder their notebook server shows
    notebook: str  # the container's name, for the log


@dataclass(frozen=True)
class CopiedParticipant:
    participant: Participant
    part: Path  # their files, as an uncompressed zip
    work: CopiedWork


def collections_dir() -> Path:
    folder = Path(settings.VAR_DIR) / "collections"
    folder.mkdir(exist_ok=True)
    return folder


def collection_path(collection: Collection) -> Path:
    return collections_dir() / collection.file_name


def kept_hours() -> int:
    # Asked for by an organiser: kept like snapshots, even where none are taken.
    return settings.TMPNB_SNAPSHOT_HOURS or 1


def ask_for_collection(*, pool: Pool | None = None, workshop: Workshop | None = None, by: str) -> Collection:
    """A collection of the work of everyone in ``pool``, or in every pool of
    ``workshop`` into one zip, now, made by the worker once this transaction
    commits (see collect_work). Raises CollectionError."""
    collection = new_collection(pool=pool, workshop=workshop, by=by)
    worker.send_on_commit(worker.COLLECT_WORK, collection.pk)
    return collection


def collect_now(*, pool: Pool | None = None, workshop: Workshop | None = None, by: str) -> Collection:
    """A collection made here and now (the command line's), kept as the worker's are. Raises CollectionError."""
    return collect_work(new_collection(pool=pool, workshop=workshop, by=by).pk)


def new_collection(*, pool: Pool | None = None, workshop: Workshop | None = None, by: str) -> Collection:
    """The row of a collection of ``pool``, or of ``workshop`` (its first pool by name stands for it where one pool is shown)."""
    if (pool is None) == (workshop is None):
        raise ValueError("collect either a pool or a workshop")
    if workshop is not None:
        pool = workshop.pools.order_by("name").first()
    if pool is None:
        raise CollectionError(f"workshop {workshop} has no pool to collect")
    return Collection.objects.create(pool=pool, workshop=workshop, by=by)


def participant_folder(session: Session) -> str:
    """Their folder in the zip: their label (the visitor tag the admin and the
    event log show, which keeps folders apart), then the name they typed, if
    any, in characters every file system takes."""
    name = "-".join(re.findall(r"[^\W_]+", session.display_name))[:FOLDER_NAME_MAX]
    return f"{session.visitor_tag}-{name}" if name else session.visitor_tag


def collect_work(collection_id: int) -> Collection:
    """Copy the work of every live session of the collection's pool into its
    zip. Nothing ends: the copies only read the notebooks' folders."""
    collection = Collection.objects.select_related("pool", "workshop").get(pk=collection_id)
    pool = collection.pool
    # A workshop's collection holds every pool of it (a Python pool and an R pool, say), each copied from its own root.
    pools_of_it = list(collection.workshop.pools.order_by("name")) if collection.workshop else [pool]
    sessions = Session.objects.active().filter(container__pool__in=pools_of_it, container__state=Container.State.ASSIGNED)
    source = ", ".join(f"pool {each.name}" for each in pools_of_it)
    participants = [
        Participant(
            folder=participant_folder(session),
            backend_id=session.container.backend_id,
            root=notebook_root(session.container.pool),
            notebook=session.container.name,
        )
        for session in sessions.select_related("container__pool").order_by("started_at", "pk")
    ]
    folder = collections_dir()
    name = f"{pool.name}-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.zip"
    partial = folder / f".{name}.part"
    copied: list[CopiedParticipant] = []
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".parts-") as scratch:
            with ThreadPoolExecutor(max_workers=settings.TMPNB_COPIES_AT_ONCE, thread_name_prefix="collect") as copies:
                copied = list(copies.map(lambda participant: _copy_participant(participant, Path(scratch)), participants))
            _write_collection(partial, copied, source=source, at=collection.started_at)
        partial.rename(folder / name)
        collection.file_name = name
    except OSError as error:  # this machine's disk: full, or not writable
        log.warning("the work of %s could not be collected: %s", source, error)
        collection.error = str(error)[:500] or type(error).__name__
    finally:
        partial.unlink(missing_ok=True)
    return _finish(collection, copied, source=source)


def _copy_participant(participant: Participant, scratch: Path) -> CopiedParticipant:
    """One notebook's folder into a zip of its own (stored: the collection's
    zip compresses once), so that notebooks copy side by side."""
    part = scratch / f"{secrets.token_hex(8)}.zip"
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as archive:
        work = copy_folder_into_zip(participant.backend_id, participant.root, archive, notebook=participant.notebook)
    return CopiedParticipant(participant, part, work)


def _write_collection(path: Path, copied: list[CopiedParticipant], *, source: str, at: datetime) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as collection:
        for each in copied:
            folder = zipfile.ZipInfo(f"{each.participant.folder}/", _zip_time(at))
            folder.external_attr = (stat.S_IFDIR | 0o755) << 16
            collection.writestr(folder, b"")
            with zipfile.ZipFile(each.part) as part:
                for info in part.infolist():
                    _copy_entry(part, info, collection, prefix=f"{each.participant.folder}/")
            each.part.unlink()  # as it goes: the disk holds the parts and the zip at once only briefly
        collection.writestr(README, readme(copied, source=source, at=at))


def _copy_entry(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: zipfile.ZipFile, *, prefix: str) -> None:
    entry = zipfile.ZipInfo(prefix + info.filename, info.date_time)
    entry.external_attr = info.external_attr
    if info.is_dir():
        target.writestr(entry, b"")
        return
    entry.compress_type = target.compression
    with source.open(info) as data, target.open(entry, "w", force_zip64=info.file_size > 2**31) as out:
        shutil.copyfileobj(data, out, 1024 * 1024)


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    return timezone.localtime(at).timetuple()[:6]


def readme(copied: list[CopiedParticipant], *, source: str, at: datetime) -> str:
    """What the zip holds, and for each participant whose copy is not whole, what is missing and why."""
    lines = [
        f"The work of everyone holding a notebook of {source} at {timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}:",
        f"one folder per participant, named by their label and the name they typed, if any. {len(copied)} participant(s).",
        "",
    ]
    incomplete = [each for each in copied if _incomplete(each.work)]
    if not copied:
        lines.append("Nobody held a notebook of this pool.")
    elif not incomplete:
        lines.append("Every participant's folder was copied whole.")
    else:
        lines.append(f"Not copied whole: {len(incomplete)} participant(s).")
    for each in incomplete:
        lines += ["", f"{each.participant.folder}/ ({each.work.file_count} file(s) copied):"]
        if each.work.error:
            lines.append(f"  the copy stopped: {each.work.error}")
        if each.work.left_out_count:
            lines.append(
                f"  {each.work.left_out_count} file(s) left out, over TMPNB_SNAPSHOT_MAX_MB ({settings.TMPNB_SNAPSHOT_MAX_MB} MB)"
                f" or TMPNB_SNAPSHOT_MAX_FILES ({settings.TMPNB_SNAPSHOT_MAX_FILES}):"
            )
            lines += [f"    {item['path']} ({item['size']} bytes{', cut short' if item.get('cut_short') else ''})" for item in each.work.left_out]
            if each.work.left_out_count > len(each.work.left_out):
                lines.append(f"    and {each.work.left_out_count - len(each.work.left_out)} more")
    return "\n".join(lines) + "\n"


def _incomplete(work: CopiedWork) -> bool:
    return bool(work.error or work.left_out_count)


def _finish(collection: Collection, copied: list[CopiedParticipant], *, source: str) -> Collection:
    collection.taken_at = timezone.now()
    collection.expires_at = collection.taken_at + timedelta(hours=kept_hours())
    collection.size = collection_path(collection).stat().st_size if collection.file_name else 0
    collection.participants = len(copied)
    collection.incomplete = sum(_incomplete(each.work) for each in copied)
    collection.save()
    pool = collection.pool
    if collection.file_name:
        message = f"work of {collection.participants} participant(s) of {source} collected for {collection.by}: {collection.size} bytes"
        if collection.incomplete:
            message += f"; {collection.incomplete} not copied whole (the zip's {README} says why)"
    else:
        message = f"the work of {source} could not be collected for {collection.by}: {collection.error}"
    record_event(
        Event.Kind.COLLECTION,
        message,
        pool=pool,
        actor=collection.by,
        participants=collection.participants,
        incomplete=collection.incomplete,
        size=collection.size,
    )
    return collection


def prune_collections(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete the zips of collections older than their hours (one batch), and
    the rows after TMPNB_HISTORY_DAYS. A collection whose worker stopped
    before it finished is closed once it would have expired, with what it
    left behind. Returns how many zips were deleted."""
    now = now or timezone.now()
    expired = list(Collection.objects.expired(now).order_by("pk")[:batch])
    for collection in expired:
        collection_path(collection).unlink(missing_ok=True)
    Collection.objects.filter(pk__in=[c.pk for c in expired]).update(file_name="")
    overdue = now - timedelta(hours=kept_hours())
    stopped = Collection.objects.filter(taken_at__isnull=True, started_at__lt=overdue)
    if stopped.update(taken_at=now, error="its worker stopped before it finished"):
        _remove_leftovers(overdue)
    Collection.objects.filter(started_at__lt=now - timedelta(days=settings.TMPNB_HISTORY_DAYS)).delete()
    return len(expired)


def _remove_leftovers(older_than: datetime) -> None:
    for entry in collections_dir().glob(".*"):  # the partial zips and the parts' folders
        if entry.stat().st_mtime < older_than.timestamp():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
