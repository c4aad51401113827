"""A participant's work, saved when their session ends and given back.

Before a held container is removed (culls, kills, stop_pools), its notebook
server's root folder is streamed out of the backend as a tar and written as a
zip (which every laptop opens) under TMPNB_VAR_DIR/snapshots, within
TMPNB_SNAPSHOT_MAX_MB (files that do not fit are listed) and
TMPNB_SNAPSHOT_TIMEOUT and TMPNB_SNAPSHOT_MAX_FILES; the Snapshot row references it. The heartbeat deletes
the zips after TMPNB_SNAPSHOT_HOURS.
"""

import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from pool.backends import get_backend
from pool.backends.base import BackendError
from pool.models import Container, Event, Pool, Session, Snapshot
from pool.services import worker
from pool.services.events import record_event
from pool.services.leases import renewing_while

log = logging.getLogger(__name__)

# Ends that leave a container to copy from. One that stopped on its own
# (CONTAINER_GONE) keeps its files until it is removed, as Docker copies out
# of a stopped container too; one lost with its node has nothing left to copy.
SAVED_ON = (
    Session.EndReason.KILLED,
    Session.EndReason.CULLED_IDLE,
    Session.EndReason.CULLED_AGE,
    Session.EndReason.SERVICE_STOPPED,
    Session.EndReason.DISK_FULL,
    Session.EndReason.CONTAINER_GONE,
)
# Seconds a copy may go without renewing its lease before the heartbeat takes
# its worker for dead and removes the container without it.
COPY_LEASE = timedelta(seconds=10)
PRUNE_BATCH = 500
LEFTOVER_GRACE = 300  # seconds, besides a copy's own bounds, before its partial file counts as left behind
# Names of the files left out that are kept (and shown on the ended page);
# the rest are counted (left_out_count).
LEFT_OUT_LISTED = 100
ENGINE_AWAY_PAUSE = 1.0  # seconds between two tries of a copy while the engine does not answer (a restart)
ZIP_LEVEL = 1
ZIP_EPOCH = 315532800  # 1980-01-01: zip cannot date a file earlier
# The notebook server's root folder, where its command names it.
ROOT_OPTION = re.compile(r"--(?:ServerApp\.root_dir|NotebookApp\.notebook_dir|notebook-dir)[= ]['\"]?([^'\"\s]+)")


class SnapshotTimeout(Exception):
    pass


class RestoreError(Exception):
    """The saved files could not be put back, with a message for people."""


def snapshot_dir() -> Path:
    folder = Path(settings.VAR_DIR) / "snapshots"
    folder.mkdir(exist_ok=True)
    return folder


def notebook_root(pool: Pool) -> str:
    """The folder a notebook server of ``pool`` shows: the one its command
    names, else its working directory (Jupyter's default)."""
    found = ROOT_OPTION.search(pool.command)
    return found.group(1) if found else "."


def save_work(container: Container) -> Snapshot | None:
    """Before ``container`` is removed: if its session ended in a way that
    leaves the container to copy from, save its files. Never raises: a copy
    that fails or runs out of time is recorded, and the removal goes ahead.
    Returns the Snapshot, or None if none was due (or one was taken already)."""
    snapshot = _claim(container)
    if snapshot is None:
        return None
    root = notebook_root(container.pool)  # here: the copy's thread reads no row
    try:
        _keeping_the_lease(snapshot, lambda: _copy_out(snapshot, container, root))
    except Exception as error:  # whatever breaks a copy, the end goes ahead (and the log says why)
        log.warning("the work of %s was not saved: %s", container.name, error, exc_info=not isinstance(error, BackendError))
        snapshot.error = str(error)[:500] or type(error).__name__
    if not snapshot.close():
        # Given up for dead by the heartbeat meanwhile (its lease ran out),
        # which recorded why: what this copy wrote is not referenced.
        log.warning("the copy of the work of %s ended after it was given up", container.name)
        if snapshot.file_name:
            snapshot_path(snapshot).unlink(missing_ok=True)
        return snapshot
    _finish(snapshot, container)
    return snapshot


