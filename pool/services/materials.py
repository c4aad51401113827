"""A pool's workshop materials: prepared once per change by the worker, then
copied into every new container before it is ready.

A pool asks for materials with materials_source (and materials_branch); the
worker notices a request it has not tried yet (materials_tried), prepares it
into the service's storage as a new version, and replaces the ready
containers, as a drain does. Refused materials leave the previous version in
place, with the reason on the pool and in the event log.
"""

import logging
import secrets
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import cast

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from pool import materials_files
from pool.backends import get_backend
from pool.materials_files import MaterialsError
from pool.models import Container, Event, Pool
from pool.services.events import record_event
from pool.services.pools import drain_pool

log = logging.getLogger(__name__)

# An upload younger than this may belong to an admin form still being saved.
UPLOAD_GRACE_SECONDS = 3600


def materials_root() -> Path:
    return Path(settings.VAR_DIR) / "materials"


def _pool_folder(pool_id: int) -> Path:
    return materials_root() / f"pool-{pool_id}"


def version_folder(pool_id: int, version: int) -> Path:
    return _pool_folder(pool_id) / f"v{version}"


def broadcast_folder(pool_id: int, version: int, broadcast_id: int) -> Path:
    """Where a broadcast that joined materials ``version`` is kept: beside
    it, and removed with it once a newer version is prepared."""
    return _pool_folder(pool_id) / f"v{version}-broadcast-{broadcast_id}"


def pools_with_materials_to_prepare() -> list[int]:
    """Ids of the pools whose materials changed since they were last tried."""
    now = timezone.now()
    fields = ["materials_source", "materials_branch", "materials_tried", "materials_preparing_since"]
    pools = [Pool(pk=pk, **dict(zip(fields, values))) for pk, *values in Pool.objects.values_list("pk", *fields)]
    return [pool.pk for pool in pools if _to_prepare(pool, now)]


def _to_prepare(pool: Pool, now: datetime) -> bool:
    """Changed since last tried, or taken by a worker that died meanwhile."""
    return pool.materials_wanted != pool.materials_tried or pool.materials_stalled(now)


def store_upload(upload: UploadedFile) -> str:
    """Keep an archive uploaded in the admin on the service's disk; its path
    becomes the pool's materials_source."""
    # A file of a form always has a name.
    name = get_valid_filename(Path(cast(str, upload.name)).name) or "materials.zip"
    path = materials_root() / "uploads" / secrets.token_hex(8) / name
    path.parent.mkdir(parents=True)
    with open(path, "wb") as stored:
        for chunk in upload.chunks():
            stored.write(chunk)
    return str(path)


def refresh_materials(pool: Pool) -> None:
    """Prepare the pool's materials again (a git repository that moved on)."""
    Pool.objects.filter(pk=pool.pk).update(materials_tried="")


