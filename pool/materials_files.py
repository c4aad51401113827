"""A workshop's materials on the service's own disk: taken from an archive, a
host folder or a git repository, checked, and packed for a notebook's user.

Kept free of Django so that its rules are plain functions of files. Every
refusal is a MaterialsError whose message tells an organiser what to fix.
"""

import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from pool.options import check_host_path

GIT_URL = re.compile(r"^(https?|git|ssh|file)://\S+$|^[\w.-]+@[\w.-]+:\S+$")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
# The transports git may use for a clone: never ext:: (it runs a command).
GIT_PROTOCOLS = "http:https:git:ssh:file"
CHUNK = 1 << 20
T = TypeVar("T")


class MaterialsError(Exception):
    """Materials that cannot be used, with a message for the organiser."""


@dataclass(frozen=True)
class Prepared:
    files: int
    size: int  # bytes

    def describe(self) -> str:
        return f"{self.files} file(s), {_human(self.size)}"


def _human(size: float) -> str:
    for unit in ("bytes", "kB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def is_git_url(source: str) -> bool:
    return bool(GIT_URL.match(source))


def check_source(source: str, protected: Iterable[str] = ()) -> None:
    """Raise ValueError if ``source`` is neither empty, a git URL, nor an
    absolute path (of a folder or an archive) that notebooks may see
    (pool/options.py's check_host_path: the worker copies it as root)."""
    if not source or is_git_url(source):
        return
    if not source.startswith("/"):
        raise ValueError(f"materials must be a git URL or an absolute path of a folder or an archive, not {source!r}")
    check_host_path(source, protected)
    if not Path(source).is_dir() and not source.endswith(ARCHIVE_SUFFIXES):
        raise ValueError(f"{source} is not a folder on this host, nor an archive ending in {', '.join(ARCHIVE_SUFFIXES)}")


def prepare(
    source: str, branch: str, destination: str | Path, *, max_bytes: int, git_timeout: float, scratch: str | Path, protected: Iterable[str] = ()
) -> Prepared:
    """Put the materials of ``source`` into the new folder ``destination``,
    refusing links, devices, paths that climb out, folders notebooks may not
    see (``protected`` and the host's), and more than ``max_bytes`` in all.
    ``scratch`` is a folder for a git clone. Returns what it holds."""
    _checked(check_source, source, protected)
    if is_git_url(source):
        clone = Path(scratch) / "clone"
        _git_clone(source, branch, clone, git_timeout)
        return _copy_folder(clone, destination, max_bytes, skip={".git"})
    if branch:
        raise MaterialsError("a branch goes with a git URL only, not with a folder or an archive")
    path = Path(_checked(check_host_path, source, protected))  # the real path, checked just now
    if path.is_dir():
        return _copy_folder(path, destination, max_bytes)
    if not path.is_file():
        raise MaterialsError(f"{source} is neither a folder nor an archive on this host")
    return extract_archive(path, destination, max_bytes)


def _checked(check: Callable[..., T], *args: object) -> T:
    try:
        return check(*args)
    except ValueError as error:
        raise MaterialsError(str(error)) from None


def _member_path(name: str, what: str) -> PurePosixPath:
    """The relative path an archive member names, refused if it climbs out."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise MaterialsError(f"{what} {name!r} points outside the materials folder")
    return path


class _Layout:
    """The files and folders an archive's entries make, checked as they are
    read: one name cannot be both (a zip with ``data`` and ``data/x.csv``),
    which would otherwise fail half-way through writing with an OSError."""

    def __init__(self) -> None:
        self.files: set[PurePosixPath] = set()
        self.folders: set[PurePosixPath] = set()

    def add(self, path: PurePosixPath, *, is_folder: bool) -> None:
        folders = [*path.parents[:-1], *([path] if is_folder else [])]
        clashes = [folder for folder in folders if folder in self.files] + ([] if is_folder or path not in self.folders else [path])
        if clashes:
            raise MaterialsError(f"the archive holds both a file and a folder named '{clashes[0]}'; rename one of them")
        self.folders.update(folders)
        if not is_folder:
            self.files.add(path)


def _over(max_bytes: int) -> MaterialsError:
    return MaterialsError(f"the materials hold more than {max_bytes // 1_000_000} MB once unpacked (TMPNB_MATERIALS_MAX_MB)")


def extract_archive(archive: str | Path, destination: str | Path, max_bytes: int) -> Prepared:
    """Unpack a zip or (compressed) tar archive into ``destination``."""
    Path(destination).mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, destination, max_bytes)
        return _extract_tar(archive, destination, max_bytes)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise MaterialsError(f"{Path(archive).name} is not a readable zip or tar.gz archive ({error})") from None


def _extract_tar(archive: str | Path, destination: str | Path, max_bytes: int) -> Prepared:
    total = files = 0
    with tarfile.open(archive, "r:*") as tar:
        members = []
        layout = _Layout()
        # Every header is checked before anything is written; sizes come from
        # the headers, which also bound how much each member can unpack to.
        for member in tar:
            layout.add(_member_path(member.name, "the entry"), is_folder=member.isdir())
            if member.issym() or member.islnk():
                raise MaterialsError(f"the entry {member.name!r} is a link; links are not allowed in materials")
            if not (member.isfile() or member.isdir()):
                raise MaterialsError(f"the entry {member.name!r} is a device or another special file; only files and folders are allowed")
            total += member.size
            files += member.isfile()
            if total > max_bytes:
                raise _over(max_bytes)
            members.append(member)
        # The "data" filter refuses again what slipped past, and drops owners and odd modes.
        tar.extractall(destination, members=members, filter="data")
    return Prepared(files, total)


def _extract_zip(archive: str | Path, destination: str | Path, max_bytes: int) -> Prepared:
    total = files = 0
    with zipfile.ZipFile(archive) as bundle:
        members = []
        layout = _Layout()
        # Every entry is checked before anything is written, as for a tar.
        for info in bundle.infolist():
            relative = _member_path(info.filename, "the entry")
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise MaterialsError(f"the entry {info.filename!r} is a link; links are not allowed in materials")
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise MaterialsError(f"the entry {info.filename!r} is a device or another special file; only files and folders are allowed")
            layout.add(relative, is_folder=info.is_dir())
            members.append((info, relative))
        for info, relative in members:
            target = Path(destination, relative)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # The sizes a zip declares may lie (a zip bomb): count what really comes out.
            with bundle.open(info) as source, open(target, "wb") as out:
                while chunk := source.read(CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise _over(max_bytes)
                    out.write(chunk)
            files += 1
    return Prepared(files, total)


def _copy_folder(source: str | Path, destination: str | Path, max_bytes: int, skip: Collection[str] = ()) -> Prepared:
    """Copy a folder's files and subfolders, refusing links and special files."""
    source, destination = Path(source), Path(destination)
    total = files = 0
    destination.mkdir(parents=True)
    for folder, subfolders, names in os.walk(source, onerror=_walk_error):
        subfolders[:] = sorted(name for name in subfolders if not (folder == str(source) and name in skip))
        here = Path(folder)
        for name in subfolders + sorted(names):
            path = here / name
            relative = path.relative_to(source)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise MaterialsError(f"{relative} is a link; links are not allowed in materials")
            if stat.S_ISDIR(mode):
                (destination / relative).mkdir()
            elif stat.S_ISREG(mode):
                total += path.lstat().st_size
                if total > max_bytes:
                    raise _over(max_bytes)
                shutil.copyfile(path, destination / relative, follow_symlinks=False)
                files += 1
            else:
                raise MaterialsError(f"{relative} is a device or another special file; only files and folders are allowed")
    return Prepared(files, total)


def prepare_broadcast(source: str | Path, destination: str | Path, *, unpack: bool, max_bytes: int) -> tuple[str, Prepared]:
    """Put what an organiser sends to every notebook into the new folder
    ``destination``, as its one entry: the file or folder ``source``, or with
    ``unpack`` the folder that the zip or tar archive ``source`` is (named
    after the archive, or the one folder it holds, if it holds only that),
    with the rules of materials (no links, no special files, at most
    ``max_bytes``). Returns the entry's name and what it holds."""
    source, destination = Path(source), Path(destination)
    destination.mkdir(parents=True)
    if unpack:
        if not source.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise MaterialsError(f"{source.name} is not an archive to unpack: send a file ending in {', '.join(ARCHIVE_SUFFIXES)}")
        name = _entry_name(_archive_stem(source.name))
        prepared = extract_archive(source, destination / name, max_bytes)
        return _hoist_single_folder(destination, name), prepared
    name = _entry_name(source.name)
    if source.is_dir():
        return name, _copy_folder(source, destination / name, max_bytes)
    if not source.is_file():
        raise MaterialsError(f"{source} is neither a file nor a folder")
    size = source.stat().st_size
    if size > max_bytes:
        raise _over(max_bytes)
    shutil.copyfile(source, destination / name)
    return name, Prepared(1, size)


def _entry_name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise MaterialsError(f"{name!r} cannot be the name of a file in a notebook")
    return name


def _archive_stem(name: str) -> str:
    suffix = next(suffix for suffix in ARCHIVE_SUFFIXES if name.lower().endswith(suffix))
    return name[: -len(suffix)]


def _hoist_single_folder(destination: Path, name: str) -> str:
    """An archive of one folder (zipped from its parent, as people zip a
    folder) is that folder, not a folder holding it."""
    entries = list((destination / name).iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return name
    inner = entries[0].name
    entries[0].rename(destination / f".{inner}")
    (destination / name).rmdir()
    (destination / f".{inner}").rename(destination / inner)
    return inner


def _walk_error(error: OSError) -> None:
    raise MaterialsError(f"cannot read {error.filename}: {error.strerror}")


def _git_clone(url: str, branch: str, destination: Path, timeout: float) -> None:
    command = ["git", "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags"]
    command += ["--branch", branch] if branch else []
    command += ["--", url, str(destination)]
    environment = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        "GIT_ASKPASS": "true",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    # A session of its own, so a timeout ends git's helpers (fetch, index-pack) with it.
    with subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True) as git:
        try:
            _, errors = git.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(git.pid, signal.SIGKILL)
            git.communicate()
            raise MaterialsError(f"cloning {url} took longer than {timeout} s (TMPNB_MATERIALS_GIT_TIMEOUT)") from None
    if git.returncode != 0:
        said = " ".join(errors.split())[-400:] or f"exit status {git.returncode}"
        raise MaterialsError(f"cloning {url}{f' (branch {branch})' if branch else ''} failed: {said}")


def pack_for_user(folder: str | Path, tar_path: str | Path, uid: int, gid: int, *, arcnames: dict[str, str] | None = None) -> Path:
    """A tar of ``folder``'s contents whose entries belong to ``uid``:``gid``
    (Docker keeps a tar's owners when it puts it into a container), each
    entry named as ``arcnames`` says (by default as it is). Written aside and
    renamed, so a concurrent spawn never reads half of it."""
    folder = Path(folder)

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    partial = Path(f"{tar_path}.{secrets.token_hex(4)}.partial")  # spawns pack side by side
    with tarfile.open(partial, "w") as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=(arcnames or {}).get(entry.name, entry.name), filter=owned)
    os.replace(partial, tar_path)
    return Path(tar_path)