def _keeping_the_lease(snapshot: Snapshot, call: Callable[[], None]) -> None:
    """Run ``call`` (the copy) in a thread of its own while this one renews
    the copy's lease, so the heartbeat never removes a container mid-copy.
    Only this thread touches the database. The lease is renewed until the
    copy's own deadline (TMPNB_SNAPSHOT_TIMEOUT, and DOCKER_TIMEOUT for its
    first answer) is past, never longer: a copy stuck beyond it is left to
    the heartbeat, whose removal of the container ends it."""
    renew_until = time.monotonic() + settings.TMPNB_SNAPSHOT_TIMEOUT + settings.DOCKER_TIMEOUT

    def renew() -> None:
        if time.monotonic() < renew_until:
            snapshot.renew_lease(COPY_LEASE)

    renewing_while(call, renew=renew, every=COPY_LEASE.total_seconds() / 3, name="copy")


def wait_for_copy(container: Container, *, poll: float = 0.5) -> None:
    """Wait while another teardown's copy of the work of ``container`` holds
    its lease (a worker copying when stop_pools or a second teardown comes),
    so that this one does not remove the container under it. Bounded by the
    copy's own deadline; a copy whose worker died stops renewing and is not
    waited for."""
    deadline = time.monotonic() + settings.TMPNB_SNAPSHOT_TIMEOUT + settings.DOCKER_TIMEOUT + COPY_LEASE.total_seconds()
    copying = Snapshot.objects.filter(session__container_id=container.pk, taken_at__isnull=True)
    while copying.filter(lease_until__gt=timezone.now()).exists() and time.monotonic() < deadline:
        time.sleep(poll)


def give_up_work(container: Container, why: str) -> bool:
    """Record that the work of ``container`` will not be saved (``why``), if
    it was due and no copy is running: none started, or the one that started
    stopped renewing its lease (its worker died). For the heartbeat, which
    removes a container whose end was interrupted, without copying itself.
    Returns False while a copy holds the container (its lease has not run
    out): it must not be removed yet."""
    snapshot = _claim(container)
    if snapshot is None:
        snapshot = Snapshot.objects.filter(session__container_id=container.pk).first()
        if snapshot is None or snapshot.taken_at is not None:
            return True  # none due, or done
        if snapshot.lease_until is not None and snapshot.lease_until >= timezone.now():
            return False
        # Only if the lease is still the one judged stale: a copy that renewed it meanwhile is alive.
        if not snapshot.close(lease_until=snapshot.lease_until):
            return False
    else:
        snapshot.close()
    snapshot.error = why
    _finish(snapshot, container)
    return True


def _claim(container: Container) -> Snapshot | None:
    """A new Snapshot row for the session ``container`` ended, if one is due
    and none was started, its lease taken: of two teardowns of one
    container, one copies."""
    session = Session.objects.filter(container_id=container.pk, end_reason__in=SAVED_ON).first()
    if session is None or not settings.TMPNB_SNAPSHOT_HOURS:
        return None
    try:
        with transaction.atomic():
            return Snapshot.objects.create(session=session, lease_until=timezone.now() + COPY_LEASE)
    except IntegrityError:
        return None  # a retried teardown: the first one took it


def copies_due(container_ids: list[int]) -> dict[int, Snapshot | None]:
    """For the heartbeat: of the ended ``container_ids``, those whose work is
    due to be saved, each with its Snapshot (None while its copy has not
    started); the others are absent. One query."""
    if not settings.TMPNB_SNAPSHOT_HOURS:
        return {}
    sessions = Session.objects.filter(container_id__in=container_ids, end_reason__in=SAVED_ON).select_related("snapshot")
    return {session.container_id: getattr(session, "snapshot", None) for session in sessions}


def copies_under_way(now: datetime) -> bool:
    """Whether a worker is copying (or just finished copying) some work."""
    return Snapshot.objects.filter(taken_at__isnull=True, lease_until__gt=now).exists()


@dataclass
class CopiedWork:
    """What one copy of a notebook's folder into a zip put in and left out."""

    file_count: int = 0
    left_out: list[dict[str, Any]] = field(default_factory=list)
    left_out_count: int = 0  # named in left_out or not
    owner_uid: int | None = None  # of the folder, so that files put back belong to its user
    owner_gid: int | None = None
    error: str = ""  # why the copy stopped early, if it did
    engine_away: bool = False  # stopped before a byte because the engine did not answer: worth another try