def prepare_materials(pool_id: int) -> int | None:
    """Prepare the materials the pool asks for, if nobody has tried them yet:
    publish them as the pool's next version and replace its ready containers,
    or record why they were refused and keep the previous version. Returns
    the new version, or None."""
    pool = Pool.objects.get(pk=pool_id)
    wanted = pool.materials_wanted
    if not _to_prepare(pool, timezone.now()):
        return None
    # Of two workers handed the same change, only one prepares it.
    claimed = Pool.objects.filter(
        pk=pool_id,
        materials_tried=pool.materials_tried,
        materials_preparing_since=pool.materials_preparing_since,
        materials_source=pool.materials_source,
        materials_branch=pool.materials_branch,
    ).update(materials_tried=wanted, materials_error="", materials_preparing_since=timezone.now())
    if not claimed:
        return None
    folder = _pool_folder(pool_id)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix="incoming-") as scratch:
        tree = Path(scratch) / "tree"
        prepared = None
        if pool.materials_source:
            try:
                prepared = materials_files.prepare(
                    pool.materials_source,
                    pool.materials_branch,
                    tree,
                    scratch=scratch,
                    max_bytes=settings.TMPNB_MATERIALS_MAX_MB * 1_000_000,
                    git_timeout=settings.TMPNB_MATERIALS_GIT_TIMEOUT,
                    protected=settings.TMPNB_PROTECTED_PATHS,
                )
            except MaterialsError as error:
                _refuse(pool, str(error))
                return None
            except Exception as error:
                # An input nobody foresaw (or a full disk) is refused the same
                # way: otherwise the pool would wait for these materials forever,
                # with nothing shown. The traceback is for the operator.
                log.exception("pool %s: preparing materials from %s failed", pool.name, _described(pool))
                _refuse(pool, f"they could not be prepared ({type(error).__name__}: {error}); the worker's log has the details")
                return None
        with transaction.atomic():
            current = Pool.objects.select_for_update().get(pk=pool_id)
            if current.materials_tried != wanted:
                return None  # changed again meanwhile: the newer request is prepared next
            version = current.materials_version + 1
            summary = f"{prepared.describe()} from {_described(pool)}" if prepared else "none"
            if prepared:
                tree.rename(version_folder(pool_id, version))
            Pool.objects.filter(pk=pool_id).update(
                materials_version=version,
                materials_prepared_at=timezone.now(),
                materials_summary=summary[:700],
                materials_error="",
                materials_preparing_since=None,
            )
            record_event(Event.Kind.MATERIALS, f"pool {pool.name}: materials version {version}: {summary}", pool=pool, actor="materials", version=version)
    _remove_versions_before(pool_id, version)
    _remove_unused_uploads()
    drain_pool(current, by="materials")
    return version


def _described(pool: Pool) -> str:
    return f"{pool.materials_source} ({pool.materials_branch})" if pool.materials_branch else pool.materials_source


def _refuse(pool: Pool, error: str) -> None:
    Pool.objects.filter(pk=pool.pk).update(materials_error=error[:2000], materials_preparing_since=None)
    kept = f"version {pool.materials_version}" if pool.materials_version else "no materials"
    message = f"pool {pool.name}: materials from {_described(pool)} refused: {error}; keeping {kept}"
    log.warning("%s", message)
    # Not a FAILURE: that kind counts containers that failed (tmpnb_failures_total).
    record_event(Event.Kind.MATERIALS, message, pool=pool, actor="materials", refused=True)


def _remove_versions_before(pool_id: int, version: int) -> None:
    # A spawn still copying an older tar holds it open (and is being drained).
    for entry in _pool_folder(pool_id).iterdir():
        number = entry.name[1:].split("-")[0]
        if entry.name.startswith("v") and number.isdigit() and int(number) < version:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _remove_unused_uploads() -> None:
    """Uploads no pool names any more (replaced by a newer one)."""
    used = {Path(source).parent for source in Pool.objects.exclude(materials_source="").values_list("materials_source", flat=True)}
    for folder in (materials_root() / "uploads").glob("*"):
        if folder not in used and folder.stat().st_mtime < time.time() - UPLOAD_GRACE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def put_materials_in(container: Container) -> int | None:
    """Copy the pool's current materials into a started container's root
    folder, owned by its notebook user. Returns the version copied (None if
    the pool has none). Touches no rows: it runs beside the spawn's lease."""
    pool = container.pool
    version = pool.materials_version
    if not version:
        return None
    tree = version_folder(pool.pk, version)
    if not tree.is_dir():
        return version  # this version is "no materials"
    backend = get_backend()
    user = backend.notebook_user(container.backend_id)
    tar_path = tree.parent / f"v{version}-{user.uid}-{user.gid}.tar"
    try:
        if not tar_path.exists():
            materials_files.pack_for_user(tree, tar_path, user.uid, user.gid)
    except OSError as error:
        raise MaterialsError(f"packing materials version {version}: {error}") from None
    backend.copy_in(container.backend_id, tar_path=str(tar_path), destination=user.folder)
    return version