def _copy_out(snapshot: Snapshot, container: Container, root: str) -> None:
    folder = snapshot_dir()
    name = f"{snapshot.session_id}-{secrets.token_hex(8)}.zip"
    partial = folder / f".{name}.part"
    deadline = time.monotonic() + settings.TMPNB_SNAPSHOT_TIMEOUT
    try:
        # A restart of the engine (live-restore keeps the container) is
        # waited out, within the copy's own time: the files are still there.
        while True:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                work = copy_folder_into_zip(container.backend_id, root, archive, notebook=container.name, deadline=deadline)
            if not work.engine_away or time.monotonic() + ENGINE_AWAY_PAUSE >= deadline:
                break
            time.sleep(ENGINE_AWAY_PAUSE)
        snapshot.file_count, snapshot.left_out, snapshot.left_out_count = work.file_count, work.left_out, work.left_out_count
        snapshot.owner_uid, snapshot.owner_gid = work.owner_uid, work.owner_gid
        snapshot.error = work.error
        if snapshot.file_count:
            partial.rename(folder / name)
            snapshot.file_name = name
    finally:
        partial.unlink(missing_ok=True)


def copy_folder_into_zip(backend_id: str, root: str, archive: zipfile.ZipFile, *, notebook: str, deadline: float | None = None) -> CopiedWork:
    """Stream the folder ``root`` of a notebook into ``archive``, member by
    member: neither the tar nor a file is ever held in memory whole. Within
    TMPNB_SNAPSHOT_MAX_MB and TMPNB_SNAPSHOT_MAX_FILES (what does not fit is
    left out and listed) and TMPNB_SNAPSHOT_TIMEOUT. Whatever stops the
    reading, what was read is kept and the result says why it stopped.
    Entries are compressed as ``archive`` says; ``notebook`` names it in the
    log; ``deadline`` (time.monotonic()) replaces TMPNB_SNAPSHOT_TIMEOUT from now."""
    work = CopiedWork()
    if deadline is None:
        deadline = time.monotonic() + settings.TMPNB_SNAPSHOT_TIMEOUT
    room = settings.TMPNB_SNAPSHOT_MAX_MB * 1024 * 1024
    chunks = get_backend().archive_out(backend_id, root, timeout=max(deadline - time.monotonic(), 0.0))
    try:
        # Stream mode ("r|") only reads its file.
        with tarfile.open(fileobj=cast(IO[bytes], _Stream(chunks, deadline)), mode="r|") as tar:
            for member in tar:
                room -= _add(work, archive, tar, member, room)
    except Exception as error:  # whatever stops the reading, what was read is kept: part of the work beats none
        log.warning("copying the work of %s stopped: %s", notebook, error, exc_info=not isinstance(error, BackendError))
        work.error = str(error)[:500] or type(error).__name__
        work.engine_away = isinstance(error, BackendError) and error.unreachable and not work.file_count and work.owner_uid is None
    finally:
        chunks.close()
    return work


def _add(work: CopiedWork, archive: zipfile.ZipFile, tar: tarfile.TarFile, member: tarfile.TarInfo, room: int) -> int:
    """Add one tar member to the zip if it fits in ``room`` bytes; returns the bytes it took."""
    path = _relative(member.name)
    if not path:
        work.owner_uid, work.owner_gid = member.uid, member.gid
        return 0
    if len(archive.filelist) >= settings.TMPNB_SNAPSHOT_MAX_FILES:
        # Each entry of a zip being written stays in memory until it is
        # closed: ten thousand empty files cost a worker as much as a big one.
        if not member.isdir():  # a folder's files are listed, not the folder
            _leave_out(work, path, member.size)
        return 0
    if member.isdir():
        info = zipfile.ZipInfo(path + "/", _zip_time(member.mtime))
        info.external_attr = (stat.S_IFDIR | 0o755) << 16
        archive.writestr(info, b"")
        return 0
    if member.islnk():
        return _add_hard_link(work, archive, member, path, room)
    if not member.isfile():
        return 0  # symbolic links and devices: nothing a laptop could open
    if member.size > room or path in archive.NameToInfo:  # two names made one by _relative
        _leave_out(work, path, member.size)
        return 0
    # A file member always has its contents.
    with cast(IO[bytes], tar.extractfile(member)) as source:
        _write(work, archive, source, path=path, size=member.size, mode=member.mode, mtime=member.mtime)
    return member.size


def _relative(name: str) -> str:
    """A member's path relative to the root folder (the first member), as
    zip can store it: bytes of a name that are not UTF-8 (which tarfile
    reads as surrogate escapes, and zip refuses) become U+FFFD."""
    return name.partition("/")[2].encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _add_hard_link(work: CopiedWork, archive: zipfile.ZipFile, member: tarfile.TarInfo, path: str, room: int) -> int:
    """A second name of a file already in the tar (which sends its data once):
    a copy of the file as the zip has it, or left out as that file was."""
    target = archive.NameToInfo.get(_relative(member.linkname))
    if target is None or target.is_dir() or target.file_size > room or path in archive.NameToInfo:
        _leave_out(work, path, target.file_size if target else 0)
        return 0
    # Read out first: zipfile reads no entry while another is being written.
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024, dir=str(snapshot_dir())) as copy:
        with archive.open(target) as source:
            shutil.copyfileobj(source, copy, 1024 * 1024)
        copy.seek(0)
        _write(work, archive, cast(IO[bytes], copy), path=path, size=target.file_size, mode=member.mode, mtime=member.mtime)
    return target.file_size


def _write(work: CopiedWork, archive: zipfile.ZipFile, source: IO[bytes], *, path: str, size: int, mode: int, mtime: float) -> None:
    info = zipfile.ZipInfo(path, _zip_time(mtime))
    info.compress_type = archive.compression
    # The fastest level: a worker's CPU is shared with spawns, and text (what
    # notebooks hold) still shrinks several times. zipfile takes a ZipInfo's
    # level only from this attribute (public as compress_level from 3.13).
    info._compresslevel = ZIP_LEVEL  # type: ignore[attr-defined]
    info.external_attr = (stat.S_IFREG | (mode & 0o777)) << 16
    try:
        with archive.open(info, "w", force_zip64=size > 2**31) as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
    except Exception:
        # The zip keeps what was written of it: say that it is cut short.
        _leave_out(work, path, size, cut_short=True)
        raise
    work.file_count += 1


def _leave_out(work: CopiedWork, path: str, size: int, **details: bool) -> None:
    """Count a file that is not in the zip, and name it among the first LEFT_OUT_LISTED."""
    work.left_out_count += 1
    if len(work.left_out) < LEFT_OUT_LISTED:
        work.left_out.append({"path": path, "size": size, **details})


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    return time.localtime(max(mtime, ZIP_EPOCH))[:6]


class _Stream:
    """A file (read only) over the backend's chunks, for tarfile's stream
    mode, that stops reading at the deadline."""

    def __init__(self, chunks: Iterator[bytes], deadline: float) -> None:
        self.chunks, self.deadline = chunks, deadline
        self.buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            if time.monotonic() > self.deadline:
                raise SnapshotTimeout(f"the copy took longer than TMPNB_SNAPSHOT_TIMEOUT ({settings.TMPNB_SNAPSHOT_TIMEOUT} s)")
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        size = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        data = bytes(self.buffer[:size])
        del self.buffer[:size]  # cheap: a bytearray drops its front in place
        return data


def _finish(snapshot: Snapshot, container: Container) -> None:
    """Record a closed copy (Snapshot.close) and its event."""
    assert snapshot.taken_at is not None
    snapshot.expires_at = snapshot.taken_at + timedelta(hours=settings.TMPNB_SNAPSHOT_HOURS)
    if snapshot.file_name:
        snapshot.size = (snapshot_dir() / snapshot.file_name).stat().st_size
    snapshot.save()
    details: dict[str, Any] = {"size": snapshot.size, "files": snapshot.file_count, "left_out": snapshot.left_out_count}
    if snapshot.file_name:
        message = f"work of {container.name} saved: {snapshot.file_count} files, {snapshot.size} bytes"
        if snapshot.left_out_count:
            message += f", {snapshot.left_out_count} left out (over TMPNB_SNAPSHOT_MAX_MB or TMPNB_SNAPSHOT_MAX_FILES)"
        if snapshot.error:
            message += f"; stopped early: {snapshot.error}"
    else:
        message = f"no work saved from {container.name}: {snapshot.error or 'its folder holds no file'}"
    record_event(Event.Kind.SNAPSHOT, message[:500], container=container, session=snapshot.session, **details)


def snapshot_path(snapshot: Snapshot) -> Path:
    return snapshot_dir() / snapshot.file_name


def ended_work(container: Container, visitor: str | None, now: datetime | None = None) -> tuple[str, Snapshot | None] | None:
    """What the ended page tells ``visitor`` about their files in the ended
    ``container``: None unless they held it (nobody else learns anything),
    else (status, snapshot) with status one of saving, kept, expired, none
    (nothing could be saved, the snapshot says why) and lost (the container
    stopped on its own)."""
    session = visitor and Session.objects.filter(container=container, visitor=visitor).select_related("snapshot").first()
    if not session:
        return None
    snapshot = getattr(session, "snapshot", None)
    if snapshot is None:
        if session.end_reason in SAVED_ON:
            return ("saving", None) if settings.TMPNB_SNAPSHOT_HOURS else None
        return "lost", None
    if snapshot.taken_at is None:
        return "saving", snapshot
    if snapshot.is_kept(now or timezone.now()):
        return "kept", snapshot
    return ("expired" if snapshot.file_count else "none"), snapshot


def visitors_snapshot(*, path_id: str, visitor: str | None, now: datetime | None = None) -> Snapshot | None:
    """The kept snapshot of the ended container ``path_id`` if ``visitor``
    held it, else None."""
    if not visitor:
        return None
    return (
        Snapshot.objects.kept(now or timezone.now())
        .filter(session__container__path_id=path_id, session__visitor=visitor)
        .select_related("session__container__pool")
        .first()
    )


def ask_for_restore(*, snapshot: Snapshot, container: Container, in_use: bool = False) -> bool:
    """Queue the files of ``snapshot`` for the worker to put into ``container``
    (see restore_work), once per snapshot: a conditional update claims it, so
    repeated or concurrent requests queue one copy. False if it was asked
    for already; raises RestoreError if the broker cannot take it."""
    asked = Snapshot.objects.filter(pk=snapshot.pk, restore_asked_at__isnull=True)
    if not asked.update(restore_asked_at=timezone.now(), restore_into=container, restore_error=""):
        return False
    try:
        worker.send(worker.RESTORE_WORK, snapshot.pk, container.pk, in_use)
    except Exception as error:  # the broker is away: let them ask again later
        Snapshot.objects.filter(pk=snapshot.pk).update(restore_asked_at=None)
        log.warning("could not queue the restore of %s: %s", snapshot.session, error)
        raise RestoreError(str(error)) from None
    return True


def restore_queued_work(*, snapshot_id: int, container_id: int, in_use: bool) -> None:
    """The worker's half of ask_for_restore. A copy that fails is recorded
    and may be asked for again from the ended page."""
    snapshot = Snapshot.objects.select_related("session__container").get(pk=snapshot_id)
    container = Container.objects.select_related("pool").get(pk=container_id)
    try:
        restore_work(snapshot=snapshot, container=container, in_use=in_use)
    except RestoreError as error:
        # Asked for again from the ended page; told inside the notebook meanwhile (restore_failed).
        Snapshot.objects.filter(pk=snapshot.pk).update(restore_asked_at=None, restore_error=str(error)[:500] or "the copy failed")
        message = f"work of {snapshot.session.container.name} could not be put into {container.name}: {error}"
        record_event(Event.Kind.SNAPSHOT, message[:500], container=container, actor=snapshot.session.visitor_tag)


def restore_failed(container: Container) -> bool:
    """Whether saved work asked into ``container`` could not be put there."""
    return Snapshot.objects.filter(restore_into=container).exclude(restore_error="").exists()


def restore_work(*, snapshot: Snapshot, container: Container, in_use: bool = False) -> None:
    """Put the files of ``snapshot`` into the root folder of ``container``,
    owned by the user who owned them; into a folder of their own if the
    container is ``in_use`` already, so that none of its files is replaced.
    Raises RestoreError."""
    into = f"saved-work-{snapshot.taken_at:%Y%m%d-%H%M}" if in_use else ""
    try:
        with tempfile.NamedTemporaryFile(dir=snapshot_dir(), prefix=".restore-", suffix=".tar") as tar_file:
            _zip_to_tar(snapshot, tar_file, into)
            tar_file.flush()
            get_backend().copy_in(container.backend_id, tar_path=tar_file.name, destination=notebook_root(container.pool))
    except (BackendError, OSError, zipfile.BadZipFile) as error:
        log.warning("could not put the work of %s into %s: %s", snapshot.session, container.name, error)
        raise RestoreError(str(error)) from None
    record_event(
        Event.Kind.SNAPSHOT,
        f"work of {snapshot.session.container.name} put into {container.name}",
        container=container,
        actor=snapshot.session.visitor_tag,
        files=snapshot.file_count,
    )


def _zip_to_tar(snapshot: Snapshot, tar_file: IO[bytes], into: str) -> None:
    uid, gid = snapshot.owner_uid or 0, snapshot.owner_gid or 0
    prefix = f"{into}/" if into else ""
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive, tarfile.open(fileobj=tar_file, mode="w") as tar:
        if into:
            tar.addfile(_restored_folder(into, uid, gid))
        for info in archive.infolist():
            parts = info.filename.rstrip("/").split("/")
            if info.filename.startswith("/") or ".." in parts:
                continue  # never outside the folder (our own zips hold no such name)
            member = tarfile.TarInfo(prefix + info.filename.rstrip("/"))
            member.uid, member.gid = uid, gid
            member.mtime = time.mktime((*info.date_time, 0, 0, -1))
            member.mode = (info.external_attr >> 16) & 0o777 or (0o755 if info.is_dir() else 0o644)
            if info.is_dir():
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
            else:
                member.size = info.file_size
                with archive.open(info) as source:
                    tar.addfile(member, source)


def _restored_folder(name: str, uid: int, gid: int) -> tarfile.TarInfo:
    folder = tarfile.TarInfo(name)
    folder.type, folder.mode, folder.uid, folder.gid, folder.mtime = tarfile.DIRTYPE, 0o755, uid, gid, time.time()
    return folder


def prune_snapshots(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete the zips older than TMPNB_SNAPSHOT_HOURS (one batch); the rows
    stay, as history, until the session is pruned. Returns how many. Also
    deletes what copies killed midway left behind (prune_leftovers)."""
    expired = list(Snapshot.objects.expired(now or timezone.now()).order_by("pk")[:batch])
    for snapshot in expired:
        snapshot_path(snapshot).unlink(missing_ok=True)
    Snapshot.objects.filter(pk__in=[s.pk for s in expired]).update(file_name="")
    prune_leftovers()
    return len(expired)


def prune_leftovers() -> int:
    """Delete the partial zips (``.*.part``) and restore tars (``*.tar``) of
    copies whose process was killed, once nothing has written to them for
    longer than any copy may take. Returns how many."""
    # A copy out writes for TMPNB_SNAPSHOT_TIMEOUT at most; a copy in may wait
    # for a Docker slot, then for Docker, each bounded by DOCKER_TIMEOUT.
    quiet_for = settings.TMPNB_SNAPSHOT_TIMEOUT + 3 * settings.DOCKER_TIMEOUT + LEFTOVER_GRACE
    deleted = 0
    with os.scandir(snapshot_dir()) as entries:
        for entry in entries:
            if not (entry.name.endswith(".part") or entry.name.endswith(".tar")):
                continue
            with contextlib.suppress(FileNotFoundError):  # its copy finished (or another prune was first)
                if entry.stat().st_mtime < time.time() - quiet_for:
                    os.unlink(entry.path)
                    deleted += 1
    if deleted:
        log.info("deleted %d files of copies that never finished", deleted)
    return deleted


def snapshot_disk(now: datetime | None = None) -> dict[int, tuple[int, int]]:
    """{pool_id: (snapshots kept, bytes)} of the zips on disk."""
    rows = Snapshot.objects.kept(now or timezone.now()).values_list("session__container__pool").annotate(n=Count("pk"), size=Sum("size"))
    return {pool_id: (n, size) for pool_id, n, size in rows}
